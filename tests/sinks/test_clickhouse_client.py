"""The client factory: one URL setting, embedded chDB or HTTP, errors without passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import ExitCode
from runtime.settings import load
from sinks.clickhouse_client import clickhouse_url, embedded_url, make_client
from sinks.exceptions import ClickHouseConfigError, ClickHouseUnavailableError


@pytest.mark.clickhouse
def test_embedded_engine_round_trip(tmp_path: Path) -> None:
    client = make_client(embedded_url(tmp_path))
    try:
        client.command("CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
        client.insert("t", [[2, "b"], [1, "a"]], column_names=["id", "name"])
        rows = client.query("SELECT id, name FROM t ORDER BY id").result_rows
    finally:
        client.close()
    assert rows == [(1, "a"), (2, "b")]
    assert (tmp_path / "clickhouse").is_dir()


def test_default_url_is_embedded_under_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path / "state"))
    load.cache_clear()
    try:
        assert clickhouse_url() == f"chdb://{tmp_path}/state/clickhouse"
    finally:
        load.cache_clear()


def test_unreachable_server_error_names_url_without_password() -> None:
    with pytest.raises(ClickHouseUnavailableError) as info:
        make_client("http://analyst:hunter2@127.0.0.1:1/analytics", connect_timeout_s=2)
    message = str(info.value)
    assert message.startswith(
        "cannot reach ClickHouse at http://analyst:***@127.0.0.1:1/analytics: "
    )
    assert "hunter2" not in message
    assert "\n" not in message
    assert info.value.retriable is True
    assert info.value.exit_code == ExitCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "ftp://u:pw@host/db",
            "CLICKHOUSE_URL ftp://u:***@host/db has scheme 'ftp'; use chdb:///path for the "
            "embedded engine or http(s)://user:pass@host:8123/db for a server",
        ),
        (
            "chdb://relative/path",
            "CLICKHOUSE_URL chdb://relative/path: an embedded URL needs an absolute path "
            "(chdb:///abs/path) or chdb://memory",
        ),
        (
            "http://u:pw@host:notaport/db",
            "CLICKHOUSE_URL http://u:***@host:notaport/db is not a valid URL: "
            "Port could not be cast to integer value as 'notaport'",
        ),
        ("http:///db", "CLICKHOUSE_URL http:///db names no host"),
    ],
)
def test_bad_url_is_a_config_error(url: str, expected: str) -> None:
    with pytest.raises(ClickHouseConfigError) as info:
        make_client(url)
    assert str(info.value) == expected
    assert info.value.retriable is False
