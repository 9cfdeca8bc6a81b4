"""Loading the kept .avsc files: layout rules, fingerprints, documentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.catalog import NAMESPACE, RECORD_TOPICS, SchemaCatalog
from schemas.exceptions import SchemaCatalogError, UnknownRecordError
from schemas.lint import doc_problems


def test_shipped_catalog(catalog: SchemaCatalog) -> None:
    assert catalog.names() == [
        "Cue",
        "DeadLetter",
        "Inter1Event",
        "SessionEnded",
        "SessionStarted",
        "UsageRecord",
        "VideoChunk",
    ]
    assert sorted(RECORD_TOPICS) == catalog.names()
    assert {n: catalog.current(n).version for n in catalog.names()} == {
        "Cue": 1,
        "DeadLetter": 1,
        "Inter1Event": 1,
        "SessionEnded": 1,
        "SessionStarted": 2,
        "UsageRecord": 1,
        "VideoChunk": 2,
    }
    for rv in catalog.all_versions():
        assert rv.schema["namespace"] == NAMESPACE
        assert catalog.by_fingerprint(rv.fingerprint) == rv
    assert len({rv.fingerprint for rv in catalog.all_versions()}) == 9
    assert catalog.name_of("ai.interhuman.pipeline.VideoChunk") == "VideoChunk"
    assert catalog.name_of("ai.interhuman.pipeline.inter1.SessionEnded") is None


def test_every_record_and_field_is_documented(catalog: SchemaCatalog) -> None:
    assert [p for rv in catalog.all_versions() for p in doc_problems(rv)] == []


def test_wall_clock_times_are_timestamp_micros(catalog: SchemaCatalog) -> None:
    for name in catalog.names():
        for fld in catalog.current(name).schema["fields"]:
            if fld["name"].endswith("_at") or fld["name"] == "timestamp":
                assert fld["type"] == {"type": "long", "logicalType": "timestamp-micros"}, fld


def test_doc_problems_names_nested_fields(schema_copy: Path) -> None:
    path = schema_copy / "Inter1Event" / "v1.avsc"
    schema = json.loads(path.read_text())
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    branch = next(b for b in payload["type"] if b["name"] == "CoverageDropped")
    del branch["fields"][0]["type"]["items"]["fields"][1]["doc"]
    path.write_text(json.dumps(schema))
    rv = SchemaCatalog.load(schema_copy).current("Inter1Event")
    assert doc_problems(rv) == ["Inter1Event v1: field payload.ranges.end has no doc"]


def test_version_gap_is_refused(schema_copy: Path) -> None:
    (schema_copy / "VideoChunk" / "v2.avsc").rename(schema_copy / "VideoChunk" / "v3.avsc")
    with pytest.raises(SchemaCatalogError) as info:
        SchemaCatalog.load(schema_copy)
    assert str(info.value) == (
        f"{schema_copy / 'VideoChunk'}: versions must be v1..vN without gaps; found v1, v3"
    )


def test_bad_file_name_is_refused(schema_copy: Path) -> None:
    (schema_copy / "VideoChunk" / "latest.avsc").write_text("{}")
    with pytest.raises(SchemaCatalogError) as info:
        SchemaCatalog.load(schema_copy)
    assert str(info.value) == (
        f"{schema_copy / 'VideoChunk' / 'latest.avsc'}: schema files must be named v<N>.avsc "
        "(v1.avsc, ...)"
    )


def test_record_name_must_match_directory(schema_copy: Path) -> None:
    (schema_copy / "VideoChunk").rename(schema_copy / "Chunk")
    with pytest.raises(SchemaCatalogError) as info:
        SchemaCatalog.load(schema_copy)
    assert str(info.value) == (
        f"{schema_copy / 'Chunk' / 'v1.avsc'}: record name 'VideoChunk' must match its "
        "directory 'Chunk'"
    )


def test_invalid_avro_is_refused(schema_copy: Path) -> None:
    path = schema_copy / "SessionEnded" / "v1.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][0]["type"] = "text"
    path.write_text(json.dumps(schema))
    with pytest.raises(SchemaCatalogError) as info:
        SchemaCatalog.load(schema_copy)
    assert str(info.value).startswith(f"{path}: invalid Avro schema: ")


def test_unreadable_json(schema_copy: Path) -> None:
    path = schema_copy / "SessionEnded" / "v1.avsc"
    path.write_text("{not json")
    with pytest.raises(SchemaCatalogError) as info:
        SchemaCatalog.load(schema_copy)
    assert str(info.value).startswith(f"{path}: cannot read schema: ")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SchemaCatalogError) as info:
        SchemaCatalog.load(tmp_path / "nope")
    assert str(info.value) == f"schema directory {tmp_path / 'nope'} does not exist"


def test_unknown_record(catalog: SchemaCatalog) -> None:
    with pytest.raises(UnknownRecordError):
        catalog.current("Nope")
