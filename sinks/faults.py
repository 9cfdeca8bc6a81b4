"""Fault injection for crash drills: die like ``kill -9`` at an exact point of one batch.

Off by default. ``PIPELINE_SINK_CRASH_AT=<point>@<topic>:<partition>:<first_offset>`` makes
the sink call ``os._exit(137)`` (no flush, no commit, no cleanup: what SIGKILL leaves
behind) when it reaches ``<point>`` while inserting the batch that starts at
``<first_offset>`` of that partition (``<topic>`` is the logical topic key: events, usage,
cues, chunks). The points are the gaps of a partial batch's insert sequence
(intent row -> rows -> ledger row):

- ``after_intent``: the batch's intent row is in the ledger, none of its rows.
- ``after_rows``: every row of the batch is acknowledged, its ledger row is not written.

For tests and drills only; a production deployment never sets it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from runtime.crash import CRASH_EXIT_CODE, crash_now, match_crash_spec
from runtime.topics import topic_name

__all__ = ["CRASH_EXIT_CODE", "CrashPoint", "Point", "parse_crash_at"]

Point = Literal["after_intent", "after_rows"]
_SPEC = re.compile(r"^(after_intent|after_rows)@(events|usage|cues|chunks):(\d+):(\d+)$")


@dataclass(frozen=True)
class CrashPoint:
    """Where to die: a point of a batch's insert, for the batch at one partition and offset."""

    point: Point
    topic: str
    partition: int
    first_offset: int

    def check(self, point: Point, topic: str, partition: int, first_offset: int) -> None:
        """Exit the process at once if this is the point and the batch."""
        if (point, topic, partition, first_offset) == (
            self.point,
            self.topic,
            self.partition,
            self.first_offset,
        ):
            crash_now(f"{point} of the batch at {topic}:{partition}:{first_offset}")


def parse_crash_at(spec: str | None) -> CrashPoint | None:
    """``"after_rows@events:0:0"`` -> the crash point (topic resolved to its full name);
    unset or empty -> None.

    Raises:
        ConfigError: not ``<after_intent|after_rows>@<topic key>:<partition>:<offset>``.
    """
    match = match_crash_spec(
        "PIPELINE_SINK_CRASH_AT",
        spec,
        _SPEC,
        "<after_intent|after_rows>@<events|usage|cues|chunks>:<partition>:<first offset>",
    )
    if match is None:
        return None
    point: Point = "after_intent" if match.group(1) == "after_intent" else "after_rows"
    return CrashPoint(point, topic_name(match.group(2)), int(match.group(3)), int(match.group(4)))
