"""Join the parts of split chunks back into whole chunks: the inverse of the record builder.

Producers publish a chunk larger than the record limit as ``part_count`` consecutive
``VideoChunk`` records sharing one ``seq`` (see :func:`chunks.records.video_chunk_parts`
and :func:`chunks.boxes.split_parts`). The assembler keeps, per session, the chunk being
joined, checks every part arrives exactly once and in order, and hands back the whole
chunk when its last part arrives. Sessions interleave freely; parts within a session must
not (a producer sends a chunk's parts back to back on the session's key, hence partition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from chunks.exceptions import (
    ChunkPartError,
    DuplicatePartError,
    InconsistentPartError,
    MissingPartError,
    OutOfOrderPartError,
    UnknownChunkError,
)
from chunks.records import VideoChunk

__all__ = ["AssembledChunk", "ChunkAssembler"]


@dataclass(frozen=True)
class AssembledChunk:
    """A whole chunk: its parts' payloads joined, described by its part 0."""

    session_id: str
    seq: int
    media_start_s: float
    media_duration_s: float
    keyframe_start: bool
    payload: bytes | memoryview
    produced_at: datetime
    part_count: int

    @property
    def media_end_s(self) -> float:
        """Media time the chunk ends at, in seconds from the session's start."""
        return self.media_start_s + self.media_duration_s


@dataclass
class _Partial:
    first: VideoChunk
    payloads: list[bytes | memoryview] = field(default_factory=list)

    @property
    def next_index(self) -> int:
        return len(self.payloads)


@dataclass
class _Session:
    partial: _Partial | None = None
    completed_seq: int | None = None  # highest seq handed back whole


class ChunkAssembler:
    """Per-session joining of split chunks, with typed errors for every broken sequence.

    :meth:`add` returns the :class:`AssembledChunk` once its last part arrived (at once
    for an unsplit chunk) and None while parts are outstanding. On a
    :class:`~chunks.exceptions.ChunkPartError` the state stays usable: a missing,
    out-of-order or inconsistent part discards the incomplete chunk; a duplicate is
    ignored. A :class:`MissingPartError` raised by :meth:`add` did not consume the record
    that revealed the gap (the next chunk's part): add it again.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}

    @property
    def sessions(self) -> frozenset[str]:
        """Session ids the assembler holds state for."""
        return frozenset(self._sessions)

    @property
    def pending_bytes(self) -> int:
        """Bytes held in incomplete chunks, over all sessions."""
        return sum(
            sum(len(p) for p in s.partial.payloads)
            for s in self._sessions.values()
            if s.partial is not None
        )

    def add(self, part: VideoChunk) -> AssembledChunk | None:
        """Take one VideoChunk record; the whole chunk when this was its last part."""
        session = self._sessions.setdefault(part.session_id, _Session())
        partial = session.partial
        if partial is not None and partial.first.seq != part.seq:
            session.partial = None
            raise _missing(partial, got=part)
        if partial is None:
            if part.part_index != 0:
                raise _without_part0(part, session.completed_seq)
            if session.completed_seq is not None and part.seq <= session.completed_seq:
                raise _duplicate(part, expected=None, completed_seq=session.completed_seq)
            partial = _Partial(part)
        else:
            first = partial.first
            if part.part_count != first.part_count:
                session.partial = None
                raise InconsistentPartError(
                    f"session {part.session_id}: chunk {part.seq}: part {part.part_index} "
                    f"says {part.part_count} parts, part 0 said {first.part_count}",
                    session_id=part.session_id,
                    seq=part.seq,
                    expected_part=partial.next_index,
                    got_part=part.part_index,
                )
            if part.part_index < partial.next_index:
                raise _duplicate(part, expected=partial.next_index, completed_seq=None)
            if part.part_index > partial.next_index:
                session.partial = None
                raise OutOfOrderPartError(
                    f"session {part.session_id}: chunk {part.seq}: part {part.part_index} of "
                    f"{part.part_count} arrived out of order (expected part {partial.next_index})",
                    session_id=part.session_id,
                    seq=part.seq,
                    expected_part=partial.next_index,
                    got_part=part.part_index,
                )
        partial.payloads.append(part.payload)
        if partial.next_index < part.part_count:
            session.partial = partial
            return None
        session.partial = None
        session.completed_seq = part.seq
        first = partial.first
        return AssembledChunk(
            session_id=first.session_id,
            seq=first.seq,
            media_start_s=first.media_start_s,
            media_duration_s=first.media_duration_s,
            keyframe_start=first.keyframe_start,
            payload=partial.payloads[0] if first.part_count == 1 else b"".join(partial.payloads),
            produced_at=first.produced_at,
            part_count=first.part_count,
        )

    def end_session(self, session_id: str) -> None:
        """The session ended: forget it; raises MissingPartError if a chunk is incomplete."""
        session = self._sessions.pop(session_id, None)
        if session is not None and session.partial is not None:
            raise _missing(session.partial, got=None)

    def discard(self, session_id: str) -> int:
        """Forget a session without checks (its partition moved away); bytes dropped."""
        session = self._sessions.pop(session_id, None)
        if session is None or session.partial is None:
            return 0
        return sum(len(p) for p in session.partial.payloads)


def _missing(partial: _Partial, *, got: VideoChunk | None) -> MissingPartError:
    first = partial.first
    instead = "the session ended" if got is None else f"got chunk {got.seq} part {got.part_index}"
    return MissingPartError(
        f"session {first.session_id}: chunk {first.seq}: part {partial.next_index} of "
        f"{first.part_count} is missing ({instead})",
        session_id=first.session_id,
        seq=first.seq,
        expected_part=partial.next_index,
        got_part=None if got is None else got.part_index,
    )


def _duplicate(
    part: VideoChunk, *, expected: int | None, completed_seq: int | None
) -> DuplicatePartError:
    why = (
        f"expected part {expected}"
        if expected is not None
        else f"chunks up to {completed_seq} are complete"
    )
    return DuplicatePartError(
        f"session {part.session_id}: chunk {part.seq}: part {part.part_index} of "
        f"{part.part_count} is a duplicate ({why})",
        session_id=part.session_id,
        seq=part.seq,
        expected_part=expected,
        got_part=part.part_index,
    )


def _without_part0(part: VideoChunk, completed_seq: int | None) -> ChunkPartError:
    if completed_seq is not None and part.seq <= completed_seq:
        return _duplicate(part, expected=None, completed_seq=completed_seq)
    return UnknownChunkError(
        f"session {part.session_id}: chunk {part.seq}: part {part.part_index} of "
        f"{part.part_count} belongs to an unknown chunk (its part 0 never arrived)",
        session_id=part.session_id,
        seq=part.seq,
        expected_part=0,
        got_part=part.part_index,
    )
