"""Small process and port helpers for the local stack's daemons (Linux ``/proc``, else ``ps``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path
from typing import Literal

__all__ = ["free_port", "pid_running", "port_free", "port_open", "process_cmdline", "tail_lines"]


def _child_status(pid: int) -> Literal["reaped", "alive", "not-a-child"]:
    """Reap ``pid`` if it is an exited child of this process; waitpid is the authority there."""
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "not-a-child"
    return "reaped" if reaped == pid else "alive"


def _state(pid: int) -> str | None:
    """The process state letter (``R``, ``S``, ``Z``...), or None when there is no such process."""
    if Path("/proc/self").exists():
        try:
            # "pid (comm) S ...": the state letter follows the last ')'.
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
            state = stat.rsplit(")", 1)[1].split()[0]
            if state == "Z" and len(os.listdir(f"/proc/{pid}/task")) > 1:
                return "R"  # the main thread exited, other threads still run
            return state
        except (OSError, IndexError):
            return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    done = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()[:1] or None


def pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process.

    Our own children count as running until reaped (reaping them here); other processes
    count as gone once they are zombies (where no init reaps orphans, they stay zombies).
    """
    ownership = _child_status(pid)
    if ownership != "not-a-child":
        return ownership == "alive"
    return _state(pid) not in (None, "Z", "X")


def process_cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it cannot be read)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return [part for part in proc.read_bytes().decode(errors="replace").split("\0") if part]
        except OSError:
            return []
    done = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return done.stdout.split()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` now (with SO_REUSEADDR, as the broker does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", avoid: frozenset[int] = frozenset()) -> int:
    """A TCP port that is free on ``host`` right now (not one of ``avoid``)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def tail_lines(path: Path, count: int, start_offset: int = 0) -> list[str]:
    """The last ``count`` lines of ``path`` after ``start_offset``, stack frames dropped."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 256 * 1024, start_offset))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [
        line.rstrip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith(("at ", "..."))
    ]
    return lines[-count:]
