"""On-device side of vitaledge: signal preprocessing, model runtime, daemon, bench.

Runs on a Raspberry Pi with numpy, scipy and one LiteRT backend. Nothing in this package
imports TensorFlow; training imports the preprocessing from here so that what a model sees
in training is exactly what it sees on the device.
"""
