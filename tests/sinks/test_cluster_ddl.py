"""The cluster DDL is generated from the migrations and committed as generated."""

from __future__ import annotations

import re

from sinks.cluster_ddl import CLUSTER_DDL_FILE, cluster_ddl, cluster_statements
from sinks.migrations import discover


def test_committed_cluster_ddl_is_current() -> None:
    assert CLUSTER_DDL_FILE.read_text(encoding="utf-8") == cluster_ddl(), (
        "deploy/clickhouse/cluster.sql is stale: regenerate it with "
        "`inter1-pipeline migrate --cluster-ddl > deploy/clickhouse/cluster.sql`"
    )


def test_every_table_is_replicated_and_distributed_every_view_on_cluster() -> None:
    single = [s for m in discover() for s in m.statements()]
    tables = [re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s) for s in single]
    null_tables = [m[1] for m, s in zip(tables, single, strict=True) if m and "ENGINE = Null" in s]
    table_names = [m[1] for m in tables if m and m[1] not in null_tables]
    materialized = [
        (m[1], m[2])
        for s in single
        if (m := re.match(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS", s))
    ]
    views = [m[1] for s in single if (m := re.match(r"CREATE VIEW IF NOT EXISTS (\w+)", s))]
    replaced = [m[1] for s in single if (m := re.match(r"CREATE OR REPLACE VIEW (\w+)", s))]
    statements = cluster_statements()
    dropped = [m[1] for s in single if (m := re.match(r"DROP TABLE IF EXISTS (\w+)$", s))]
    assert len(statements) == (
        2 * len(table_names)
        + len(null_tables)
        + len(materialized)
        + len(views)
        + len(replaced)
        + len(dropped)
    )
    # migration 0007 replaces the view that fills event_rows, on every node
    assert dropped == ["event_rows_from_landing"]
    assert "DROP TABLE IF EXISTS event_rows_from_landing ON CLUSTER '{cluster}'" in statements
    # migration 0006: the Null landing tables on every node, the views writing to the
    # Distributed tables of their targets
    assert null_tables == ["event_landing", "event_rows"]
    assert materialized == [
        (f"{t}_from_landing", t)
        for t in (
            "event_rows",
            "events",
            "signal_events",
            "engagement_events",
            "quality_overall",
            "quality_timeline",
            "coverage",
        )
    ] + [("event_rows_from_landing_flat", "event_rows")]
    landing = next(
        s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS event_landing")
    )
    assert landing.startswith("CREATE TABLE IF NOT EXISTS event_landing ON CLUSTER '{cluster}'\n")
    assert "ENGINE = Null" in landing
    assert "Replicated" not in landing
    for name, target in materialized:
        assert any(
            s.startswith(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} ON CLUSTER '{{cluster}}' "
                f"TO {target} AS"
            )
            for s in statements
        )
    # redefined by 0003, 0004, 0005
    assert replaced == ["session_summary_live", "signal_intervals", "signal_intervals"]
    redefined = [
        s
        for s in statements
        if s.startswith("CREATE OR REPLACE VIEW signal_intervals ON CLUSTER '{cluster}' AS")
    ]
    # in migration order, so the cluster ends with 0005's definition
    assert ["FROM quality_timeline" in s for s in redefined] == [False, True]
    assert len(table_names) == 15
    assert views == [
        "sessions",
        "signal_intervals",
        "engagement_timeline",
        "quality_timeline_latest",
        "billing_daily",
        "session_summary_live",
        "chunk_latency",
    ]
    for name in table_names:
        local = next(
            s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {name}_local ")
        )
        assert "ON CLUSTER '{cluster}'" in local
        assert re.search(
            rf"ENGINE = Replicated\w*MergeTree\('/clickhouse/tables/{{shard}}/{{database}}/"
            rf"{name}_local', '{{replica}}'",
            local,
        ), local
        assert "non_replicated_deduplication_window" not in local
        distributed = next(
            s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS {name} ")
        )
        assert distributed.startswith(
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER '{{cluster}}' AS {name}_local\n"
            f"ENGINE = Distributed('{{cluster}}', currentDatabase(), {name}_local, cityHash64("
        )
    events = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS events "))
    assert events.endswith("cityHash64(session_id))")
    summaries = next(s for s in statements if "session_summaries_local" in s)
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/" in summaries
    assert "session_summaries_local', '{replica}', version)" in summaries
    for view in views:
        assert any(
            s.startswith(f"CREATE VIEW IF NOT EXISTS {view} ON CLUSTER '{{cluster}}' AS")
            for s in statements
        )
    assert (
        sum(
            s.startswith("CREATE OR REPLACE VIEW session_summary_live ON CLUSTER '{cluster}' AS")
            for s in statements
        )
        == 1
    )
