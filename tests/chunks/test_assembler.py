"""ChunkAssembler: the inverse of the producer's record builder, and every broken sequence."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from chunks.assembler import AssembledChunk, ChunkAssembler
from chunks.boxes import split_parts
from chunks.exceptions import (
    ChunkPartError,
    DuplicatePartError,
    InconsistentPartError,
    MissingPartError,
    OutOfOrderPartError,
    UnknownChunkError,
)
from chunks.records import VideoChunk, video_chunk_parts

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def parts(session_id: str, seq: int, payloads: list[bytes]) -> list[VideoChunk]:
    return video_chunk_parts(
        session_id,
        seq=seq,
        media_start_s=seq * 2.0,
        media_duration_s=2.0,
        keyframe_start=True,
        parts=payloads,
        produced_at=T0,
    )


def whole(session_id: str, seq: int, payload: bytes, part_count: int) -> AssembledChunk:
    return AssembledChunk(
        session_id=session_id,
        seq=seq,
        media_start_s=seq * 2.0,
        media_duration_s=2.0,
        keyframe_start=True,
        payload=payload,
        produced_at=T0,
        part_count=part_count,
    )


def error_fields(error: ChunkPartError) -> tuple[str, int, int | None, int | None]:
    return (error.session_id, error.seq, error.expected_part, error.got_part)


def test_unsplit_chunk_comes_back_at_once() -> None:
    assembler = ChunkAssembler()
    (record,) = parts("a", 0, [b"init+frag"])
    assert assembler.add(record) == whole("a", 0, b"init+frag", 1)
    assert assembler.pending_bytes == 0


def test_split_chunk_is_joined_on_its_last_part() -> None:
    assembler = ChunkAssembler()
    first, second, third = parts("a", 0, [b"init", b"frag1", b"frag2"])
    assert assembler.add(first) is None
    assert assembler.add(second) is None
    assert assembler.pending_bytes == 9
    assert assembler.add(third) == whole("a", 0, b"initfrag1frag2", 3)
    assert assembler.pending_bytes == 0
    assert whole("a", 0, b"", 3).media_end_s == 2.0


def test_inverse_of_split_parts() -> None:
    def box(kind: bytes, body: int) -> bytes:
        return struct.pack(">I4s", 8 + body, kind) + bytes(body)

    payload = box(b"ftyp", 12) + box(b"moov", 100)
    payload += b"".join(box(b"moof", 40) + box(b"mdat", n) for n in (300, 200, 250, 1500))
    pieces = split_parts(payload, 500)
    assert [len(p) for p in pieces] == [484, 256, 306, 500, 500, 500, 56]
    assembler = ChunkAssembler()
    results = [assembler.add(record) for record in parts("a", 5, pieces)]
    assert results == [None] * 6 + [whole("a", 5, payload, 7)]


def test_interleaved_sessions() -> None:
    assembler = ChunkAssembler()
    a = parts("a", 0, [b"a0", b"a1"]) + parts("a", 1, [b"a2"])
    b = parts("b", 0, [b"b0", b"b1", b"b2"])
    order = [a[0], b[0], b[1], a[1], b[2], a[2]]
    done = [c for c in (assembler.add(r) for r in order) if c is not None]
    assert done == [
        whole("a", 0, b"a0a1", 2),
        whole("b", 0, b"b0b1b2", 3),
        whole("a", 1, b"a2", 1),
    ]
    assert assembler.sessions == frozenset({"a", "b"})


def test_missing_part_revealed_by_the_next_chunk() -> None:
    assembler = ChunkAssembler()
    first, second, _third = parts("a", 3, [b"p0", b"p1", b"p2"])
    (next_chunk,) = parts("a", 4, [b"n0"])
    assembler.add(first)
    assembler.add(second)
    with pytest.raises(MissingPartError) as caught:
        assembler.add(next_chunk)
    assert str(caught.value) == "session a: chunk 3: part 2 of 3 is missing (got chunk 4 part 0)"
    assert error_fields(caught.value) == ("a", 3, 2, 0)
    assert assembler.pending_bytes == 0  # the incomplete chunk is discarded
    # The record that revealed the gap was not consumed: it goes on as a fresh chunk.
    assert assembler.add(next_chunk) == whole("a", 4, b"n0", 1)


def test_missing_part_at_the_end_of_the_session() -> None:
    assembler = ChunkAssembler()
    first, _second = parts("a", 7, [b"p0", b"p1"])
    assembler.add(first)
    with pytest.raises(MissingPartError) as caught:
        assembler.end_session("a")
    assert str(caught.value) == "session a: chunk 7: part 1 of 2 is missing (the session ended)"
    assert error_fields(caught.value) == ("a", 7, 1, None)
    assert assembler.sessions == frozenset()


def test_end_of_a_complete_session_forgets_it() -> None:
    assembler = ChunkAssembler()
    assembler.add(parts("a", 0, [b"x"])[0])
    assembler.end_session("a")
    assembler.end_session("never-seen")
    assert assembler.sessions == frozenset()


def test_out_of_order_part() -> None:
    assembler = ChunkAssembler()
    first, second, third = parts("a", 2, [b"p0", b"p1", b"p2"])
    assembler.add(first)
    with pytest.raises(OutOfOrderPartError) as caught:
        assembler.add(third)
    assert str(caught.value) == (
        "session a: chunk 2: part 2 of 3 arrived out of order (expected part 1)"
    )
    assert error_fields(caught.value) == ("a", 2, 1, 2)
    # The chunk was discarded: the late part now belongs to an unknown chunk.
    with pytest.raises(UnknownChunkError) as late:
        assembler.add(second)
    assert str(late.value) == (
        "session a: chunk 2: part 1 of 3 belongs to an unknown chunk (its part 0 never arrived)"
    )


def test_duplicate_part_is_ignored() -> None:
    assembler = ChunkAssembler()
    first, second, third = parts("a", 2, [b"p0", b"p1", b"p2"])
    assembler.add(first)
    assembler.add(second)
    for again, index in ((first, 0), (second, 1)):
        with pytest.raises(DuplicatePartError) as caught:
            assembler.add(again)
        assert str(caught.value) == (
            f"session a: chunk 2: part {index} of 3 is a duplicate (expected part 2)"
        )
        assert error_fields(caught.value) == ("a", 2, 2, index)
    assert assembler.add(third) == whole("a", 2, b"p0p1p2", 3)


def test_duplicate_of_a_completed_chunk() -> None:
    assembler = ChunkAssembler()
    first, second = parts("a", 2, [b"p0", b"p1"])
    assembler.add(first)
    assembler.add(second)
    for again in (first, second, parts("a", 1, [b"old"])[0]):
        with pytest.raises(DuplicatePartError) as caught:
            assembler.add(again)
        assert str(caught.value) == (
            f"session a: chunk {again.seq}: part {again.part_index} of {again.part_count} "
            "is a duplicate (chunks up to 2 are complete)"
        )
        assert error_fields(caught.value) == ("a", again.seq, None, again.part_index)
    assert assembler.add(parts("a", 3, [b"next"])[0]) == whole("a", 3, b"next", 1)


def test_part_of_an_unknown_chunk() -> None:
    assembler = ChunkAssembler()
    _first, second = parts("b", 9, [b"p0", b"p1"])
    with pytest.raises(UnknownChunkError) as caught:
        assembler.add(second)
    assert str(caught.value) == (
        "session b: chunk 9: part 1 of 2 belongs to an unknown chunk (its part 0 never arrived)"
    )
    assert error_fields(caught.value) == ("b", 9, 0, 1)


def test_inconsistent_part_count() -> None:
    assembler = ChunkAssembler()
    first, _second, _third = parts("a", 4, [b"p0", b"p1", b"p2"])
    _, other = parts("a", 4, [b"q0", b"q1"])
    assembler.add(first)
    with pytest.raises(InconsistentPartError) as caught:
        assembler.add(other)
    assert str(caught.value) == "session a: chunk 4: part 1 says 2 parts, part 0 said 3"
    assert error_fields(caught.value) == ("a", 4, 1, 1)
    assert assembler.pending_bytes == 0


def test_discard_drops_a_session_without_checks() -> None:
    assembler = ChunkAssembler()
    assembler.add(parts("a", 0, [b"abc", b"de"])[0])
    assembler.add(parts("b", 0, [b"x"])[0])
    assert assembler.discard("a") == 3
    assert assembler.discard("b") == 0
    assert assembler.discard("c") == 0
    assert assembler.sessions == frozenset()
