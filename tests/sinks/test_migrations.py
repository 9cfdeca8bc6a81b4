"""Migrations: applied once, in order, recorded; edits to applied files are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse_client import embedded_url, make_client
from sinks.exceptions import MigrationError
from sinks.migrations import MIGRATIONS_DIR, applied_versions, discover, migrate

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    # chDB holds one engine per process: close it so the next test can open its own path.
    client = make_client(embedded_url(tmp_path))
    yield client
    client.close()


def _write(directory: Path, name: str, sql: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(sql, encoding="utf-8")
    return path


def test_project_migrations_apply_once(client: Client) -> None:
    first = migrate(client)
    applied = [(m.version, m.name) for m in first]
    assert applied == [
        (1, "record_log"),
        (2, "analytics"),
        (3, "chunks"),
        (4, "signal_intervals_across_connections"),
        (5, "signal_intervals_first_window"),
        (6, "event_landing"),
        (7, "event_rows_flat"),
    ]
    assert [m.version for m in first] == [m.version for m in discover(MIGRATIONS_DIR)]
    assert migrate(client) == []

    # 0007 replaced the view 0006 created that fills event_rows; its statements run again
    # (a migration interrupted before it was recorded) change nothing
    def landing_views() -> list[tuple[str, str]]:
        return [
            (str(name), str(query))
            for name, query in client.query(
                "SELECT name, as_select FROM system.tables WHERE database = currentDatabase() "
                "AND engine = 'MaterializedView' AND name LIKE 'event_rows_from%' ORDER BY name"
            ).result_rows
        ]

    (view,) = landing_views()
    assert view[0] == "event_rows_from_landing_flat"
    assert "JSONExtractFloat(j, 'EngagementUpdated__start'), 0) AS start_s" in view[1]
    for statement in discover(MIGRATIONS_DIR)[6].statements():
        client.command(statement)
    assert landing_views() == [view]
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert {"schema_migrations", "record_log", "events", "usage", "session_summaries"} <= tables


def test_order_multiple_statements_and_ledger(client: Client, tmp_path: Path) -> None:
    d = tmp_path / "m"
    _write(d, "0002_add_col.sql", "ALTER TABLE a ADD COLUMN y UInt8 DEFAULT 7;\n")
    _write(
        d,
        "0001_create.sql",
        "-- two statements\nCREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
        "INSERT INTO a (x) VALUES (1);\n",
    )
    applied = migrate(client, d)
    assert [(m.version, m.name) for m in applied] == [(1, "create"), (2, "add_col")]
    assert client.query("SELECT x, y FROM a").result_rows == [(1, 7)]
    assert sorted(applied_versions(client)) == [1, 2]


def test_edited_applied_migration_is_refused(client: Client, tmp_path: Path) -> None:
    d = tmp_path / "m"
    path = _write(d, "0001_create.sql", "CREATE TABLE b (x UInt8) ENGINE = MergeTree ORDER BY x;\n")
    migrate(client, d)
    path.write_text("CREATE TABLE b (x UInt16) ENGINE = MergeTree ORDER BY x;\n", encoding="utf-8")
    with pytest.raises(MigrationError) as info:
        migrate(client, d)
    assert str(info.value) == (
        "migration 0001_create.sql was edited after it was applied; "
        "revert the edit and add a new migration instead"
    )


def test_failing_statement_names_the_file_and_is_not_recorded(
    client: Client, tmp_path: Path
) -> None:
    d = tmp_path / "m"
    _write(d, "0001_bad.sql", "CREATE TABLE c (x NoSuchType) ENGINE = MergeTree ORDER BY x;\n")
    with pytest.raises(MigrationError, match=r"^migration 0001_bad.sql failed: .*NoSuchType"):
        migrate(client, d)
    assert applied_versions(client) == {}


def test_bad_file_names_are_rejected(tmp_path: Path) -> None:
    d = tmp_path / "m"
    _write(d, "1_create.sql", "SELECT 1;\n")
    with pytest.raises(MigrationError) as info:
        discover(d)
    assert str(info.value) == "migration file 1_create.sql must be named NNNN_lower_snake.sql"
