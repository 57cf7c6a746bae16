"""On-device side of vitaledge: signal preprocessing, model runtime, daemon, bench.

Runs on a Raspberry Pi with numpy, scipy (wfdb's) and one LiteRT backend; the daemon never
loads scipy.
Nothing in this package imports TensorFlow; training imports the preprocessing from here so
that what a model sees in training is exactly what it sees on the device.
"""
