"""``inter1-pipeline demo``: the real pipeline, end to end, on the embedded defaults.

1. :func:`inter1_pipeline.pipeline_stack.start_stack`: Kafka (the local broker unless
   ``KAFKA_BOOTSTRAP_SERVERS`` is set), ClickHouse migrations, topics, then the simulator
   (or Inter-1 with ``INTER1_API_KEY`` + ``INTER1_BASE_URL``), the session worker, the sink
   and the cues app as supervised processes, each the production command.
2. Clips of different content (:data:`DEMO_CLIPS`, generated once into
   ``<state>/demo/clips``; or the files given) go through ``inter1-pipeline produce
   --realtime`` as live sessions labelled ``demo_run=<run id>``.
3. It waits, reading ClickHouse through the sink's query endpoint, until every session
   ended and was analysed (its ``session.ended`` event, or a failed session's usage, is
   loaded), the cues app has consumed every event (its group's committed offsets reach
   the events topic's ends) and then the sink every record on its topics (likewise).
4. It prints the per-session summary (:mod:`inter1_pipeline.demo_summary`) and the cues,
   writes the HTML report of the session with the most cues, and stops everything it
   started (also on Ctrl-C or a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import TopicPartition

from inter1_pipeline.demo_summary import (
    SessionSummary,
    format_cues,
    format_table,
    read_summaries,
    sql_list,
)
from inter1_pipeline.pipeline_stack import PipelineStack, start_stack, status_file
from inter1_pipeline.status_line import StatusLine
from inter1_pipeline.supervisor import Exit, ProcessSpec, RestartPolicy, Supervisor
from runtime.errors import ExitCode, PipelineError
from runtime.kafka import make_admin, make_consumer
from runtime.settings import CuesSettings, SinkSettings, StackSettings, load
from runtime.topics import topic_name
from simulator.clips import ClipSpec
from sinks.exceptions import ClickHouseUnavailableError
from sinks.warehouse import EndpointWarehouse, Warehouse

__all__ = ["DEMO_CLIPS", "DemoClip", "DemoError", "DemoResult", "run_demo"]

_POLL_S = 0.5


class DemoError(PipelineError):
    """The demo could not finish (a process failed, or the sessions did not load in time)."""


class DemoSessionsFailedError(DemoError):
    """Inter-1 sessions of the demo failed (a refused API key, an unreachable service)."""

    exit_code = ExitCode.UNAVAILABLE


@dataclass(frozen=True)
class DemoClip:
    """A generated clip: what it shows, and the spec that makes it."""

    name: str
    about: str
    spec: ClipSpec


DEMO_CLIPS: tuple[DemoClip, ...] = (
    DemoClip("presenter", "moving, speaking 2 s on / 1 s off", ClipSpec(seconds=14.0)),
    DemoClip(
        "listener",
        "barely moving, quiet, mostly pauses",
        ClipSpec(seconds=14.0, speed=1, tone_db=-30.0, speech_pattern=(0.5, 1.5)),
    ),
    DemoClip(
        "warming-up",
        "motion speeding up over 20 s",
        ClipSpec(seconds=20.0, speed=1, ramp=10.0, speech_pattern=(3.0, 1.0)),
    ),
)
"""The default clips: different content, so the signals, engagement and cues differ."""


@dataclass
class DemoResult:
    """What the demo did."""

    run_id: str
    sessions: dict[str, str] = field(default_factory=dict)
    """session id -> clip name."""
    summaries: list[SessionSummary] = field(default_factory=list)
    report: Path | None = None


def write_clips(directory: Path, clips: Sequence[DemoClip] = DEMO_CLIPS) -> list[Path]:
    """Generate the clips into ``directory`` (kept: a file named for its spec is reused)."""
    from simulator.clips import make_clip

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip in clips:
        digest = hashlib.sha256(repr(clip.spec).encode()).hexdigest()[:10]
        path = directory / f"{clip.name}-{digest}.{clip.spec.container}"
        if not path.exists():
            temp = path.with_suffix(".tmp")
            temp.write_bytes(make_clip(clip.spec))
            temp.replace(path)
        paths.append(path)
    return paths


async def _given(sources: Sequence[Path]) -> list[Path]:
    return [path.resolve() for path in sources]


def _clip_name(path: Path) -> str:
    stem = path.stem
    for clip in DEMO_CLIPS:
        if stem.startswith(clip.name + "-"):
            return clip.name
    return stem


async def run_demo(
    out: StatusLine,
    *,
    sources: Sequence[Path] = (),
    realtime: bool = True,
    timeout_s: float = 300.0,
    report_path: Path | None = None,
) -> DemoResult:
    """Run the demo (see the module docstring); everything started is stopped on return.

    Raises:
        DemoError: a process failed for good, or the sessions were not loaded in time.
    """
    state_dir = load(StackSettings).state_dir.resolve()
    result = DemoResult(run_id=uuid.uuid4().hex[:12])
    supervisor = Supervisor(RestartPolicy(max_restarts=2), status_file=status_file(state_dir))
    deadline = time.monotonic() + timeout_s
    try:
        clips = asyncio.ensure_future(
            asyncio.to_thread(write_clips, state_dir / "demo" / "clips")
            if not sources
            else _given(sources)
        )
        stack = await start_stack(supervisor, out.say, state_dir=state_dir)
        paths = await clips
        names = {str(p): _clip_name(p) for p in paths}
        if len(set(names.values())) != len(names):
            raise DemoError(f"give sources with different file names: {sorted(names)}")
        out.say(
            f"producing: {', '.join(names.values())} through `inter1-pipeline produce"
            f"{' --realtime' if realtime else ''}` (run {result.run_id})"
        )
        produce = asyncio.ensure_future(
            supervisor.run_task(
                ProcessSpec(
                    "produce",
                    stack.command(
                        "produce",
                        *(["--realtime"] if realtime else []),
                        "--no-progress",
                        "--tenant",
                        "demo",
                        "--app",
                        "make-demo",
                        "--label",
                        f"demo_run={result.run_id}",
                        *names,
                    ),
                    env=stack.env,
                ),
                stack.log_dir,
            )
        )
        warehouse = EndpointWarehouse(stack.query_url)
        try:
            result.sessions = await _wait_loaded(
                stack=stack,
                warehouse=warehouse,
                out=out,
                produce=produce,
                run_id=result.run_id,
                sources=names,
                deadline=deadline,
            )
            await _wait_consumed(stack, out, deadline)
            out.close()
            result.summaries = await asyncio.to_thread(read_summaries, warehouse, result.sessions)
            _print_summary(out, stack, result.summaries)
            result.report = await asyncio.to_thread(
                _write_report, warehouse, result, report_path or state_dir / "demo"
            )
            out.say(f"report: {result.report} (and {result.report.with_suffix('.png').name})")
        finally:
            warehouse.close()
    finally:
        out.close()
        stopped = await supervisor.stop()
        out.say(f"stopped: {', '.join(name for name, _ in stopped)}")
    failed = [s for s in result.summaries if s.session_error_s > 0]
    if failed:
        raise DemoSessionsFailedError(_failure_message(failed, len(result.summaries), state_dir))
    return result


def _failure_message(failed: Sequence[SessionSummary], total: int, state_dir: Path) -> str:
    """Which sessions failed and why, from the session worker's ``session_failed`` lines."""
    log = state_dir / "logs" / "session-worker.log"
    causes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if '"session_failed"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                causes.add(f"close code {entry.get('close_code')} ({entry.get('cause')})")
    why = f": Inter-1 ended them with {', '.join(sorted(causes))}" if causes else ""
    hint = (
        "check INTER1_API_KEY and INTER1_BASE_URL"
        if any(c in " ".join(causes) for c in ("unauthorized", "forbidden", "missing_scope"))
        else "see the session_failed lines"
    )
    clips = ", ".join(s.clip for s in failed)
    return (
        f"{len(failed)} of {total} sessions could not be analysed ({clips}){why}; {hint} "
        f"(session worker log: {log})"
    )


