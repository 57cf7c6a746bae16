"""Firmware simulation: the ECG sensor board and the microcontroller, before hardware exists.

``sensor``   the board: a record or synthetic ECG through an ADC model (``adc``), framed by
             ``encoder`` (docs/protocol.md), faults from ``faults``, out of ``ports`` (a pty
             or TCP) to the daemon's ``serial:`` / ``frames+tcp:`` source.
``mcu``      TFLite Micro vs LiteRT on real beats, arena, RAM/flash and cycle estimates
             against ``profiles``; ``export`` writes the firmware engineer's bundle.
``cli``      ``vitaledge firmware sensor | mcu | export``.

Imports ``vitaledge.device`` (and the pure-Python ``vitaledge.convert.micro`` helpers for
C source and arena search); nothing imports this package back.
"""
