"""Segment policy: coalesce chunks into binary frames within the limits of ``session.ready``.

A frame is sent once it holds at least ``min_segment_duration_seconds`` of media and
``min_segment_size_bytes``; it never exceeds ``max_segment_size_bytes`` nor
``max_segment_duration_seconds`` (a frame is cut before a chunk that would cross one).
The first chunk of a connection goes whole (its container init header opens the stream);
every later chunk contributes its fragments only, so one connection carries one stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chunks import fragments_only
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
    payload: bytes
    produced_at: datetime
    keyframe_start: bool = True


@dataclass(frozen=True)
class Segment:
    """One binary frame: bytes and the chunks (and media range) it carries."""

    data: bytes
    chunks: tuple[ChunkRef, ...]

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
    _parts: list[bytes] = field(default_factory=list)
    _chunks: list[ChunkRef] = field(default_factory=list)
    _bytes: int = 0
    _started: bool = False

    def add(self, chunk: ChunkRef) -> list[Segment]:
        """Take the next chunk; the frames now complete (zero, one or two).

        Raises:
            PoisonChunkError: the chunk alone is over ``max_segment_size_bytes``.
        """
        data = chunk.payload if not self._started else fragments_only(chunk.payload)
        if len(data) > self.limits.max_bytes:
            raise PoisonChunkError(
                f"chunk {chunk.seq} is {len(data)} bytes, over the service's "
                f"max_segment_size_bytes {self.limits.max_bytes}"
            )
        ready: list[Segment] = []
        if self._chunks and self._would_exceed(chunk, len(data)):
            ready.append(self._take())
        self._started = True
        self._parts.append(data)
        self._chunks.append(chunk)
        self._bytes += len(data)
        if self._duration() >= self.limits.min_duration_s and self._bytes >= self.limits.min_bytes:
            ready.append(self._take())
        return ready

    def flush(self) -> Segment | None:
        """What is left (the tail of a session), regardless of the minimums."""
        return self._take() if self._chunks else None

    @property
    def pending_chunks(self) -> tuple[ChunkRef, ...]:
        """Chunks held for the next frame."""
        return tuple(self._chunks)

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
        segment = Segment(b"".join(self._parts), tuple(self._chunks))
        self._parts, self._chunks, self._bytes = [], [], 0
        return segment
