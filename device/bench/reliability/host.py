"""What a campaign asks of the host (Linux /proc): a free TCP port, the CPUs it may use, a
process's CPU seconds, this process's open file descriptors; and what it does with the
daemons it starts: read why one failed, stop them all."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    return set(os.sched_getaffinity(0))


def cpu_list(cpus: Iterable[int]) -> str:
    """CPU numbers the way ``taskset -c`` writes them: ``0-3,6``."""
    nums, parts = sorted(set(cpus)), []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def open_fds() -> int:
    """File descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def last_error_line(log: str | Path) -> str:
    """Why a daemon failed, from its stderr (text, or the file it went to): its last
    ``Error:`` line (the CLI's one-line refusal), else its last non-empty line."""
    if isinstance(log, Path):
        try:
            log = log.read_bytes().decode(errors="replace")
        except OSError:
            return "no error output"
    lines = [x.strip() for x in log.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("Error:")]
    line = (errors or lines or ["no error output"])[-1]
    return line.removeprefix("Error:").strip()[:500]


def stop_all(procs: Iterable[subprocess.Popen], grace_s: float = 10.0) -> None:
    """Stop every process still running: SIGTERM to all, wait up to ``grace_s`` (in all),
    then SIGKILL what is left and reap it. Nothing is left behind, whatever failed (an
    interrupt while waiting included)."""
    procs = [p for p in procs if p.poll() is None]
    for p in procs:
        p.terminate()  # no error for a process that exited meanwhile: Popen knows
    deadline = time.monotonic() + grace_s
    try:
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def check_cpu(cpu: int) -> None:
    """Refuse a CPU this process may not run on (pinning to it would fail with EINVAL)."""
    allowed = usable_cpus()
    if cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may use (available: "
                         f"{cpu_list(allowed)})")
