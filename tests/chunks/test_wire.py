"""VideoChunkReader: exact values from framed Avro, payload not copied, clear errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from chunks.exceptions import ChunkWireError
from chunks.records import SessionEnded, VideoChunk, chunk_topic_record
from chunks.wire import VideoChunkReader, writer_layout
from schemas.catalog import SchemaCatalog, default_catalog
from schemas.codec import get_codec

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
PAYLOAD = b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00"


def chunk(**changes: Any) -> VideoChunk:
    fields: dict[str, Any] = {
        "session_id": "s-ü1",
        "seq": 300,
        "media_start_s": 6.25,
        "media_duration_s": 2.0,
        "keyframe_start": True,
        "payload": PAYLOAD,
        "produced_at": T0,
        "part_index": 1,
        "part_count": 3,
    }
    return VideoChunk(**{**fields, **changes})


def encoded(record: VideoChunk) -> bytes:
    return get_codec().encode(record.AVRO_NAME, record.to_avro())


def reader() -> VideoChunkReader:
    return VideoChunkReader(get_codec().known_writers("VideoChunk"))


def test_reads_every_field_exactly_and_the_payload_is_a_view_of_the_value() -> None:
    value = encoded(chunk())
    got = reader().read(value)
    assert got is not None
    assert isinstance(got.payload, memoryview)
    assert got.payload.obj is value  # a view: the payload was not copied
    assert bytes(got.payload) == PAYLOAD
    assert (
        got.session_id,
        got.seq,
        got.media_start_s,
        got.media_duration_s,
        got.keyframe_start,
        got.produced_at,
        got.part_index,
        got.part_count,
    ) == ("s-ü1", 300, 6.25, 2.0, True, T0, 1, 3)


@pytest.mark.parametrize(
    "record",
    [
        chunk(),
        chunk(seq=0, part_index=0, part_count=1, keyframe_start=False, payload=b""),
        chunk(seq=2**40, media_start_s=-1.5, produced_at=datetime(1969, 12, 31, tzinfo=UTC)),
    ],
    ids=["split-part", "empty-payload", "large-seq-negative-time"],
)
def test_same_record_as_the_codec(record: VideoChunk) -> None:
    value = encoded(record)
    decoded = get_codec().decode(value)
    via_codec = chunk_topic_record(decoded.name, decoded.datum)
    got = reader().read(value)
    assert got is not None
    assert VideoChunk(**{**vars(got), "payload": bytes(got.payload)}) == via_codec == record


def test_reads_v1_records_with_the_defaults_of_schema_resolution() -> None:
    catalog = default_catalog()
    v1 = catalog.versions("VideoChunk")[0]
    datum = {k: v for k, v in chunk().to_avro().items() if k not in ("part_index", "part_count")}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, v1.parsed, datum)
    value = b"\xc3\x01" + v1.fingerprint + body.getvalue()
    got = reader().read(value)
    assert got is not None
    assert (got.seq, got.part_index, got.part_count, bytes(got.payload)) == (300, 0, 1, PAYLOAD)


def test_other_records_and_unknown_headers_are_left_to_the_codec() -> None:
    ended = SessionEnded("s-1", "eof", 4, 8.0, 4096, T0)
    other = get_codec().encode(ended.AVRO_NAME, ended.to_avro())
    read = reader()
    assert read.read(other) is None
    assert read.read(b"\xc3\x01not avro at all") is None
    assert read.read(b"") is None
    assert VideoChunkReader().read(encoded(chunk())) is None  # knows no writer


def _cut_cases() -> list[tuple[int, str]]:
    # header 10, session_id: length 1 + 5 bytes ("s-ü1" is 5 UTF-8 bytes), seq 300: 2 bytes
    return [
        (10, "ends inside field 'session_id' (needs 1 byte(s), 0 left)"),
        (13, "ends inside field 'session_id' (needs 5 byte(s), 2 left)"),
        (16, "ends inside field 'seq' (needs 1 byte(s), 0 left)"),
        (17, "ends inside field 'seq' (needs 1 byte(s), 0 left)"),  # inside its 2-byte varint
        (18, "ends inside field 'media_start_s' (needs 8 byte(s), 0 left)"),
        (22, "ends inside field 'media_start_s' (needs 8 byte(s), 4 left)"),
    ]


@pytest.mark.parametrize(("size", "where"), _cut_cases())
def test_a_cut_value_names_the_field_it_ends_in(size: int, where: str) -> None:
    value = encoded(chunk())[:size]
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value) == (
        f"VideoChunk record of {size} bytes {where}; the value was cut off or is not this schema"
    )


def test_a_value_cut_inside_the_payload() -> None:
    value = encoded(chunk())
    cut = value[: value.index(PAYLOAD) + 5]
    with pytest.raises(ChunkWireError) as info:
        reader().read(cut)
    assert str(info.value) == (
        f"VideoChunk record of {len(cut)} bytes ends inside field 'payload' (needs "
        f"{len(PAYLOAD)} byte(s), 5 left); the value was cut off or is not this schema"
    )


def test_bytes_left_over() -> None:
    with pytest.raises(ChunkWireError) as info:
        reader().read(encoded(chunk()) + b"\x00\x00")
    assert str(info.value) == (
        "VideoChunk record has 2 byte(s) left over after its body; it was not written with "
        "the schema its header names"
    )


def _patched(field: str, raw: bytes) -> bytes:
    """The encoded chunk with ``field``'s bytes replaced by ``raw`` (fields before it kept)."""
    catalog: SchemaCatalog = default_catalog()
    current = catalog.current("VideoChunk")
    datum = chunk().to_avro()
    out = io.BytesIO()
    for item in current.schema["fields"]:
        name = item["name"]
        if name == field:
            out.write(raw)
            continue
        one = {"type": "record", "name": "One", "fields": [item]}
        fastavro.schemaless_writer(out, fastavro.parse_schema(one), {name: datum[name]})
    return b"\xc3\x01" + current.fingerprint + out.getvalue()


