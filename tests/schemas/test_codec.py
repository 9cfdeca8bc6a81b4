"""The codec with the default single-object framing: round trips, evolution, typed errors."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from schemas import codec as codec_module
from schemas.catalog import SchemaCatalog
from schemas.codec import Codec, Decoded
from schemas.examples import example_chunk, example_records
from schemas.exceptions import (
    CodecError,
    CorruptRecordError,
    SchemaValidationError,
    TruncatedRecordError,
    UnknownFingerprintError,
    UnknownRecordError,
    WrongMagicError,
)
from schemas.inter1_events import PAYLOAD_BRANCHES, UNKNOWN_EVENT


def _raw(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, datum)
    return out.getvalue()


def test_examples_cover_every_record_and_payload_branch(catalog: SchemaCatalog) -> None:
    records = example_records()
    assert sorted({name for name, _ in records}) == catalog.names()
    branches = [d["payload"][0] for name, d in records if name == "Inter1Event"]
    assert sorted(branches) == sorted([*PAYLOAD_BRANCHES.values(), UNKNOWN_EVENT])


@pytest.mark.parametrize(("name", "datum"), example_records(), ids=lambda v: str(v)[:40])
def test_round_trip_single_object(
    codec: Codec, catalog: SchemaCatalog, name: str, datum: dict[str, Any]
) -> None:
    current = catalog.current(name)
    data = codec.encode(name, datum)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == current.fingerprint
    assert data[10:] == _raw(current.parsed, datum)
    assert codec.decode(data) == Decoded(name, datum, current.version)


def test_fingerprint_is_the_spec_crc64_little_endian() -> None:
    # Avro spec test vector: parsingFingerprint64("null") == 7195948357588979594.
    from schemas.catalog import fingerprint_of

    assert fingerprint_of("null") == (7195948357588979594).to_bytes(8, "little")  # type: ignore[arg-type]


def test_decodes_video_chunk_v1_into_current_shape(codec: Codec, catalog: SchemaCatalog) -> None:
    v1 = catalog.versions("VideoChunk")[0]
    chunk = example_chunk(seq=7, payload_size=256)
    old = {k: v for k, v in chunk.items() if k not in ("part_index", "part_count")}
    data = b"\xc3\x01" + v1.fingerprint + _raw(v1.parsed, old)

    decoded = codec.decode(data)

    assert decoded == Decoded("VideoChunk", {**old, "part_index": 0, "part_count": 1}, 1)
    assert list(decoded.datum) == [
        f["name"] for f in catalog.current("VideoChunk").schema["fields"]
    ]


def test_decodes_session_started_v1_with_default_labels(
    codec: Codec, catalog: SchemaCatalog
) -> None:
    v1 = catalog.versions("SessionStarted")[0]
    started = dict(example_records()[0][1])
    del started["labels"]
    data = b"\xc3\x01" + v1.fingerprint + _raw(v1.parsed, started)

    assert codec.decode(data) == Decoded("SessionStarted", {**started, "labels": {}}, 1)


def test_unknown_event_round_trips(codec: Codec) -> None:
    raw = (
        '{"type":"posture.changed","timestamp":"2026-11-24T09:31:00Z",'
        '"correlation_id":"c9","data":{"x":1}}'
    )
    event = {
        "event_id": "e-1",
        "session_id": "s-1",
        "api_version": "v2",
        "event_type": "posture.changed",
        "timestamp": datetime(2026, 11, 24, 9, 31, tzinfo=UTC),
        "correlation_id": "c9",
        "incarnation": 2,
        "event_seq": 40,
        "media_offset_s": 120.0,
        "chunk_seq": 61,
        "first_chunk_seq": 60,
        "received_at": datetime(2026, 11, 24, 9, 31, 0, 5000, tzinfo=UTC),
        "tenant": None,
        "app": None,
        "payload": (UNKNOWN_EVENT, {"type": "posture.changed", "raw_json": raw}),
    }
    assert codec.decode(codec.encode("Inter1Event", event)).datum == event


def test_unknown_fingerprint(codec: Codec) -> None:
    data = b"\xc3\x01" + bytes.fromhex("0011223344556677") + b"\x00"
    with pytest.raises(UnknownFingerprintError) as info:
        codec.decode(data, topic="inter1.events")
    assert str(info.value) == (
        "record on topic inter1.events was written with schema fingerprint 0011223344556677, "
        "which no kept schema version has; the writer uses a newer or foreign schema: deploy "
        "the schemas/avsc version it was written with"
    )
    assert info.value.retriable is False


def test_truncated_header(codec: Codec) -> None:
    with pytest.raises(TruncatedRecordError) as info:
        codec.decode(b"\xc3\x01\x01\x02\x03")
    assert str(info.value) == (
        "record of 5 bytes ends inside the single-object header (needs 10); the value was cut off"
    )


def test_truncated_body(codec: Codec) -> None:
    data = codec.encode("SessionEnded", example_records()[2][1])
    with pytest.raises(TruncatedRecordError) as info:
        codec.decode(data[:-3])
    assert str(info.value) == (
        f"SessionEnded record of {len(data) - 3} bytes ends before its body is complete; the "
        "value was cut off or is not Avro"
    )


def test_empty_value(codec: Codec) -> None:
    with pytest.raises(TruncatedRecordError) as info:
        codec.decode(b"")
    assert str(info.value) == (
        "empty record value: expected an Avro single-object header (C3 01 + 8-byte "
        "fingerprint); check that the producer wrote a value"
    )


def test_wrong_magic(codec: Codec) -> None:
    with pytest.raises(WrongMagicError) as info:
        codec.decode(b'{"type": "json"}')
    assert str(info.value) == (
        "record starts with 7B 22, not an Avro single-object header (C3 01) or the Confluent "
        "magic byte (00); it was not written by this codec, route it to the dead-letter topic"
    )


def test_confluent_record_without_registry(codec: Codec) -> None:
    with pytest.raises(WrongMagicError) as info:
        codec.decode(b"\x00\x00\x00\x00\x07\x02")
    assert str(info.value) == (
        "record uses the Confluent wire format (magic byte 00 + schema id) but no schema "
        "registry is configured; set SCHEMA_REGISTRY_URL to read it"
    )


def test_trailing_bytes(codec: Codec) -> None:
    data = codec.encode("SessionEnded", example_records()[2][1]) + b"\x00\x00"
    with pytest.raises(CorruptRecordError) as info:
        codec.decode(data)
    assert str(info.value) == (
        "SessionEnded record has 2 byte(s) left over after its body; it was not written with "
        "the schema its header names"
    )


def test_datum_with_wrong_type_names_the_field(codec: Codec) -> None:
    chunk = dict(example_chunk(payload_size=16), seq="seven")
    with pytest.raises(SchemaValidationError) as info:
        codec.encode("VideoChunk", chunk)
    assert info.value.field == "seq"
    assert str(info.value) == (
        "VideoChunk field 'seq' does not fit the schema: got 'seven' (str), expected long; "
        "fix the producer of this record"
    )


def test_datum_missing_field_names_the_field(codec: Codec) -> None:
    chunk = example_chunk(payload_size=16)
    del chunk["payload"]
    with pytest.raises(SchemaValidationError) as info:
        codec.encode("VideoChunk", chunk)
    assert str(info.value) == (
        "VideoChunk field 'payload' does not fit the schema: got None (NoneType), expected "
        "bytes; fix the producer of this record"
    )


def test_unknown_record_name(codec: Codec) -> None:
    with pytest.raises(UnknownRecordError) as info:
        codec.encode("Chunk", {})
    assert str(info.value) == (
        "no record schema named 'Chunk'; known records: Cue, DeadLetter, Inter1Event, "
        "SessionEnded, SessionStarted, UsageRecord, VideoChunk"
    )


def test_every_codec_error_is_a_non_retriable_data_error() -> None:
    for cls in (UnknownFingerprintError, TruncatedRecordError, WrongMagicError, CorruptRecordError):
        assert issubclass(cls, CodecError)
        assert cls.retriable is False
        assert cls.exit_code == 65


def test_module_level_functions_use_single_object_without_registry(
    clean_settings: pytest.MonkeyPatch,
) -> None:
    name, datum = example_records()[2]
    data = codec_module.encode(name, datum)
    assert data[:2] == b"\xc3\x01"
    assert codec_module.decode(data) == Decoded(name, datum, 1)
    assert codec_module.get_codec().registry is None


def test_unknown_union_branch_is_reported(codec: Codec) -> None:
    event = dict(example_records()[-1][1], payload=("ai.interhuman.pipeline.inter1.Nope", {}))
    with pytest.raises(SchemaValidationError) as info:
        codec.encode("Inter1Event", event)
    assert info.value.field == "payload"
    assert str(info.value) == (
        "Inter1Event field 'payload' does not fit the schema: got "
        "('ai.interhuman.pipeline.inter1.Nope', {}) (tuple), expected one of the union's "
        "branches (a record branch as a (fullname, dict) tuple); fix the producer of this record"
    )


def test_corrupt_body(codec: Codec, catalog: SchemaCatalog) -> None:
    header = b"\xc3\x01" + catalog.current("SessionEnded").fingerprint
    with pytest.raises(CorruptRecordError) as info:
        codec.decode(header + b"\x04\xff\xfeab" + bytes(30))
    assert str(info.value) == (
        "SessionEnded record body does not match its writer schema (UnicodeDecodeError: "
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte); route it to "
        "the dead-letter topic"
    )
