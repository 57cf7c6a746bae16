"""The fleet seen from the broker: devices' presence and counters, and their events."""
