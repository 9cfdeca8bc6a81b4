"""Crash drills: die like ``kill -9`` at an exact point, and parse the ``*_CRASH_AT`` specs.

Each process kind names its own points (``sinks/faults.py``, ``workers/cues/faults.py``,
``workers/session/faults.py``); this module holds what they share: the exit code, the exit
itself (no flush, no commit, no cleanup: what SIGKILL leaves behind) and the spec check
whose error names the setting and the expected form. Tests and drills only.
"""

from __future__ import annotations

import os
import re
import sys
from typing import NoReturn

from runtime.errors import ConfigError

__all__ = ["CRASH_EXIT_CODE", "crash_now", "match_crash_spec"]

CRASH_EXIT_CODE = 137
"""The exit code of a process killed by SIGKILL (128 + 9)."""


def crash_now(what: str) -> NoReturn:
    """Say where on stderr, then exit at once with :data:`CRASH_EXIT_CODE`."""
    sys.stderr.write(f"fault injection: crashing {what}\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


def match_crash_spec(
    setting: str, spec: str | None, pattern: re.Pattern[str], expected: str
) -> re.Match[str] | None:
    """The match of ``spec`` against ``pattern``; None when unset or empty.

    Raises:
        ConfigError: naming ``setting``, the value and ``expected`` when it does not match.
    """
    if not spec:
        return None
    match = pattern.match(spec.strip())
    if match is None:
        raise ConfigError(f"{setting}={spec!r}: expected {expected}")
    return match
