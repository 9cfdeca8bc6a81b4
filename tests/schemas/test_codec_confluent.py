"""The codec with the Confluent wire format against the in-test registry server."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from chunks.wire import VideoChunkReader
from runtime.settings import SchemaSettings, SecretStr
from schemas.catalog import RECORD_TOPICS, SchemaCatalog
from schemas.codec import Codec, Decoded, codec_from_settings, get_codec, subject
from schemas.examples import example_chunk, example_records
from schemas.exceptions import (
    IncompatibleSchemaError,
    RegistryNotFoundError,
    TopicRequiredError,
    TruncatedRecordError,
    UnknownRecordError,
    UnknownSchemaIdError,
)
from schemas.registry_client import RegistryClient

TOPICS = {
    "chunks": "inter1.video-chunks",
    "events": "inter1.events",
    "usage": "inter1.usage",
    "dead_letter": "inter1.dead-letter",
    "cues": "inter1.cues",
}


def _topic(name: str) -> str:
    return TOPICS[RECORD_TOPICS[name]]


@pytest.mark.parametrize(("name", "datum"), example_records(), ids=lambda v: str(v)[:40])
def test_round_trip_confluent(
    confluent_codec: Codec, catalog: SchemaCatalog, name: str, datum: dict[str, Any]
) -> None:
    data = confluent_codec.encode(name, datum, topic=_topic(name))
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert schema_id == 1
    body = io.BytesIO()
    fastavro.schemaless_writer(body, catalog.current(name).parsed, datum)
    assert data[5:] == body.getvalue()
    current = catalog.current(name)
    assert confluent_codec.decode(data) == Decoded(name, datum, current.version)


def test_subjects_follow_topic_record_name_strategy(
    confluent_codec: Codec, registry_server: Any
) -> None:
    for name, datum in example_records():
        confluent_codec.encode(name, datum, topic=_topic(name))
    assert sorted(registry_server.state.subjects) == [
        "inter1.cues-ai.interhuman.pipeline.Cue",
        "inter1.dead-letter-ai.interhuman.pipeline.DeadLetter",
        "inter1.events-ai.interhuman.pipeline.Inter1Event",
        "inter1.usage-ai.interhuman.pipeline.UsageRecord",
        "inter1.video-chunks-ai.interhuman.pipeline.SessionEnded",
        "inter1.video-chunks-ai.interhuman.pipeline.SessionStarted",
        "inter1.video-chunks-ai.interhuman.pipeline.VideoChunk",
    ]
    # one registration per subject, no request for the 13 further events or any decode
    assert len(registry_server.state.requests) == 7
    assert subject("t", "ai.x.Y") == "t-ai.x.Y"


def test_fresh_reader_fetches_each_id_once(
    confluent_codec: Codec, registry_server: Any, catalog: SchemaCatalog
) -> None:
    records = [
        confluent_codec.encode("VideoChunk", example_chunk(i, 64), topic="c") for i in range(5)
    ]
    with RegistryClient(registry_server.url) as other:
        reader = Codec(catalog, registry=other)
        before = len(registry_server.state.requests)
        decoded = [reader.decode(r) for r in records]
    assert [d.datum["seq"] for d in decoded] == [0, 1, 2, 3, 4]
    assert registry_server.state.requests[before:] == [("GET", "/schemas/ids/1")]


def test_reads_older_version_registered_by_another_writer(
    registry_server: Any, confluent_codec: Codec, catalog: SchemaCatalog
) -> None:
    v1 = catalog.versions("VideoChunk")[0]
    with RegistryClient(registry_server.url) as writer:
        schema_id = writer.register("c-ai.interhuman.pipeline.VideoChunk", v1.schema_json)
    chunk = example_chunk(3, 32)
    old = {k: v for k, v in chunk.items() if k not in ("part_index", "part_count")}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, v1.parsed, old)
    data = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    assert confluent_codec.decode(data) == Decoded("VideoChunk", chunk, 1)


def test_reads_single_object_records_too(confluent_codec: Codec, codec: Codec) -> None:
    name, datum = example_records()[2]
    assert confluent_codec.decode(codec.encode(name, datum)) == Decoded(name, datum, 1)


def test_unknown_schema_id(confluent_codec: Codec, registry_server: Any) -> None:
    with pytest.raises(UnknownSchemaIdError) as info:
        confluent_codec.decode(b"\x00\x00\x00\x00\x2a\x02", topic="inter1.events")
    assert str(info.value) == (
        f"schema id 42 on topic inter1.events is not in the registry at {registry_server.url}; "
        "the record was written against another registry or the schema was deleted"
    )
    assert info.value.retriable is False


def test_foreign_record_schema(confluent_codec: Codec, registry: RegistryClient) -> None:
    foreign = (
        '{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"long"}]}'
    )
    schema_id = registry.register("orders-shop.Order", foreign)
    with pytest.raises(UnknownRecordError) as info:
        confluent_codec.decode(b"\x00" + schema_id.to_bytes(4, "big") + b"\x02")
    assert str(info.value) == (
        "schema id 1 is record shop.Order, which this pipeline does not read; known records: "
        "Cue, DeadLetter, Inter1Event, SessionEnded, SessionStarted, UsageRecord, VideoChunk"
    )


def test_truncated_confluent_header(confluent_codec: Codec) -> None:
    with pytest.raises(TruncatedRecordError) as info:
        confluent_codec.decode(b"\x00\x00\x01")
    assert str(info.value) == (
        "record of 3 bytes ends inside the Confluent header (needs 5); the value was cut off"
    )


def test_topic_is_required(confluent_codec: Codec) -> None:
    with pytest.raises(TopicRequiredError) as info:
        confluent_codec.encode("VideoChunk", example_chunk(0, 8))
    assert str(info.value) == (
        "encoding VideoChunk in the Confluent wire format needs the topic (the registry "
        "subject is <topic>-ai.interhuman.pipeline.VideoChunk); pass topic=..."
    )


def test_lookup_only_mode_needs_registered_subject(
    registry: RegistryClient, catalog: SchemaCatalog
) -> None:
    strict = Codec(catalog, registry=registry, auto_register=False)
    with pytest.raises(RegistryNotFoundError):
        strict.encode("SessionEnded", example_records()[2][1], topic="c")
    registry.register(
        "c-ai.interhuman.pipeline.SessionEnded", catalog.current("SessionEnded").schema_json
    )
    assert (
        strict.encode("SessionEnded", example_records()[2][1], topic="c")[:5]
        == b"\x00\x00\x00\x00\x01"
    )


def test_prepare_registers_up_front(confluent_codec: Codec, registry_server: Any) -> None:
    confluent_codec.prepare({"VideoChunk": "c", "SessionEnded": "c"})
    assert len(registry_server.state.requests) == 2
    confluent_codec.encode("VideoChunk", example_chunk(0, 8), topic="c")
    assert len(registry_server.state.requests) == 2


def test_codec_from_settings(registry_server: Any, clean_settings: pytest.MonkeyPatch) -> None:
    assert codec_from_settings(SchemaSettings()).registry is None
    configured = codec_from_settings(SchemaSettings(url=SecretStr(registry_server.url)))
    assert configured.registry is not None
    assert configured.registry.url == registry_server.url
    assert registry_server.state.requests == []  # no I/O until first use

    clean_settings.setenv("SCHEMA_REGISTRY_URL", registry_server.url)
    name, datum = example_records()[2]
    data = get_codec().encode(name, datum, topic="inter1.video-chunks")
    assert data[:5] == b"\x00\x00\x00\x00\x01"
    assert get_codec().decode(data).datum == datum


def _register_newer(registry: RegistryClient, catalog: SchemaCatalog, change: Any) -> int:
    newer = json.loads(catalog.current("VideoChunk").schema_json)
    change(newer)
    registry.set_compatibility("c-ai.interhuman.pipeline.VideoChunk", "NONE")
    return registry.register("c-ai.interhuman.pipeline.VideoChunk", json.dumps(newer))


def test_reads_newer_compatible_writer_into_current_shape(
    confluent_codec: Codec, registry: RegistryClient, catalog: SchemaCatalog
) -> None:
    def add_camera(s: dict[str, Any]) -> None:
        s["fields"].append({"name": "camera", "type": "string", "default": "", "doc": "Camera."})

    schema_id = _register_newer(registry, catalog, add_camera)
    chunk = example_chunk(1, 16)
    writer = fastavro.parse_schema(json.loads(registry.schema_by_id(schema_id)))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, {**chunk, "camera": "cam-2"})
    data = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
    assert confluent_codec.decode(data) == Decoded("VideoChunk", chunk, None)


def test_newer_incompatible_writer(
    confluent_codec: Codec, registry: RegistryClient, catalog: SchemaCatalog
) -> None:
    def seq_as_string(s: dict[str, Any]) -> None:
        s["fields"][1]["type"] = "string"

    schema_id = _register_newer(registry, catalog, seq_as_string)
    writer = fastavro.parse_schema(json.loads(registry.schema_by_id(schema_id)))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, {**example_chunk(1, 16), "seq": "one"})
    with pytest.raises(IncompatibleSchemaError) as info:
        confluent_codec.decode(b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue())
    assert str(info.value).startswith("VideoChunk record was written with a registry schema ")
    assert str(info.value).endswith(
        "; run `inter1-pipeline schemas check` and deploy the newer schemas/avsc version"
    )


def test_known_writers_include_registry_ids_once_resolved(
    registry_server: Any, confluent_codec: Codec, catalog: SchemaCatalog
) -> None:
    data = confluent_codec.encode("VideoChunk", example_chunk(4, 16), topic="c")
    with RegistryClient(registry_server.url) as other:
        reader_codec = Codec(catalog, registry=other)
        kept = {b"\xc3\x01" + v.fingerprint for v in catalog.versions("VideoChunk")}
        assert set(reader_codec.known_writers("VideoChunk")) == kept  # no id resolved yet
        assert VideoChunkReader(reader_codec.known_writers("VideoChunk")).read(data) is None
        reader_codec.decode(data)
        writers = reader_codec.known_writers("VideoChunk")
    assert set(writers) == kept | {data[:5]}
    chunk = VideoChunkReader(writers).read(data)
    assert chunk is not None
    assert (chunk.seq, bytes(chunk.payload)) == (4, example_chunk(4, 16)["payload"])
