"""Segment policy: coalesce chunks into binary frames within the limits of ``session.ready``.

A frame is sent once it holds at least ``min_segment_duration_seconds`` of media and
``min_segment_size_bytes``; it never exceeds ``max_segment_size_bytes`` nor
``max_segment_duration_seconds`` (a frame is cut before a chunk that would cross one).
The first chunk of a connection goes whole (its container init header opens the stream;
a WebM Segment is opened to unknown size); every later chunk contributes its media only
(MP4 ``moof``+``mdat`` fragments, WebM clusters), so one connection carries one stream.

The service flags every frame under the minimum, the tail of a session included. With
``hold_back`` (recorded sources) a complete frame is held until the next one is complete
too, so a short tail can join the frame before it (the session releases a held frame
when no chunk comes for a moment); live sessions send each frame as soon as it is
complete (holding would add a frame of latency) and accept a short tail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from chunks import ChunkError, Container, continuation, stream_head
from workers.session.exceptions import PoisonChunkError

__all__ = ["ChunkRef", "Segment", "SegmentLimits", "Segmenter"]

_DEFAULT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class SegmentLimits:
    """Frame limits announced by ``session.ready``."""

    min_duration_s: float = 3.0
    min_bytes: int = 1
    max_bytes: int = _DEFAULT_MAX_BYTES
    max_duration_s: float | None = None

    @classmethod
    def from_ready(cls, data: Mapping[str, Any]) -> SegmentLimits:
        """The limits of a ``session.ready`` ``data`` (documented defaults where absent)."""
        max_duration = data.get("max_segment_duration_seconds")
        return cls(
            min_duration_s=float(data.get("min_segment_duration_seconds") or 3.0),
            min_bytes=int(data.get("min_segment_size_bytes") or 1),
            max_bytes=int(data.get("max_segment_size_bytes") or _DEFAULT_MAX_BYTES),
            max_duration_s=float(max_duration) if max_duration else None,
        )


@dataclass(frozen=True)
class ChunkRef:
    """A whole chunk waiting to be relayed, with where it came from."""

    seq: int
    offset: int
    media_start_s: float
    media_end_s: float
    payload: bytes | memoryview
    produced_at: datetime
    keyframe_start: bool = True
    consumed_at: float = 0.0
    """``time.monotonic()`` when the consumer handed the chunk's record to the worker."""


@dataclass(frozen=True)
class Segment:
    """One binary frame: its pieces (views of the chunks' payloads, joined once, when the
    frame is sent) and the chunks (and media range) it carries."""

    parts: tuple[bytes | memoryview, ...]
    chunks: tuple[ChunkRef, ...]

    @cached_property
    def data(self) -> bytes:
        """The frame's bytes (one copy of its pieces)."""
        return b"".join(self.parts)

    @cached_property
    def size(self) -> int:
        """Length of the frame in bytes."""
        return sum(len(part) for part in self.parts)

    @property
    def first_seq(self) -> int:
        """seq of the first chunk in the frame."""
        return self.chunks[0].seq

    @property
    def last_seq(self) -> int:
        """seq of the last chunk in the frame."""
        return self.chunks[-1].seq

    @property
    def media_start_s(self) -> float:
        """Session media time the frame starts at."""
        return self.chunks[0].media_start_s

    @property
    def media_end_s(self) -> float:
        """Session media time the frame ends at."""
        return self.chunks[-1].media_end_s


@dataclass
class Segmenter:
    """Builds the frames of one connection from its chunks, in order."""

    limits: SegmentLimits
    hold_back: bool = False
    _held: Segment | None = None
    _parts: list[bytes | memoryview] = field(default_factory=list)
    _chunks: list[ChunkRef] = field(default_factory=list)
    _bytes: int = 0
    _container: Container | None = None

    def add(self, chunk: ChunkRef) -> list[Segment]:
        """Take the next chunk; the frames now complete (zero, one or two).

        Raises:
            PoisonChunkError: the chunk alone is over ``max_segment_size_bytes``, its
                container bytes do not parse, or it is in another container than the
                connection's stream.
        """
        data: bytes | memoryview
        try:
            if self._container is None:
                container, data = stream_head(chunk.payload)
            else:
                container, data = self._container, continuation(chunk.payload, self._container)
        except ChunkError as exc:
            raise PoisonChunkError(f"chunk {chunk.seq}: {exc}") from exc
        if len(data) > self.limits.max_bytes:
            raise PoisonChunkError(
                f"chunk {chunk.seq} is {len(data)} bytes, over the service's "
                f"max_segment_size_bytes {self.limits.max_bytes}"
            )
        ready: list[Segment] = []
        if self._chunks and self._would_exceed(chunk, len(data)):
            self._complete(ready)
        self._container = container
        self._parts.append(data)
        self._chunks.append(chunk)
        self._bytes += len(data)
        if self._duration() >= self.limits.min_duration_s and self._bytes >= self.limits.min_bytes:
            self._complete(ready)
        return ready

    def flush(self) -> list[Segment]:
        """What is left at the end of a session, regardless of the minimums.

        A held frame and a tail under the minimum become one frame when that stays within
        the maximums.
        """
        held, self._held = self._held, None
        tail = self._take() if self._chunks else None
        if held is None or tail is None:
            return [s for s in (held, tail) if s is not None]
        short = tail.media_end_s - tail.media_start_s < self.limits.min_duration_s
        max_duration = self.limits.max_duration_s
        fits = held.size + tail.size <= self.limits.max_bytes and (
            max_duration is None or tail.media_end_s - held.media_start_s <= max_duration
        )
        if short and fits:
            return [Segment(held.parts + tail.parts, held.chunks + tail.chunks)]
        return [held, tail]

    @property
    def holding(self) -> bool:
        """Whether a complete frame is held back."""
        return self._held is not None

    def release(self) -> list[Segment]:
        """The held frame, to send now (no more media came in time)."""
        held, self._held = self._held, None
        return [held] if held is not None else []

    @property
    def pending_chunks(self) -> tuple[ChunkRef, ...]:
        """Chunks not sent yet (a held frame's and the next frame's)."""
        held = self._held.chunks if self._held is not None else ()
        return held + tuple(self._chunks)

    def _complete(self, ready: list[Segment]) -> None:
        """The frame being built is complete: send it, or hold it and send the held one."""
        segment = self._take()
        if not self.hold_back:
            ready.append(segment)
            return
        if self._held is not None:
            ready.append(self._held)
        self._held = segment

    def _duration(self) -> float:
        return self._chunks[-1].media_end_s - self._chunks[0].media_start_s

    def _would_exceed(self, chunk: ChunkRef, size: int) -> bool:
        if self._bytes + size > self.limits.max_bytes:
            return True
        max_duration = self.limits.max_duration_s
        return max_duration is not None and (
            chunk.media_end_s - self._chunks[0].media_start_s > max_duration
        )

    def _take(self) -> Segment:
        segment = Segment(tuple(self._parts), tuple(self._chunks))
        self._parts, self._chunks, self._bytes = [], [], 0
        return segment
