"""Stream skips: media time the client never sent, found as holes in every track at once.

A jump in the media timestamps of all tracks (a client stall whose recorder clock kept
running, fragments lost before the socket) leaves a stretch no packet of any track covers.
That stretch is a *stream skip*: it is reported as ``coverage.dropped`` and never billed,
and no signal is inferred from its silence. A hole in the video alone while audio
continues is a video gap instead (``coverage.degraded``, analysed and billed).

Everything is integer milliseconds. The reader adds each packet's span as it is demuxed;
tracks may lag each other in byte order (an MP4 muxer may write seconds of one track
before the other), so a hole found when one track jumps is narrowed, or removed, when a
lagging track's packets later land inside it. Analysis only uses a range once every track
has passed it, when the holes there are final.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["Range", "SkipTracker", "overlap", "subtract"]

Range = tuple[int, int]


class SkipTracker:
    """Holes longer than ``min_ms`` in the union of every track's packet spans (ms)."""

    def __init__(self, min_ms: int) -> None:
        self._min_ms = min_ms
        self._covered_ms = 0
        self._skips: list[Range] = []

    def add(self, start_ms: int, end_ms: int) -> bool:
        """Add one packet's span; True when it opens a new skip (media jumped ahead)."""
        opened = False
        if start_ms - self._covered_ms > self._min_ms:
            self._skips.append((self._covered_ms, start_ms))
            opened = True
        if self._skips and start_ms < self._skips[-1][1] and end_ms > self._skips[0][0]:
            pieces = subtract(self._skips, [(start_ms, end_ms)])
            self._skips = [(a, b) for a, b in pieces if b - a > self._min_ms]
        self._covered_ms = max(self._covered_ms, end_ms)
        return opened

    def ranges(self) -> list[Range]:
        """The skips found so far, in order (cumulative)."""
        return list(self._skips)


def overlap(ranges: Iterable[Range], start: int, end: int) -> list[Range]:
    """The parts of ``ranges`` inside ``[start, end)``."""
    return [(max(a, start), min(b, end)) for a, b in ranges if a < end and b > start]


def subtract(ranges: Sequence[Range], holes: Sequence[Range], min_ms: int = 0) -> list[Range]:
    """``ranges`` minus ``holes``: the pieces left, each longer than ``min_ms``."""
    out: list[Range] = []
    for a, b in ranges:
        pieces = [(a, b)]
        for ha, hb in holes:
            pieces = [
                piece
                for pa, pb in pieces
                for piece in ((pa, min(pb, ha)), (max(pa, hb), pb))
                if piece[1] > piece[0]
            ]
        out += [(pa, pb) for pa, pb in pieces if pb - pa > min_ms]
    return out
