"""Typed chunk-topic records: exact Avro datums, codec round trips, shape errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chunks.exceptions import ChunkRecordError
from chunks.records import (
    SessionEnded,
    SessionStarted,
    VideoChunk,
    chunk_topic_record,
    video_chunk_parts,
)
from schemas.codec import get_codec

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def started() -> SessionStarted:
    return SessionStarted(
        session_id="s-1",
        source_url="rtsp://cam:***@10.0.0.1/stream",
        source_kind="rtsp",
        live=True,
        container="mp4",
        mime_type='video/mp4; codecs="avc1.64001f"',
        video_codec="h264",
        audio_codec=None,
        width=1280,
        height=720,
        frame_rate=30.0,
        transcoded=False,
        chunk_target_duration_s=2.0,
        producer_id="host/42",
        started_at=T0,
        tenant="acme",
        labels={"room": "berlin-3"},
    )


def chunk(**changes: Any) -> VideoChunk:
    fields: dict[str, Any] = {
        "session_id": "s-1",
        "seq": 3,
        "media_start_s": 6.0,
        "media_duration_s": 2.0,
        "keyframe_start": True,
        "payload": b"\x00\x00\x00\x08ftyp",
        "produced_at": T0,
    }
    return VideoChunk(**{**fields, **changes})


def ended() -> SessionEnded:
    return SessionEnded(
        session_id="s-1",
        reason="source_error",
        error="rtsp://cam:***@10.0.0.1/stream: connection reset",
        chunks=4,
        media_seconds=8.0,
        bytes=4096,
        ended_at=T0,
    )


def test_session_started_datum() -> None:
    assert started().to_avro() == {
        "session_id": "s-1",
        "source_url": "rtsp://cam:***@10.0.0.1/stream",
        "source_kind": "rtsp",
        "live": True,
        "container": "mp4",
        "mime_type": 'video/mp4; codecs="avc1.64001f"',
        "video_codec": "h264",
        "audio_codec": None,
        "width": 1280,
        "height": 720,
        "frame_rate": 30.0,
        "transcoded": False,
        "chunk_target_duration_s": 2.0,
        "tenant": "acme",
        "app": None,
        "labels": {"room": "berlin-3"},
        "producer_id": "host/42",
        "started_at": T0,
    }


def test_video_chunk_datum() -> None:
    assert chunk(part_index=1, part_count=2).to_avro() == {
        "session_id": "s-1",
        "seq": 3,
        "media_start_s": 6.0,
        "media_duration_s": 2.0,
        "part_index": 1,
        "part_count": 2,
        "keyframe_start": True,
        "byte_size": 8,
        "payload": b"\x00\x00\x00\x08ftyp",
        "produced_at": T0,
    }


def test_session_ended_datum() -> None:
    assert ended().to_avro() == {
        "session_id": "s-1",
        "reason": "source_error",
        "error": "rtsp://cam:***@10.0.0.1/stream: connection reset",
        "chunks": 4,
        "media_seconds": 8.0,
        "bytes": 4096,
        "ended_at": T0,
    }


@pytest.mark.parametrize(
    "record", [started(), chunk(), chunk(part_index=2, part_count=3), ended()], ids=repr
)
def test_round_trip_through_the_codec(record: SessionStarted | VideoChunk | SessionEnded) -> None:
    codec = get_codec()
    decoded = codec.decode(codec.encode(record.AVRO_NAME, record.to_avro()))
    assert decoded.name == record.AVRO_NAME
    assert type(record).from_avro(decoded.datum) == record
    assert chunk_topic_record(decoded.name, decoded.datum) == record


def test_video_chunk_parts_is_the_builder() -> None:
    records = video_chunk_parts(
        "s-1",
        seq=3,
        media_start_s=6.0,
        media_duration_s=2.0,
        keyframe_start=True,
        parts=[b"aa", b"bbb", b"c"],
        produced_at=T0,
    )
    assert records == [
        chunk(payload=b"aa", part_index=0, part_count=3),
        chunk(payload=b"bbb", part_index=1, part_count=3, keyframe_start=False),
        chunk(payload=b"c", part_index=2, part_count=3, keyframe_start=False),
    ]
    assert [r.byte_size for r in records] == [2, 3, 1]


def test_missing_field() -> None:
    datum = ended().to_avro()
    del datum["reason"]
    with pytest.raises(ChunkRecordError) as caught:
        SessionEnded.from_avro(datum)
    assert str(caught.value) == "SessionEnded datum has no field 'reason'"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seq", "3", "VideoChunk datum field 'seq' is str, expected int"),
        ("seq", True, "VideoChunk datum field 'seq' is bool, expected int"),
        ("payload", "x", "VideoChunk datum field 'payload' is str, expected bytes"),
        (
            "media_start_s",
            None,
            "VideoChunk datum field 'media_start_s' is NoneType, expected float or int",
        ),
    ],
)
def test_wrong_field_type(key: str, value: object, message: str) -> None:
    datum = chunk().to_avro()
    datum[key] = value
    with pytest.raises(ChunkRecordError) as caught:
        VideoChunk.from_avro(datum)
    assert str(caught.value) == message


def test_optional_string_field_type() -> None:
    datum = started().to_avro()
    datum["tenant"] = 7
    with pytest.raises(ChunkRecordError) as caught:
        SessionStarted.from_avro(datum)
    assert str(caught.value) == "SessionStarted datum field 'tenant' is int, expected str or null"


def test_byte_size_must_match_the_payload() -> None:
    datum = chunk().to_avro()
    datum["byte_size"] = 9
    with pytest.raises(ChunkRecordError) as caught:
        VideoChunk.from_avro(datum)
    assert str(caught.value) == (
        "VideoChunk of session s-1: chunk 3 part 0: byte_size 9 != payload length 8"
    )


def test_part_index_outside_part_count() -> None:
    with pytest.raises(ChunkRecordError) as caught:
        chunk(part_index=2, part_count=2)
    assert str(caught.value) == (
        "VideoChunk of session s-1: chunk 3: part_index 2 is not within part_count 2"
    )


def test_negative_seq() -> None:
    with pytest.raises(ChunkRecordError) as caught:
        chunk(seq=-1)
    assert str(caught.value) == "VideoChunk of session s-1: seq -1 < 0"


def test_not_a_chunk_topic_record() -> None:
    with pytest.raises(ChunkRecordError) as caught:
        chunk_topic_record("Inter1Event", {})
    assert str(caught.value) == (
        "Inter1Event is not a chunk topic record (expected SessionStarted, VideoChunk "
        "or SessionEnded)"
    )
