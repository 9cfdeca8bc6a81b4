"""``inter1-pipeline demo``: the pipeline end to end on the embedded defaults."""

from __future__ import annotations

import asyncio
import os
import time

import click

__all__ = ["demo"]


@click.command()
@click.option("--keep-stack", is_flag=True, help="Leave the local broker running afterwards.")
@click.option(
    "--live/--no-live",
    default=True,
    show_default=True,
    help="Also produce a generated clip and analyse its chunks over Inter-1.",
)
def demo(keep_stack: bool, live: bool) -> None:
    """Run the pipeline end to end: local Kafka, topics, embedded ClickHouse, every schema,
    then a generated clip through the producer, analysed by Inter-1 (the local simulator
    unless INTER1_API_KEY and INTER1_BASE_URL are set).

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
    report = asyncio.run(run_demo(click.echo, keep_stack=keep_stack, live=live))
    click.echo(
        f"demo: ok in {time.monotonic() - started:.1f}s: "
        f"{sum(report.published.values())} records published, {report.consumed} consumed, "
        f"{sum(report.rows_by_record.values())} rows in ClickHouse"
        + (
            f"; session {report.live.session_id}: {report.live.chunks} chunks, "
            f"{sum(report.live.events.values())} Inter-1 events"
            if report.live
            else ""
        )
    )
