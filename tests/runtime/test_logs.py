"""Structured logs: JSON lines with bound context, secrets masked."""

from __future__ import annotations

import json

import pytest

from runtime.logs import configure_logging, get_logger


def test_json_log_line_has_context_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    log = get_logger("workers.session", session_id="s-1", topic="t", partition=3, offset=42)
    log.info("connected", url="http://u:pw@h:8123/db", api_key="ih_secret", note="Bearer tok.123")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "connected"
    assert record["component"] == "workers.session"
    assert (record["session_id"], record["topic"], record["partition"], record["offset"]) == (
        "s-1",
        "t",
        3,
        42,
    )
    assert record["url"] == "http://u:***@h:8123/db"
    assert record["api_key"] == "***"
    assert record["note"] == "Bearer ***"
    assert "ih_secret" not in line
    assert "pw@" not in line


def test_level_filters_debug(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING", "json")
    log = get_logger("x")
    log.info("hidden")
    log.warning("shown")
    lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()]
    assert [x["event"] for x in lines] == ["shown"]
