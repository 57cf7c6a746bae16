"""Reliability campaigns for the device side (issue 8): fuzzing, kill -9, overload, soak.

Each is a command (``vitaledge device reliability fuzz|crash|load|streams|soak`` or
``python -m vitaledge.device.bench.reliability ...``) that prints its figures as JSON; the
short versions run in the test suite (tests/test_fuzz.py, tests/test_reliability.py).

``corpus``  valid seed inputs for every fuzz target (frames from the protocol's encoder)
``fuzz``    the fuzz targets, their documented errors, mutation and the long-run harness
``events``  reading back what the sinks wrote (JSONL with rotations, SQLite)
``host``    what a campaign asks of the host: a free port, CPU seconds, open descriptors
``crash``   kill -9 the daemon (its CLI) while it writes; nothing acknowledged is lost
``load``    overload one live source, and many real-time streams on one core
``soak``    a day of signal through one daemon; memory and descriptors over the run
``cli``     the ``reliability`` click group

The campaigns drive the daemon through its public interfaces only: the CLI, the HTTP API,
the event files, and public classes.
"""