async def _wait_loaded(
    *,
    stack: PipelineStack,
    warehouse: Warehouse,
    out: StatusLine,
    produce: asyncio.Future[tuple[Exit, str]],
    run_id: str,
    sources: dict[str, str],
    deadline: float,
) -> dict[str, str]:
    """Session id -> clip once every session of this run ended and was analysed."""
    started = time.monotonic()
    sessions: dict[str, str] = {}
    while True:
        _check(stack, deadline, "the sessions to be analysed")
        if produce.done():
            ended, output = produce.result()
            if ended.code != 0:
                raise DemoError(f"produce failed ({ended.describe()}): {output.strip()[-1500:]}")
        try:
            rows = await asyncio.to_thread(
                warehouse.rows,
                "SELECT session_id, source_url FROM sessions_started FINAL "
                f"WHERE labels['demo_run'] = '{run_id}'",
            )
            by_file = {Path(path).name: clip for path, clip in sources.items()}
            sessions = {
                str(r["session_id"]): by_file.get(Path(str(r["source_url"])).name, "?")
                for r in rows
            }
            done, events, cues = await asyncio.to_thread(_progress, warehouse, list(sessions))
        except ClickHouseUnavailableError:  # the sink is being restarted: ask again
            out.update("live: waiting for the sink's query endpoint")
            await asyncio.sleep(_POLL_S)
            continue
        out.update(
            f"live: {len(sessions)}/{len(sources)} sessions started, {done} analysed · "
            f"{events} events · {cues} cues loaded · {time.monotonic() - started:.0f} s"
        )
        if produce.done() and len(sessions) == len(sources) and done == len(sources):
            break
        await asyncio.sleep(_POLL_S)
    out.say(
        f"analysed: {len(sessions)} sessions ended, their events loaded "
        f"({time.monotonic() - started:.1f} s after producing began)"
    )
    order = list(sources.values())
    return dict(
        sorted(sessions.items(), key=lambda i: order.index(i[1]) if i[1] in order else len(order))
    )


