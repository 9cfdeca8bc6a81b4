"""Versioned ClickHouse DDL: numbered ``.sql`` files applied once, in order, and recorded.

Each file is ``NNNN_name.sql`` holding one or more statements separated by ``;`` at a line
end. Applied migrations are recorded in ``schema_migrations`` with a checksum; editing an
applied file is an error (write a new migration instead).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from runtime.logs import get_logger
from sinks.exceptions import MigrationError

__all__ = ["MIGRATIONS_DIR", "Migration", "applied_versions", "discover", "migrate"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""

_log = get_logger("sinks.migrations")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    checksum: str

    def statements(self) -> list[str]:
        """The file's statements, comments and blank lines removed."""
        text = "\n".join(
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("--")
        )
        return [
            stmt.strip() for stmt in re.split(r";\s*$", text, flags=re.MULTILINE) if stmt.strip()
        ]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``directory``, ordered by version; duplicate versions are an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} must be named NNNN_lower_snake.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"two migrations share version {version:04d}: "
                f"{found[version].path.name} and {path.name}"
            )
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, match["name"], path, checksum)
    return [found[v] for v in sorted(found)]


def applied_versions(client: Client) -> dict[int, str]:
    """Applied migration versions and their recorded checksums."""
    client.command(_LEDGER)
    result = client.query("SELECT version, checksum FROM schema_migrations FINAL ORDER BY version")
    return {int(row[0]): str(row[1]) for row in result.result_rows}


def migrate(client: Client, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations in order; returns the ones applied by this call."""
    applied = applied_versions(client)
    done: list[Migration] = []
    for migration in discover(directory):
        recorded = applied.get(migration.version)
        if recorded is not None:
            if recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.path.name} was edited after it was applied; "
                    "revert the edit and add a new migration instead"
                )
            continue
        for statement in migration.statements():
            try:
                client.command(statement)
            except ClickHouseError as exc:
                first = " ".join(str(exc).split())[:300]
                raise MigrationError(f"migration {migration.path.name} failed: {first}") from None
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        _log.info("migration_applied", version=migration.version, migration=migration.name)
        done.append(migration)
    return done
