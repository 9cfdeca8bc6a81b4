"""``inter1-pipeline demo``: the real pipeline end to end on the embedded defaults."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import click

from runtime.errors import ExitCode

__all__ = ["demo"]


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--realtime/--no-realtime",
    default=True,
    show_default=True,
    help="Publish the clips at their own pace, like live sources (latency as live).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="Give up (and stop everything) after this many seconds.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="HTML report to write (default: $PIPELINE_STATE_DIR/demo/report-<clip>.html).",
)
def demo(
    sources: tuple[Path, ...], realtime: bool, timeout_s: float, report_path: Path | None
) -> None:
    """Run the whole pipeline on generated clips (or SOURCES) and print what it found.

    Starts the local Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set), migrates the
    embedded ClickHouse (or CLICKHOUSE_URL), ensures the topics, and supervises the Inter-1
    simulator (or Inter-1 itself when INTER1_API_KEY and INTER1_BASE_URL are set), a
    session worker, the sink and the cues app. Publishes three clips of different content
    through `produce`, waits until every session is analysed and loaded, prints a
    per-session summary read back from ClickHouse and the cues, writes one session's HTML
    report, and stops everything it started (also on Ctrl-C). Logs: $PIPELINE_STATE_DIR/logs.
    """
    from inter1_pipeline.demo import run_demo
    from inter1_pipeline.status_line import StatusLine
    from inter1_pipeline.supervisor import run_until_signal
    from runtime.logs import configure_logging
    from runtime.settings import LogSettings, load

    if "LOG_LEVEL" not in os.environ:
        # The demo narrates; its own logs show only when something goes wrong.
        configure_logging("WARNING", load(LogSettings).format)
    out = StatusLine()
    started = time.monotonic()
    result, stopped_by = asyncio.run(
        run_until_signal(
            run_demo(
                out,
                sources=sources,
                realtime=realtime,
                timeout_s=timeout_s,
                report_path=report_path,
            )
        )
    )
    if result is None:
        name = stopped_by.name if stopped_by else "a signal"
        out.say(f"interrupted by {name}: everything the demo started was stopped")
        raise click.exceptions.Exit(ExitCode.INTERRUPTED)
    out.say(
        f"demo: ok in {time.monotonic() - started:.1f} s: {len(result.sessions)} sessions, "
        f"{sum(s.events for s in result.summaries)} events, "
        f"{sum(len(s.cues) for s in result.summaries)} cues"
    )
