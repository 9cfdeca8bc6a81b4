"""Fault injection for crash drills: die like ``kill -9`` at an exact point of a publish.

Off by default. ``PIPELINE_WORKER_CRASH_AT=records_acked@<n>`` makes the worker call
``os._exit(137)`` (no state write, no commit, no shutdown: what SIGKILL leaves behind) in
the first publish after which it has published ``n`` or more ``Inter1Event`` records,
right after the broker acknowledged them and before any session-state record is written:
the gap where the events are durable and the progress describing them is not.

For tests and drills only; a production deployment never sets it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.crash import CRASH_EXIT_CODE, crash_now, match_crash_spec

__all__ = ["CRASH_EXIT_CODE", "CrashPoint", "parse_crash_at"]

_SPEC = re.compile(r"^records_acked@(\d+)$")


@dataclass(frozen=True)
class CrashPoint:
    """Die once this many events are acknowledged, before their progress is written."""

    events: int

    def check(self, published_events: int) -> None:
        """Exit the process at once if ``published_events`` reached the point."""
        if published_events >= self.events:
            crash_now(f"after {published_events} events acked, before the session state")


def parse_crash_at(spec: str | None) -> CrashPoint | None:
    """``"records_acked@12"`` -> ``CrashPoint(12)``; unset or empty -> None.

    Raises:
        ConfigError: not ``records_acked@<n>``.
    """
    match = match_crash_spec("PIPELINE_WORKER_CRASH_AT", spec, _SPEC, "records_acked@<events>")
    if match is None:
        return None
    return CrashPoint(int(match.group(1)))
