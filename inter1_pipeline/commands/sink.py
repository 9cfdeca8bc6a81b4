"""``inter1-pipeline sink``: consume events, usage, cues and session records into ClickHouse."""

from __future__ import annotations

import asyncio

import click

from runtime.settings import SinkSettings, load

__all__ = ["sink"]


@click.command()
@click.option("--no-migrate", is_flag=True, help="Do not apply pending migrations at start.")
@click.option("--batch-records", type=int, help="Override PIPELINE_SINK_BATCH_RECORDS.")
@click.option("--flush-interval", type=float, help="Override PIPELINE_SINK_FLUSH_INTERVAL_S.")
@click.option("--query-port", type=int, help="Override PIPELINE_SINK_QUERY_PORT.")
def sink(
    no_migrate: bool,
    batch_records: int | None,
    flush_interval: float | None,
    query_port: int | None,
) -> None:
    """Insert the pipeline's topics into CLICKHOUSE_URL exactly once (until SIGTERM/Ctrl-C).

    While it runs, `query`, `report` and `reconcile` reach an embedded store through its
    read-only endpoint on 127.0.0.1.
    """
    from sinks.sink_app import run_sink

    overrides = {
        key: value
        for key, value in (
            ("batch_records", batch_records),
            ("flush_interval_s", flush_interval),
            ("query_port", query_port),
        )
        if value is not None
    }
    settings = load(SinkSettings).replace(**overrides)
    asyncio.run(run_sink(settings=settings, apply_migrations=not no_migrate))
