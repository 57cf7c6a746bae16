"""Conversion: pruning, quantization and TFLite export per target, each artifact verified
through the device runtime (not TensorFlow) on the run's held-out data."""
