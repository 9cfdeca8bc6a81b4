"""``inter1-pipeline run``: the local pipeline, supervised in the foreground."""

from __future__ import annotations

import asyncio
import signal

import click

from runtime.errors import ExitCode

__all__ = ["run"]


@click.command()
@click.option(
    "--session-workers",
    type=click.IntRange(1, 12),
    default=1,
    show_default=True,
    help="Session worker processes (one consumer group; at most the chunk topic's partitions).",
)
def run(session_workers: int) -> None:
    """Run the pipeline for local use until Ctrl-C: broker, simulator, session worker(s),
    sink and cues app, each restarted (capped backoff) when it dies.

    Starts the local Kafka broker unless KAFKA_BOOTSTRAP_SERVERS is set (one `stack up`
    started is used and left running) and the Inter-1 simulator unless INTER1_API_KEY and
    INTER1_BASE_URL are set. `produce`, `query`, `report` and `reconcile` work against it
    from another terminal (same PIPELINE_STATE_DIR). Ctrl-C (exit 130) or SIGTERM (exit 0)
    stops everything in order. Logs: $PIPELINE_STATE_DIR/logs/<process>.log; pids and
    states: $PIPELINE_STATE_DIR/pipeline.json.
    """
    from inter1_pipeline.run_pipeline import run_pipeline
    from inter1_pipeline.status_line import StatusLine
    from inter1_pipeline.supervisor import run_until_signal

    out = StatusLine()
    _, stopped_by = asyncio.run(
        run_until_signal(run_pipeline(out, session_workers=session_workers))
    )
    if stopped_by == signal.SIGINT:
        raise click.exceptions.Exit(ExitCode.INTERRUPTED)
