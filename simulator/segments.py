"""Media time carried by each binary frame (segment), for the segment-duration limits.

A packet belongs to the frame holding its first byte (``packet.pos`` in the byte stream);
a frame's duration is the media span of its packets. Frames holding no packet start
(an init header alone, a piece of a large packet) have no duration and are not checked.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["SegmentSpans"]


@dataclass
class SegmentSpans:
    """Per-frame media spans in integer ms; the demux thread adds packets in byte order."""

    spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    reported: int = 0

    latest: int = 0

    def add(self, frame_ends: list[int], pos: int | None, start_s: float, end_s: float) -> int:
        """Attribute one packet (at byte ``pos``) to its frame; returns the latest frame seen."""
        if pos is None or pos < 0:
            return self.latest
        index = bisect.bisect_right(frame_ends, pos)
        start_ms, end_ms = round(start_s * 1000), round(end_s * 1000)
        low, high = self.spans.get(index, (start_ms, end_ms))
        self.spans[index] = (min(low, start_ms), max(high, end_ms))
        self.latest = max(self.latest, index)
        return self.latest

    def complete(self, reading: int | None) -> list[tuple[int, int]]:
        """(frame index, duration ms) of frames before ``reading`` (all when None), once each."""
        done = [
            (i, span[1] - span[0])
            for i, span in sorted(self.spans.items())
            if i >= self.reported and (reading is None or i < reading)
        ]
        if done:
            self.reported = done[-1][0] + 1
        return done
