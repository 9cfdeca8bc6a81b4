"""The README's configuration reference is generated from the settings classes and kept fresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import settings_reference as ref
from runtime.settings import SessionWorkerSettings, SinkSettings


def _readme(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "README.md"
    path.write_text(
        f"# title\n\nbefore\n{ref.BEGIN_MARKER}\n{body}{ref.END_MARKER}\nafter\n", encoding="utf-8"
    )
    return path


def test_readme_reference_is_up_to_date() -> None:
    assert ref.check_readme(), (
        "README.md's configuration reference does not match runtime/settings.py: "
        f"run `{ref.FIX_COMMAND}`"
    )


def test_every_field_of_every_settings_class_has_one_documented_row() -> None:
    docs = ref.setting_docs()
    fields = sum(len(kind.__struct_fields__) for kind in ref.settings_classes())
    assert len(docs) == fields
    assert len({doc.env for doc in docs}) == fields
    undocumented = [doc.env for doc in docs if not doc.meaning]
    assert undocumented == [], "give these settings a docstring in runtime/settings.py"
    text = ref.render()
    for doc in docs:
        assert text.count(f"| `{doc.env}` |") == 1, doc.env


def test_rows_carry_the_defaults_values_and_meanings_of_the_code() -> None:
    rows = {doc.env: doc for doc in ref.setting_docs()}
    assert rows["PIPELINE_WORKER_HTTP_PORT"] == ref.SettingDoc(
        group="SessionWorkerSettings",
        env="PIPELINE_WORKER_HTTP_PORT",
        default=f"`{SessionWorkerSettings().http_port}`",
        values="integer ≥ 0, ≤ 65535",
        meaning="Port of `/metrics`, `/healthz` and `/readyz` (0: a free port).".replace("`", "``"),
    )
    assert rows["KAFKA_SECURITY_PROTOCOL"].values == (
        "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`"
    )
    assert rows["KAFKA_SASL_PASSWORD"].values == "secret (or unset)"
    assert rows["KAFKA_SASL_PASSWORD"].default == "unset"
    assert rows["PIPELINE_SINK_SESSION_TIMEOUT_S"].values == "number ≥ 6.0"
    assert rows["PIPELINE_SINK_GROUP_ID"].default == f"`{SinkSettings().group_id}`"
    assert rows["PIPELINE_SINK_GROUP_ID"].values == "text not empty"
    assert rows["CLICKHOUSE_URL"].default == "empty"
    assert rows["PIPELINE_STATE_DIR"].default == "`.stack`"
    assert rows["LOG_LEVEL"].meaning == ref.NOTES["LOG_LEVEL"]


def test_notes_only_fill_in_for_fields_without_a_docstring() -> None:
    documented = {
        kind.env_name(name) for kind in ref.settings_classes() for name in ref._attribute_docs(kind)
    }
    every = {doc.env for doc in ref.setting_docs()}
    assert sorted(set(ref.NOTES) - every) == [], "notes for settings that do not exist"
    assert sorted(set(ref.NOTES) & documented) == [], "the docstring wins: drop the note"


def test_write_replaces_only_the_block_between_the_markers(tmp_path: Path) -> None:
    path = _readme(tmp_path, "| stale | table |\n")
    assert ref.check_readme(path) is False
    assert ref.main(["--check", "--readme", str(path)]) == 1
    assert ref.update_readme(path) is True
    text = path.read_text(encoding="utf-8")
    assert text == (
        f"# title\n\nbefore\n{ref.BEGIN_MARKER}\n{ref.render()}{ref.END_MARKER}\nafter\n"
    )
    assert ref.update_readme(path) is False
    assert ref.main(["--check", "--readme", str(path)]) == 0


def test_stale_check_prints_the_command_that_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _readme(tmp_path, "")
    assert ref.main(["--check", "--readme", str(path)]) == 1
    assert capsys.readouterr().out == (
        f"{path}: the configuration reference is stale; run `{ref.FIX_COMMAND}`\n"
    )


def test_a_readme_without_markers_is_an_error_that_says_what_to_add(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "README.md"
    path.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no configuration reference markers: add a line"):
        ref.update_readme(path)
    assert ref.main(["--write", "--readme", str(path)]) == 65
    assert "settings-reference:begin" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == "# no markers\n"
