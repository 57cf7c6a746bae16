"""``python -m vitaledge.device.bench.reliability fuzz|crash|load|streams|soak ...``"""

from vitaledge.device.bench.reliability.cli import reliability_group

reliability_group()
