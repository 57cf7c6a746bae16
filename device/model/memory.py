"""Resident memory of this process, for the daemon's logs and the bench."""

from __future__ import annotations

import os
import resource


def peak_rss_mb() -> float:
    """Largest resident set size this process has had, in MB (10^6 bytes, as
    :func:`rss_mb`; Linux reports ru_maxrss in KiB: / 1e3 read it 2.4 % low, a peak below
    the memory after loading)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def rss_mb() -> float:
    """Current resident set size in MB (from /proc; the peak where /proc is absent)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return peak_rss_mb()
