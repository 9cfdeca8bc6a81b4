"""The one entry point: every subcommand has --help; errors exit with meaningful codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SUBCOMMANDS = [
    "cues",
    "demo",
    "migrate",
    "produce",
    "query",
    "reconcile",
    "report",
    "run",
    "schemas",
    "session-worker",
    "simulate",
    "sink",
    "stack",
    "topics",
]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inter1_pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_root_help_lists_every_subcommand() -> None:
    result = _run("--help")
    assert result.returncode == 0
    rows = result.stdout.split("Commands:")[1].splitlines()
    # a command starts its row two spaces in; a wrapped help line is indented further
    listed = [line.split()[0] for line in rows if line.startswith("  ") and line[2] != " "]
    assert listed == SUBCOMMANDS


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str) -> None:
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: python -m inter1_pipeline {name}")


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = _run("frobnicate")
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_query_against_bad_url_exits_unavailable_without_password(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CLICKHOUSE_URL": "http://analyst:hunter2@127.0.0.1:1/db",
        "LOG_FORMAT": "json",
    }
    result = _run("query", "SELECT 1", env=env)
    assert result.returncode == 69
    assert result.stderr.splitlines()[-1].startswith(
        "error: cannot reach ClickHouse at http://analyst:***@127.0.0.1:1/db: "
    )
    assert "hunter2" not in result.stderr + result.stdout


def test_query_prints_rows_and_rejects_bad_sql(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIPELINE_STATE_DIR": str(tmp_path)}
    ok = _run("query", "SELECT number AS n FROM system.numbers LIMIT 3", "--format", "tsv", env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "n\n0\n1\n2\n"
    bad = _run("query", "SELECT * FROM no_such_table", env=env)
    assert bad.returncode == 65
    assert "UNKNOWN_TABLE" in bad.stderr


def test_invalid_setting_fails_at_start_naming_the_variable(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "INTER1_API_VERSION": "v9"}
    result = _run("topics", "list", env=env)
    assert result.returncode == 78
    assert result.stderr.splitlines()[-1] == (
        "error: invalid setting(s): INTER1_API_VERSION: 'v9' is not one of 'v1', 'v2'"
    )


_LOADED = (
    "import sys; from inter1_pipeline.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "heavy = ('pydantic', 'structlog', 'av', 'aiokafka', 'httpx', 'fastavro', 'multiprocessing')\n"
    "print(' '.join(name for name in heavy if name in sys.modules))"
)


def _loaded(*args: str) -> list[str]:
    """The heavy packages a command has imported by the time it returns."""
    result = subprocess.run(
        [sys.executable, "-c", _LOADED, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1].split()


@pytest.mark.parametrize("args", [["--help"], ["produce", "--help"], ["produce", "x.mp4", "-h"]])
def test_help_screens_load_no_settings_logging_or_media(args: list[str]) -> None:
    assert _loaded(*args) == []


def test_dry_run_produce_loads_no_kafka_or_registry_client(tmp_path: Path) -> None:
    from producers.synthetic import MediaSpec, write_media

    clip = write_media(tmp_path / "clip.mp4", MediaSpec(duration_s=1))
    loaded = _loaded("produce", "--dry-run", "--no-progress", str(clip))
    assert loaded == ["structlog", "av", "fastavro"]


def test_produce_checks_only_the_settings_it_reads(tmp_path: Path) -> None:
    from producers.synthetic import MediaSpec, write_media

    clip = write_media(tmp_path / "clip.mp4", MediaSpec(duration_s=1))
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    args = ("produce", "--dry-run", "--no-progress", str(clip))

    # INTER1_* is the session worker's: a dry-run ingest does not read it.
    other = _run(*args, env={**base, "INTER1_API_VERSION": "v9"})
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines()[-1].startswith("1 source: 1 completed; 1 chunks, 1.0 media s")

    own = _run(*args, env={**base, "KAFKA_MAX_RECORD_BYTES": "lots"})
    assert own.returncode == 78
    assert own.stderr.splitlines()[-1] == (
        "error: invalid setting(s): KAFKA_MAX_RECORD_BYTES: expected an integer (got 'lots')"
    )
