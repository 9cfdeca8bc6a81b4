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

__all__ = ["ByteCursor", "HeaderError", "IncrementalReader", "Sample", "TrackInfo", "malformed"]


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


class HeaderError(Exception):
    """A box or element header does not parse; becomes ``ih5004`` with the segment read."""


class IncrementalReader:
    """Shared driver of the container readers: pumps each frame through a :class:`ByteCursor`
    into :meth:`_advance` and releases the samples whose bytes have all arrived."""

    container: str = ""
    """Named in parse errors (``fragmented MP4``, ``WebM``)."""

    def __init__(self, first_header_bytes: int) -> None:
        self._cursor = ByteCursor()
        self._cursor.want(first_header_bytes)
        self._pending: list[Sample] = []
        self._received = 0
        self.tracks: list[TrackInfo] | None = None
        """The audio and video tracks, once the init header has been read."""

    def feed(self, data: bytes, segment: int) -> list[Sample]:
        """Read one frame (``segment``: its index, for errors); samples now complete."""
        view = memoryview(data)
        self._received += len(data)
        cursor, pos = self._cursor, 0
        try:
            while pos < len(view):
                pos, done = cursor.step(view, pos)
                if done:
                    self._advance()
        except HeaderError as exc:
            raise malformed(f"{exc} ({self.container}, byte {cursor.offset})", segment) from None
        pending, received = self._pending, self._received
        count = 0
        while count < len(pending) and pending[count].end_offset <= received:
            count += 1
        ready, self._pending = pending[:count], pending[count:]
        return ready

    def _advance(self) -> None:
        """The cursor holds what was asked for: parse it and ask for what comes next."""
        raise NotImplementedError
