"""What the box-header readers share: tracks, samples, and an incremental byte cursor.

A reader (``mp4_boxes.py``, ``ebml.py``) is fed the client's byte stream in frames of any
size (a header may be split anywhere) and returns the media samples whose bytes have
fully arrived, as :class:`Sample` s: track, timestamps in the track's ticks, size and the
keyframe flag; nothing in the payload is read. :class:`ByteCursor` is the incremental
part: it collects the few bytes a reader asks for (a header, a small box) into a buffer
and skips payloads without copying them.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.exceptions import MalformedMediaError

__all__ = ["ByteCursor", "Sample", "TrackInfo", "malformed"]


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """One audio or video track: ``kind``, and seconds = ticks * ``num`` / ``den``.

    Attributes:
        kind: ``video`` or ``audio``.
        num, den: the tick length in seconds as a fraction (exact; ``1/timescale`` in MP4,
            ``TimecodeScale / 1e9`` in WebM).
        width, height: video frame size (0 when unknown or audio).
        delay_ticks: codec delay (WebM Opus pre-skip) added to the first timestamp to
            find where the track's presentation starts.
    """

    kind: str
    num: int
    den: int
    width: int = 0
    height: int = 0
    delay_ticks: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    """One compressed frame: presentation/decode time and ``duration`` in its track's ticks."""

    track: TrackInfo
    pts: int
    dts: int
    duration: int
    size: int
    keyframe: bool
    end_offset: int
    """Stream offset just past the sample's bytes: it counts once these have arrived."""


def malformed(message: str, segment: int) -> MalformedMediaError:
    """The ``ih5004`` error for a stream whose box headers do not parse."""
    return MalformedMediaError(f"Malformed media segment: {message}", segment)


class ByteCursor:
    """Collects requested byte counts from arbitrarily split frames; skips without copying.

    ``offset`` is the stream offset of the next byte not yet consumed. A reader calls
    :meth:`want` (collect ``n`` bytes into :attr:`buffer`) or :meth:`skip`, then pumps
    :meth:`step` over each frame until it returns False (the frame is used up).
    """

    def __init__(self) -> None:
        self.offset = 0
        self.buffer = bytearray()
        self._need = 0
        self._skip = 0

    def want(self, count: int) -> None:
        """Collect the next ``count`` bytes (after any pending skip) into ``buffer``."""
        self.buffer.clear()
        self._need = count

    def skip(self, count: int) -> None:
        """Pass over the next ``count`` bytes without keeping them."""
        self._skip += count

    def step(self, view: memoryview, pos: int) -> tuple[int, bool]:
        """Consume from ``view[pos:]``; (new pos, whether the wanted bytes are complete)."""
        if self._skip:
            taken = min(self._skip, len(view) - pos)
            self._skip -= taken
            self.offset += taken
            pos += taken
            if self._skip:
                return pos, False
        missing = self._need - len(self.buffer)
        taken = min(missing, len(view) - pos)
        if taken:
            self.buffer += view[pos : pos + taken]
            self.offset += taken
            pos += taken
        return pos, len(self.buffer) == self._need and not self._skip
