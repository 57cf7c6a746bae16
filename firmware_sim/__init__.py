"""Firmware simulation: a simulated ECG sensor board speaking the wire protocol to the
daemon, and a simulated microcontroller that checks a model fits and runs under TFLite
Micro. (Issue 7; the package exists so the distribution layout is complete.)"""