def test_patched_helper_reproduces_the_codec() -> None:
    varint_300 = b"\xd8\x04"  # zigzag(300) = 600
    assert _patched("seq", varint_300) == encoded(chunk())


def test_an_invalid_boolean_names_the_field() -> None:
    value = _patched("keyframe_start", b"\x02")
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value).startswith("VideoChunk field 'keyframe_start' at byte ")
    assert str(info.value).endswith(" is 0x02, not an Avro boolean (0x00 or 0x01)")


def test_invalid_utf8_in_the_session_id() -> None:
    value = _patched("session_id", b"\x04\xff\xfe")  # length 2, two invalid bytes
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value) == (
        "VideoChunk field 'session_id' is not valid UTF-8 (invalid start byte at byte 0)"
    )


def test_a_negative_length() -> None:
    value = _patched("session_id", b"\x03")  # zigzag 3 = -2
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value) == "VideoChunk field 'session_id' declares a negative length -2"


def test_byte_size_must_be_the_payload_length() -> None:
    value = _patched("byte_size", b"\x02")  # 1, payload has 16
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value) == (
        "VideoChunk of session s-ü1: chunk 300 part 1: byte_size 1 != payload length 16"
    )


def test_a_varint_longer_than_ten_bytes() -> None:
    value = _patched("seq", b"\xff" * 11)
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value) == "VideoChunk field 'seq': varint longer than 10 bytes"


def test_writer_layouts() -> None:
    current = default_catalog().current("VideoChunk").parsed
    fields = list(current["fields"])
    assert writer_layout(current) == (
        ("string", "session_id"),
        ("long", "seq"),
        ("double", "media_start_s"),
        ("double", "media_duration_s"),
        ("int", "part_index"),
        ("int", "part_count"),
        ("boolean", "keyframe_start"),
        ("long", "byte_size"),
        ("bytes", "payload"),
        ("timestamp-micros", "produced_at"),
    )
    extra = {**current, "fields": [*fields, {"name": "camera", "type": "string"}]}
    assert writer_layout(extra)[-1] == ("string", None)  # type: ignore[index]  # skipped
    union = {**current, "fields": [*fields, {"name": "note", "type": ["null", "string"]}]}
    assert writer_layout(union) is None
    no_payload = {**current, "fields": [f for f in fields if f["name"] != "payload"]}
    assert writer_layout(no_payload) is None
    seq_as_string = {
        **current,
        "fields": [{**f, "type": "string"} if f["name"] == "seq" else f for f in fields],
    }
    assert writer_layout(seq_as_string) is None


def test_a_newer_writer_with_an_extra_field_is_read_and_the_field_skipped() -> None:
    current = default_catalog().current("VideoChunk").parsed
    fields = list(current["fields"])
    newer = {
        "type": "record",
        "name": "VideoChunk",
        "fields": [*fields[:2], {"name": "camera", "type": "string"}, *fields[2:]],
    }
    datum = {**chunk().to_avro(), "camera": "cam-7"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(newer), datum)
    header = b"\x00\x00\x00\x00\x09"  # a Confluent header: registry schema id 9
    got = VideoChunkReader({header: newer}).read(header + body.getvalue())
    assert got is not None
    assert (got.seq, got.media_start_s, bytes(got.payload)) == (300, 6.25, PAYLOAD)


def test_a_timestamp_out_of_range() -> None:
    value = _patched("produced_at", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x01")  # 2**63 - 1
    with pytest.raises(ChunkWireError) as info:
        reader().read(value)
    assert str(info.value) == (
        "VideoChunk field 'produced_at' (9223372036854775807 µs) is out of range"
    )