def _progress(warehouse: Warehouse, session_ids: list[str]) -> tuple[int, int, int]:
    """Sessions analysed to their end, events and cues loaded."""
    if not session_ids:
        return 0, 0, 0
    ids = sql_list(session_ids)
    (row,) = warehouse.rows(
        "SELECT "
        f"(SELECT count() FROM events WHERE session_id IN {ids}) AS events, "
        f"(SELECT count() FROM cues WHERE session_id IN {ids}) AS cues, "
        "(SELECT uniqExact(session_id) FROM events WHERE event_type = 'session.ended' "
        f"AND session_id IN {ids}) + "
        "(SELECT uniqExact(session_id) FROM usage WHERE reason = 'session_error' "
        f"AND session_id IN {ids}) AS analysed, "
        f"(SELECT uniqExact(session_id) FROM sessions_ended WHERE session_id IN {ids}) AS ended"
    )
    return min(int(row["analysed"]), int(row["ended"])), int(row["events"]), int(row["cues"])


async def _wait_consumed(stack: PipelineStack, out: StatusLine, deadline: float) -> None:
    """The cues app consumed every event; then the sink loaded every record on its topics
    (each group's committed offsets reach the topics' ends, read when its wait begins)."""
    admin = make_admin(stack.kafka)
    consumer = make_consumer(group_id=None, settings=stack.kafka)
    await admin.start()
    await consumer.start()
    try:
        for what, group, keys in (
            ("cues app", load(CuesSettings).app_id, ("events",)),
            ("sink", load(SinkSettings).group_id, ("events", "usage", "cues", "chunks")),
        ):
            ends = await _end_offsets(consumer, [topic_name(key) for key in keys])
            while True:
                _check(stack, deadline, f"the {what} to catch up")
                committed = await admin.list_consumer_group_offsets(group)
                behind = sum(
                    max(0, end - (committed[tp].offset if tp in committed else 0))
                    for tp, end in ends.items()
                )
                out.update(f"waiting for the {what}: {behind} record(s) to go")
                if behind == 0:
                    break
                await asyncio.sleep(_POLL_S)
    finally:
        await consumer.stop()
        await admin.close()
    out.say("caught up: the cues app consumed every event; the sink loaded every record")


async def _end_offsets(consumer: object, topics: list[str]) -> dict[TopicPartition, int]:
    from aiokafka import AIOKafkaConsumer

    assert isinstance(consumer, AIOKafkaConsumer)
    tps = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # not in its metadata yet
            partitions = consumer.partitions_for_topic(topic) or set()
        tps += [TopicPartition(topic, p) for p in sorted(partitions)]
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    return ends


def _check(stack: PipelineStack, deadline: float, waiting_for: str) -> None:
    failure = stack.supervisor.failure
    if failure is not None and failure.done():
        raise DemoError(str(failure.result()))
    if time.monotonic() > deadline:
        raise DemoError(
            f"timed out waiting for {waiting_for}; the processes' logs are in {stack.log_dir}"
        )


def _print_summary(out: StatusLine, stack: PipelineStack, summaries: list[SessionSummary]) -> None:
    out.say("")
    out.say(f"summary (read back from ClickHouse through the sink at {stack.query_url}):")
    for line in format_table(summaries):
        out.say("  " + line)
    out.say(
        "  e2e = a chunk's publication (its produced_at) -> the first analysis event the "
        "session worker received after it, queryable in ClickHouse (view chunk_latency)"
    )
    out.say("cues:")
    for line in format_cues(summaries):
        out.say("  " + line)


def _write_report(warehouse: Warehouse, result: DemoResult, target: Path) -> Path:
    """The HTML report of the session with the most cues (the first clip on a tie)."""
    from sinks.report import load_report_data, render_report

    chosen = max(result.summaries, key=lambda s: len(s.cues))
    path = target if target.suffix == ".html" else target / f"report-{chosen.clip}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    html_path, _png = render_report(load_report_data(warehouse, chosen.session_id), path)
    return html_path
