"""Fixtures for the ``demo`` and ``run`` tests: which processes a state directory still has."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _processes_of(state_dir: Path) -> list[tuple[int, str]]:
    """Live processes (not zombies) started for ``state_dir``: those whose environment has
    ``PIPELINE_STATE_DIR=<state_dir>`` or whose command line names a path under it (the
    broker). The test process itself is left out."""
    marker = str(state_dir).encode()
    env_marker = b"PIPELINE_STATE_DIR=" + marker
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if env_marker in environ.split(b"\0") or marker in cmdline:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")))
    return found


@pytest.fixture
def processes_of() -> Callable[[Path], list[tuple[int, str]]]:
    """``processes_of(state_dir)``: live processes started for that state directory."""
    return _processes_of
