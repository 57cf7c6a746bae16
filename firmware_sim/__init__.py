"""Firmware simulation: the ECG sensor board and the microcontroller, before hardware exists.

``sensor``   the board: a record or synthetic ECG through an ADC model (``adc``), framed by
             the device's protocol encoder (docs/protocol.md), faults from ``faults``, out
             of ``ports`` (a pty or TCP) to the daemon's ``serial:`` / ``frames+tcp:``
             source.
``mcu``      TFLite Micro vs LiteRT on real beats, arena, RAM/flash and cycle estimates
             against ``profiles``; ``export`` writes the firmware engineer's bundle.
``tflm``     TFLite Micro: C source, op resolver and measured arena (``convert --target
             micro`` uses it too).
``patients`` simulated patients: synthetic ECG records, emotion ECG/GSR/faces, speech.
``cli``      ``vitaledge firmware sensor | mcu | export`` and ``vitaledge data synth``.

Imports ``vitaledge.device`` only; ``train`` and ``convert`` import it, the device never.
"""
