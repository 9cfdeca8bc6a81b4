"""The cluster variant of the migrations: ``ON CLUSTER``, ``Replicated*`` engines, ``Distributed``.

Generated from the same migration files ``migrate`` applies (``sinks/migrations``), so
single-node and cluster schemas cannot drift: every ``CREATE TABLE name`` becomes

* ``name_local ON CLUSTER '{cluster}'`` with the ``Replicated`` form of its engine
  (Keeper path ``/clickhouse/tables/{shard}/{database}/name_local``, replica ``{replica}``)
  and ``replicated_deduplication_window`` in place of the single-node window, and
* ``name ON CLUSTER '{cluster}' AS name_local`` with ``ENGINE = Distributed``, sharded by
  session (``cityHash64(session_id)``) where the table has one, so a session's rows, and
  the ReplacingMergeTree keys that deduplicate them, live on one shard and ``FINAL`` holds;
  other tables are sharded by their first ORDER BY column.

Views (``CREATE VIEW IF NOT EXISTS`` and, for a later migration that redefines one,
``CREATE OR REPLACE VIEW``) get ``ON CLUSTER`` and read the ``Distributed`` tables by their
plain names. A ``Null`` table (``event_landing``, it stores nothing) is created on every
node as it is, and each materialized view on it ``ON CLUSTER``, writing to the
``Distributed`` table of its target (rows reach the shard of their session). A later
migration that replaces such a view (``DROP TABLE IF EXISTS name``) drops it ``ON
CLUSTER``; only views are ever dropped this way (the tables hold the data).
The output is committed as ``deploy/clickhouse/cluster.sql``; a test regenerates it and
compares. It is not applied here (no cluster locally): run it with ``clickhouse-client
--multiquery`` against one node of the cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

from sinks.migrations import MIGRATIONS_DIR, discover

__all__ = ["CLUSTER_DDL_FILE", "cluster_ddl", "cluster_statements"]

CLUSTER_DDL_FILE = Path(__file__).resolve().parent.parent / "deploy" / "clickhouse" / "cluster.sql"
_ON = "ON CLUSTER '{cluster}'"
_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*\n", re.MULTILINE)
_VIEW = re.compile(
    r"^(?P<create>CREATE VIEW IF NOT EXISTS|CREATE OR REPLACE VIEW) (?P<name>\w+) AS", re.MULTILINE
)
_MATERIALIZED = re.compile(
    r"^CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+) (?P<to>TO \w+ AS)", re.MULTILINE
)
_DROP = re.compile(r"^DROP TABLE IF EXISTS (?P<name>\w+)$")
_NULL_ENGINE = re.compile(r"^ENGINE = Null$", re.MULTILINE)
_ENGINE = re.compile(
    r"^ENGINE = (?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?\s*$", re.MULTILINE
)
_ORDER = re.compile(r"^ORDER BY \(?(?P<first>\w+)", re.MULTILINE)


def _table(statement: str, name: str) -> list[str]:
    local = f"{name}_local"
    engine = _ENGINE.search(statement)
    if engine is None:
        raise ValueError(f"table {name}: no MergeTree engine line to replicate")
    args = [f"'/clickhouse/tables/{{shard}}/{{database}}/{local}'", "'{replica}'"]
    if engine["args"]:
        args.append(engine["args"])
    replicated = f"ENGINE = Replicated{engine['engine']}({', '.join(args)})"
    body = statement[: engine.start()] + replicated + statement[engine.end() :]
    body = _TABLE.sub(f"CREATE TABLE IF NOT EXISTS {local} {_ON}\n", body, count=1)
    body = body.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
    if re.search(r"^\s+session_id String", statement, re.MULTILINE):
        key = "cityHash64(session_id)"
    else:
        order = _ORDER.search(statement)
        if order is None:
            raise ValueError(f"table {name}: no ORDER BY to shard by")
        key = f"cityHash64({order['first']})"
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {name} {_ON} AS {local}\n"
        f"ENGINE = Distributed('{{cluster}}', currentDatabase(), {local}, {key})"
    )
    return [body, distributed]


def cluster_statements(directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Every migration statement in its cluster form, in migration order."""
    out: list[str] = []
    for migration in discover(directory):
        for statement in migration.statements():
            table = _TABLE.match(statement)
            view = _VIEW.match(statement)
            materialized = _MATERIALIZED.match(statement)
            drop = _DROP.match(statement)
            if table is not None and _NULL_ENGINE.search(statement):
                out.append(
                    _TABLE.sub(
                        f"CREATE TABLE IF NOT EXISTS {table['name']} {_ON}\n", statement, count=1
                    )
                )
            elif materialized is not None:
                out.append(
                    _MATERIALIZED.sub(
                        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {materialized['name']} {_ON} "
                        f"{materialized['to']}",
                        statement,
                        count=1,
                    )
                )
            elif drop is not None:
                out.append(f"DROP TABLE IF EXISTS {drop['name']} {_ON}")
            elif table is not None:
                out.extend(_table(statement, table["name"]))
            elif view is not None:
                out.append(
                    _VIEW.sub(f"{view['create']} {view['name']} {_ON} AS", statement, count=1)
                )
            else:
                raise ValueError(
                    f"{migration.path.name}: no cluster form for statement {statement[:60]!r}"
                )
    return out


def cluster_ddl(directory: Path = MIGRATIONS_DIR) -> str:
    """The whole cluster DDL file text."""
    header = (
        "-- GENERATED by `inter1-pipeline migrate --cluster-ddl` from sinks/migrations/*.sql:\n"
        "-- do not edit. Apply on a ClickHouse cluster (macros {cluster}, {shard}, {replica}):\n"
        "--   clickhouse-client --multiquery < deploy/clickhouse/cluster.sql\n"
    )
    return header + "".join(f"\n{statement};\n" for statement in cluster_statements(directory))
