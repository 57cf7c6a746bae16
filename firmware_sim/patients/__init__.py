"""Simulated patients: synthetic ECG records (N/S/V/F/Q beats), emotion ECG/GSR/faces and
sessions, and speech clips. ``make demo`` and the fast tests use them; nothing on the device
imports them."""

