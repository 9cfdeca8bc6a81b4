"""Fault injection for crash drills: die like ``kill -9`` at an exact point of one event.

Off by default. ``PIPELINE_CUES_CRASH_AT=<point>@<offset>`` makes the app call
``os._exit(137)`` (no flush, no commit, no shutdown: what SIGKILL leaves behind) when it
reaches ``<point>`` while processing the event at ``<offset>`` of any events partition.
The points are the two dangerous gaps of the per-event sequence (cues -> state -> ack):

- ``after_cue``: the event's cues are acknowledged by the broker; its state is not written.
- ``after_state``: its state is acknowledged in the changelog; the event is not acked, so
  its offset is not committed.

For tests and drills only; a production deployment never sets it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from runtime.crash import CRASH_EXIT_CODE, crash_now, match_crash_spec

__all__ = ["CRASH_EXIT_CODE", "CrashPoint", "Point", "parse_crash_at"]

Point = Literal["after_cue", "after_state"]
_SPEC = re.compile(r"^(after_cue|after_state)@(\d+)$")


@dataclass(frozen=True)
class CrashPoint:
    """Where to die: a point of the per-event sequence, at one events offset."""

    point: Point
    offset: int

    def check(self, point: Point, offset: int) -> None:
        """Exit the process at once if this is the point and the offset."""
        if (point, offset) == (self.point, self.offset):
            crash_now(f"{point} at offset {offset}")


def parse_crash_at(spec: str | None) -> CrashPoint | None:
    """``"after_cue@13"`` -> ``CrashPoint("after_cue", 13)``; unset or empty -> None.

    Raises:
        ConfigError: not ``<after_cue|after_state>@<offset>``.
    """
    match = match_crash_spec(
        "PIPELINE_CUES_CRASH_AT", spec, _SPEC, "<after_cue|after_state>@<offset>"
    )
    if match is None:
        return None
    point: Point = "after_cue" if match.group(1) == "after_cue" else "after_state"
    return CrashPoint(point, int(match.group(2)))
