"""Rules files: defaults load, errors name the rule and the field, the CLI exits 78."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.cues.exceptions import RulesError
from workers.cues.rules import DEFAULT_RULES_FILE, load_rules

_CLI = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()"]

_GOOD = """
[[rules]]
name = "ok"
kind = "engagement_duration"
min_duration_s = 5.0
message = "{state}"
"""


def test_the_shipped_defaults_cover_every_kind() -> None:
    rules = load_rules()
    assert rules.source == str(DEFAULT_RULES_FILE)
    assert [(r.name, r.kind) for r in rules.rules] == [
        ("hesitation-burst", "signal_count"),
        ("audience-disengaged", "engagement_duration"),
        ("low-energy", "quality_threshold"),
        ("stress-under-tension", "co_occurrence"),
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            'name = "burst"\nkind = "signal_count"\nsignal_types = ["stress"]\n'
            'min_count = 2\nwindow_s = 0\nmessage = "x"',
            "rule 'burst': field 'window_s': Input should be greater than 0",
        ),
        (
            'name = "burst"\nkind = "signal_count"\nsignal_types = ["stress"]\n'
            'min_count = 2\nwindow_s = 5\nhop_s = 6\nmessage = "x"',
            "rule 'burst': field 'hop_s': must not exceed window_s (windows would leave gaps)",
        ),
        (
            'name = "flat"\nkind = "quality_threshold"\ndimension = "volume"\nbelow = 3\n'
            'message = "x"',
            "rule 'flat': field 'dimension': Input should be 'quality_index', 'clarity', "
            "'authority', 'energy', 'rapport' or 'learning'",
        ),
        (
            'name = "gone"\nkind = "engagement_duration"\nmin_duration_s = 5\nmessage = "{oops}"',
            "rule 'gone': field 'message': unknown placeholder(s) ['oops']; available: "
            "['duration_s', 'media_end_s', 'media_start_s', 'rule', 'session_id', 'severity', "
            "'since_s', 'state']",
        ),
        (
            'name = "gone"\nkind = "engagement_duration"\nmin_duration_s = 5\n'
            'message = "x"\ncooldown = 3',
            "rule 'gone': field 'cooldown': Extra inputs are not permitted",
        ),
        ('kind = "nope"\nmessage = "x"', "rule #2: field 'kind': Input tag 'nope' found"),
    ],
)
def test_errors_name_the_rule_and_the_field(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(_GOOD + "\n[[rules]]\n" + body + "\n")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"rules file {path}: {problem}")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(_GOOD + "\n[[rules]]\n" + _GOOD.split("[[rules]]")[1])
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value) == f"rules file {path}: rule 'ok': field 'name': duplicate"


def test_cues_exits_78_with_one_line_naming_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[rules]]\nname = "burst"\nkind = "signal_count"\nsignal_types = ["stress"]\n'
        'min_count = 0\nwindow_s = 10\nmessage = "x"\n'
    )
    env = {**os.environ, "LOG_FORMAT": "json", "PIPELINE_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [*_CLI, "cues", "--rules", str(path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 78
    assert done.stderr.strip().splitlines() == [
        f"error: rules file {path}: rule 'burst': field 'min_count': "
        "Input should be greater than or equal to 1"
    ]


def test_cues_check_lists_the_rules_of_a_file_from_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(_GOOD)
    env = {**os.environ, "PIPELINE_CUES_RULES": str(path), "PIPELINE_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [*_CLI, "cues", "--check"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip

    assert (done.returncode, done.stdout) == (0, "ok: engagement_duration, info\n")
