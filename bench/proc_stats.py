"""CPU time and resident memory of another process, from ``/proc`` (Linux): what the
benches read of the subprocesses they measure (a worker, a sink, the simulator)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_s", "rss_mb"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident memory now, in MiB (0 when the kernel does not report it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
