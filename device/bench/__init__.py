"""Measuring on the target: the latency harness (``latency``), detector and stream benches,
their plots, baseline providers, and the reliability campaigns (``reliability``). Import the
module you need; this package imports nothing itself."""

