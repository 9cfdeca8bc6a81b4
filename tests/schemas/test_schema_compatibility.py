"""Schema evolution: every kept version readable by the current one; incompatible edits fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inter1_pipeline.cli import main
from schemas.catalog import SchemaCatalog
from schemas.compatibility import Incompatibility, check_catalog, field_problems


def _edit(path: Path, change: Any) -> None:
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def _add_v3(schema_dir: Path, record: str, change: Any) -> None:
    v2 = schema_dir / record / "v2.avsc"
    (schema_dir / record / "v3.avsc").write_text(v2.read_text())
    _edit(schema_dir / record / "v3.avsc", change)


@pytest.mark.parametrize("level", ["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FULL", "NONE"])
def test_shipped_schemas_are_compatible(catalog: SchemaCatalog, level: str) -> None:
    assert check_catalog(catalog, level) == []


def test_history_is_real(catalog: SchemaCatalog) -> None:
    assert [rv.version for rv in catalog.versions("VideoChunk")] == [1, 2]
    assert [rv.version for rv in catalog.versions("SessionStarted")] == [1, 2]
    v1, v2 = catalog.versions("VideoChunk")
    added = [
        f for f in v2.schema["fields"] if f["name"] not in {g["name"] for g in v1.schema["fields"]}
    ]
    assert [(f["name"], f["type"], f["default"]) for f in added] == [
        ("part_index", "int", 0),
        ("part_count", "int", 1),
    ]


def test_new_field_without_default_fails(schema_copy: Path) -> None:
    _add_v3(
        schema_copy,
        "VideoChunk",
        lambda s: s["fields"].append({"name": "camera_id", "type": "string", "doc": "Camera."}),
    )
    problems = check_catalog(SchemaCatalog.load(schema_copy))
    assert problems == [
        Incompatibility(
            "VideoChunk",
            3,
            1,
            "BACKWARD",
            "camera_id",
            "is missing from the writer's schema and has no default; give it a default",
        ),
        Incompatibility(
            "VideoChunk",
            3,
            2,
            "BACKWARD",
            "camera_id",
            "is missing from the writer's schema and has no default; give it a default",
        ),
    ]
    assert str(problems[0]) == (
        "VideoChunk: v3 cannot read data written by v1 (BACKWARD): field camera_id: is missing "
        "from the writer's schema and has no default; give it a default"
    )


def test_changed_type_inside_a_payload_branch_is_named() -> None:
    writer = json.loads(
        (Path(__file__).parents[2] / "schemas/avsc/Inter1Event/v1.avsc").read_text()
    )
    reader = json.loads(json.dumps(writer))
    branch = next(b for b in _field(reader, "payload")["type"] if b["name"] == "SignalEnded")
    _field(branch, "end")["type"] = "string"
    assert field_problems(reader, writer) == [
        ("payload[SignalEnded].end", "reader type: string not compatible with writer type: double")
    ]


def test_removed_union_branch_is_named() -> None:
    writer = json.loads(
        (Path(__file__).parents[2] / "schemas/avsc/Inter1Event/v1.avsc").read_text()
    )
    reader = json.loads(json.dumps(writer))
    payload = _field(reader, "payload")
    payload["type"] = [b for b in payload["type"] if b["name"] != "FeedbackGenerated"]
    assert field_problems(reader, writer) == [
        (
            "payload[FeedbackGenerated]",
            "the writer's branch FeedbackGenerated has no matching branch in the reader's union",
        )
    ]


def test_forward_catches_a_removed_required_field(schema_copy: Path) -> None:
    def drop_keyframe(s: dict[str, Any]) -> None:
        s["fields"] = [f for f in s["fields"] if f["name"] != "keyframe_start"]

    _add_v3(schema_copy, "VideoChunk", drop_keyframe)
    catalog = SchemaCatalog.load(schema_copy)
    assert check_catalog(catalog, "BACKWARD") == []
    assert [str(p) for p in check_catalog(catalog, "FORWARD")] == [
        "VideoChunk: v1 cannot read data written by v3 (FORWARD): field keyframe_start: is "
        "missing from the writer's schema and has no default; give it a default",
        "VideoChunk: v2 cannot read data written by v3 (FORWARD): field keyframe_start: is "
        "missing from the writer's schema and has no default; give it a default",
    ]


def test_cli_check_passes(capsys: pytest.CaptureFixture[str], clean_settings: Any) -> None:
    assert main(["schemas", "check"]) is None
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "ok: Cue v1 only version",
        "ok: DeadLetter v1 only version",
        "ok: Inter1Event v1 only version",
        "ok: SessionEnded v1 only version",
        "ok: SessionStarted v2 reads v1",
        "ok: UsageRecord v1 only version",
        "ok: VideoChunk v2 reads v1",
        "7 records, 9 versions: compatible (BACKWARD)",
    ]


def test_cli_check_fails_on_incompatible_edit(
    schema_copy: Path, capsys: pytest.CaptureFixture[str], clean_settings: Any
) -> None:
    # an in-place edit of the current version: width changes from int to string
    _edit(
        schema_copy / "SessionStarted" / "v2.avsc",
        lambda s: _field(s, "width").update(type="string"),
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["schemas", "check", "--schema-dir", str(schema_copy)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "incompatible: SessionStarted: v2 cannot read data written by v1 (BACKWARD): field "
        "width: reader type: string not compatible with writer type: int",
        "error: 1 incompatible schema change(s) at BACKWARD; keep the old field's type, give "
        "new fields a default, or add a new record instead",
    ]


def test_cli_check_fails_on_missing_doc(
    schema_copy: Path, capsys: pytest.CaptureFixture[str], clean_settings: Any
) -> None:
    _edit(schema_copy / "UsageRecord" / "v1.avsc", lambda s: _field(s, "reason").pop("doc"))
    with pytest.raises(SystemExit) as exit_info:
        main(["schemas", "check", "--schema-dir", str(schema_copy)])
    assert exit_info.value.code == 78
    assert capsys.readouterr().err.splitlines() == [
        "undocumented: UsageRecord v1: field reason has no doc",
        f'error: 1 record(s) or field(s) without a doc in {schema_copy}; add a "doc" to each',
    ]


def test_cli_check_against_registry(
    registry_server: Any, capsys: pytest.CaptureFixture[str], clean_settings: pytest.MonkeyPatch
) -> None:
    clean_settings.setenv("SCHEMA_REGISTRY_URL", registry_server.url)
    v1 = json.loads((Path(__file__).parents[2] / "schemas/avsc/VideoChunk/v1.avsc").read_text())
    v1["fields"][1]["type"] = "string"  # someone registered seq as a string
    registry_server.dispatch(
        "POST",
        "/subjects/inter1.video-chunks-ai.interhuman.pipeline.VideoChunk/versions",
        json.dumps({"schema": json.dumps(v1)}).encode(),
        None,
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["schemas", "check"])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "registry: inter1.events-ai.interhuman.pipeline.Inter1Event not registered yet" in (
        captured.out.splitlines()
    )
    assert captured.err.splitlines() == [
        "incompatible: VideoChunk: v2 is not compatible with the latest version of registry "
        "subject inter1.video-chunks-ai.interhuman.pipeline.VideoChunk: "
        "{errorType:'TYPE_MISMATCH', description:'reader type: long not compatible with writer "
        "type: string', location:'/fields/1/type', direction:'BACKWARD'}",
        "error: 1 incompatible schema change(s) at BACKWARD; keep the old field's type, give "
        "new fields a default, or add a new record instead",
    ]


def test_cli_list(capsys: pytest.CaptureFixture[str], catalog: SchemaCatalog) -> None:
    main(["schemas", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["record", "versions", "current", "fingerprint", "topic"]
    fp = catalog.current("VideoChunk").fingerprint.hex()
    assert lines[-1].split() == ["VideoChunk", "v1,v2", "v2", fp, "chunks"]
    assert len(lines) == 8
