"""``inter1-pipeline demo``: the pipeline end to end on the embedded defaults."""

from __future__ import annotations

import asyncio
import os
import time

import click

__all__ = ["demo"]


@click.command()
@click.option("--keep-stack", is_flag=True, help="Leave the local broker running afterwards.")
def demo(keep_stack: bool) -> None:
    """Run the pipeline end to end: local Kafka, topics, embedded ClickHouse, every schema.

    Uses KAFKA_BOOTSTRAP_SERVERS and CLICKHOUSE_URL when set; otherwise starts the local
    broker (stopped again at the end) and the embedded ClickHouse under .stack/.
    """
    from inter1_pipeline.demo import run_demo
    from runtime.logs import configure_logging
    from runtime.settings import LogSettings, load

    if "LOG_LEVEL" not in os.environ:
        # The demo prints its own narrative; component logs only when something is wrong.
        configure_logging("WARNING", load(LogSettings).format)
    started = time.monotonic()
    report = asyncio.run(run_demo(click.echo, keep_stack=keep_stack))
    click.echo(
        f"demo: ok in {time.monotonic() - started:.1f}s: "
        f"{sum(report.published.values())} records published, {report.consumed} consumed, "
        f"{sum(report.rows_by_record.values())} rows in ClickHouse"
    )
