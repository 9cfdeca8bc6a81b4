"""The whole pipeline as real processes, for the failure drills.

One :class:`Pipeline` is one run on private topics (a fresh prefix), consumer groups and
embedded ClickHouse store: ``inter1-pipeline produce`` (the real producer, paced to the
wall clock so a drill can strike mid-run) publishes committed fixture clips, and
``session-worker``, ``sink`` and ``cues`` run as subprocesses started by the suite's
existing helpers (``worker_process``, ``sink_process``, ``cues_app``). The Inter-1
simulator runs in-process on a thread of its own, so a drill can switch its fault
injection on and off the way an operator would. A killed process is started again with
the same command and environment, as a supervisor would; nothing else is touched.

:meth:`Pipeline.finish` waits until every session ended and was loaded, stops the
processes cleanly (each must exit 0) and returns :func:`snapshot` of the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError
from cues_app import CuesRun, wait_until_consumed
from session_helpers import TopicReader
from sim_helpers import FIXTURE_DIR, instant_config
from sink_process import SinkProcess
from worker_process import WorkerProcess, create_prefixed_topics, worker_processes

from deploy.topics import wait_for_topics
from runtime.kafka import make_admin, make_consumer
from runtime.settings import load
from simulator.config import SimulatorConfig
from simulator.faults import parse_faults
from simulator.server import Simulator
from sinks.warehouse import open_warehouse

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "workers" / "cues" / "default_rules.toml"
CLIPS = {"drill-ramp": "clip_ramp.mp4", "drill-b": "clip_b.mp4"}
"""Session id -> committed fixture clip (20 s and 14 s): the same sessions in every run."""

WINDOW_KINDS = (
    "signal.detected",
    "signal.updated",
    "signal.ended",
    "engagement.updated",
    "conversation_quality.updated",
    "coverage.dropped",
    "coverage.degraded",
)
"""Event kinds that describe media windows: their ids hash the session media time, so a
window analysed again on another connection keeps its id."""

# What a drill compares exactly: the deduplicated tables and views analysts read, without
# the columns that legitimately differ between two runs of the same media:
# - wall-clock times: ts / event_timestamp (Inter-1's send time), recorded_at (when the
#   worker wrote the usage record), started_at / ended_at (when the producer ran),
#   summarised_at (insert time);
# - correlation_id: the simulator's id of one connection (a new one per connection);
# - incarnation / event_seq, the ids that hash them (opened_by, closed_by,
#   engagement_timeline's event_id) and signal_intervals' connections: which Inter-1
#   connection carried a window, its place there, how many carried an interval. A failover
#   or reconnect opens more connections; each window's analysis is the same (kept apart in
#   ``interval_connections``);
# - the summary's events and version (events + usage records + cues): they count the
#   per-connection records (session.ready/updated/closing, an ``error`` ih6005 when a
#   paced session's tail frame is sent alone, the re-analysed usage records), one set per
#   connection; reanalysed_s: shown apart (``reanalysed``), zero in a clean run.
# Raw events are compared as the set of window event ids (payload times are relative to
# the connection's start, media_offset_s); signal events by what the intervals are made of.
SNAPSHOT = {
    "window_events": (
        "SELECT session_id, event_type, event_id FROM events FINAL"
        f" WHERE event_type IN {WINDOW_KINDS!r}"
    ),
    "signal_events": "SELECT * EXCEPT (incarnation, event_seq, ts) FROM signal_events FINAL",
    "signal_intervals": (
        "SELECT * EXCEPT (incarnation, connections, opened_by, closed_by) FROM signal_intervals"
    ),
    "interval_connections": (
        "SELECT session_id, signal_type, start_s, incarnation, connections FROM signal_intervals"
    ),
    "engagement_timeline": "SELECT * EXCEPT (event_id) FROM engagement_timeline",
    "quality_timeline": "SELECT * FROM quality_timeline_latest",
    "quality_overall": "SELECT * EXCEPT (incarnation, event_seq, ts) FROM quality_overall FINAL",
    "coverage": "SELECT * EXCEPT (incarnation, ts) FROM coverage FINAL",
    "session_summaries": (
        "SELECT * EXCEPT (started_at, ended_at, summarised_at, events, version, reanalysed_s)"
        " FROM session_summaries FINAL"
    ),
    "cues": "SELECT * EXCEPT (event_timestamp) FROM cues FINAL",
    "usage": (
        "SELECT * EXCEPT (recorded_at, correlation_id, incarnation) FROM usage FINAL"
        " WHERE reanalysed_s = 0"
    ),
    "sessions": "SELECT * EXCEPT (started_at, ended_at, producer_id) FROM sessions",
    "reanalysed": (
        "SELECT session_id, media_start_s, media_end_s, reanalysed_s, reason FROM usage FINAL"
        " WHERE reanalysed_s > 0"
    ),
    "summary_reanalysed": "SELECT session_id, reanalysed_s FROM session_summaries FINAL",
    "connection_events": (
        "SELECT session_id, event_type, count() AS n FROM events FINAL"
        f" WHERE event_type NOT IN {WINDOW_KINDS!r} GROUP BY ALL"
    ),
}


_CHDB = threading.Lock()  # one embedded store open at a time in this process


def snapshot(store_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every :data:`SNAPSHOT` query on a stopped sink's store, rows sorted."""
    with _CHDB:
        warehouse = open_warehouse(f"chdb://{store_dir}")
        try:
            return {
                name: warehouse.rows(f"SELECT * FROM ({sql}) ORDER BY ALL")
                for name, sql in SNAPSHOT.items()
            }
        finally:
            warehouse.close()


class SimulatorThread:
    """The in-process simulator on an event loop of its own thread (the drills are sync)."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.sim = Simulator(config or instant_config())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="e2e-simulator")

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    @property
    def http_url(self) -> str:
        return self.sim.http_url

    def set_faults(self, spec: str) -> None:
        """Faults for every connection opened from now on (``""``: none)."""
        self.sim.config = dataclasses.replace(self.sim.config, faults=parse_faults(spec))

    def set_capacity(self, capacity: int) -> None:
        """Concurrent sessions served; the next connection gets ``ih1003``, close 1013."""
        load_config = dataclasses.replace(self.sim.config.load, capacity=capacity)
        self.sim.config = dataclasses.replace(self.sim.config, load=load_config)

    def end_reasons(self) -> list[str]:
        """The end reason of every connection served so far (its usage ledger)."""
        return [usage.end_reason or "" for usage in list(self.sim.ledger.sessions.values())]


async def _committed_behind(group: str, topics: list[str]) -> dict[str, tuple[int, int]]:
    """Partitions of ``topics`` whose end offset ``group`` has not committed yet."""
    consumer = make_consumer(group_id=None)
    await consumer.start()
    try:
        tps = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    admin = make_admin()
    await admin.start()
    try:
        have = await admin.list_consumer_group_offsets(group)
    except KafkaError as exc:
        if not exc.retriable:
            raise
        have = {}  # e.g. the group coordinator moving: everything counts as behind, ask again
    finally:
        await admin.close()
    return {
        f"{tp.topic}[{tp.partition}]": (have[tp].offset if tp in have else -1, end)
        for tp, end in ends.items()
        if end and (tp not in have or have[tp].offset < end)
    }


@dataclass
class Pipeline:
    """One pipeline run (see the module docstring); use as a context manager."""

    workdir: Path
    base_url: str
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of every process (e.g. the drill's own ``KAFKA_BOOTSTRAP_SERVERS``)."""
    prefix: str = field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:8]}.")
    sink_group: str = field(default_factory=lambda: f"e2e-sink-{uuid.uuid4().hex[:8]}")
    worker: WorkerProcess | None = None
    sink: SinkProcess | None = None
    cues: CuesRun | None = None
    producers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)
    _new_worker: Callable[[], WorkerProcess] | None = None

    @property
    def store_dir(self) -> Path:
        return self.workdir / "clickhouse"

    def topic(self, key: str) -> str:
        names = {
            "chunks": "inter1.video-chunks",
            "events": "inter1.events",
            "usage": "inter1.usage",
            "cues": "inter1.cues",
        }
        return self.prefix + names[key]

    def __enter__(self) -> Pipeline:
        asyncio.run(self._create_topics())
        self._new_worker = self._stack.enter_context(
            worker_processes(
                self.workdir,
                self.prefix,
                self.base_url,
                PIPELINE_WORKER_RECONNECT_ATTEMPTS="60",
                PIPELINE_WORKER_RECONNECT_BASE_S="0.2",
                PIPELINE_WORKER_RECONNECT_MAX_S="0.5",
                **self.env,
            )
        )
        self.cues = CuesRun(self.workdir / "cues", RULES, prefix=self.prefix, env=self.env)
        self.cues.workdir.mkdir()
        self.cues.start()
        self.start_sink()
        self.start_worker()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.producers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        if self.cues is not None and self.cues.process and self.cues.process.poll() is None:
            self.cues.kill()
        if self.sink is not None and self.sink.proc.poll() is None:
            self.sink.kill9()
        self._stack.close()

    async def _create_topics(self) -> None:
        await create_prefixed_topics(self.prefix)
        admin = make_admin()
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic("cues"), 1, 1)])
            await wait_for_topics(admin, {self.topic("cues"): 1})
        finally:
            await admin.close()

    # -- processes (each restart is the same command with the same environment) ----------

    def start_worker(self) -> None:
        assert self._new_worker is not None
        self.worker = self._new_worker()
        asyncio.run(self.worker.wait_started())

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.kill9()

    def start_sink(self) -> None:
        self.sink = SinkProcess(self.store_dir, self, self.sink_group, **self.env)
        self.sink.endpoint()

    def produce(self) -> None:
        """Start one paced producer per fixture clip (returns at once)."""
        env = {**os.environ, "KAFKA_TOPIC_PREFIX": self.prefix, "LOG_FORMAT": "json", **self.env}
        for session_id, name in CLIPS.items():
            log = (self.workdir / f"produce-{session_id}.log").open("wb")
            self._stack.callback(log.close)
            self.producers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "inter1_pipeline", "produce", str(FIXTURE_DIR / name),
                     "--session-id", session_id, "--tenant", "acme", "--app", "drills",
                     "--label", "drill=e2e", "--realtime", "--no-progress"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip

    # -- waiting -------------------------------------------------------------------------

    def wait_events(
        self, done: Callable[[list[dict[str, Any]]], bool], what: str, within_s: float = 90
    ) -> list[dict[str, Any]]:
        """Wait until the events topic, read from the start, satisfies ``done``; its events."""

        async def go() -> list[dict[str, Any]]:
            reader = await TopicReader(self.topic("events")).start()
            try:
                await reader.until(
                    lambda r: done([datum for _, datum in r.records]), within_s=within_s, what=what
                )
            finally:
                await reader.stop()
            return [datum for _, datum in reader.records]

        return asyncio.run(go())

    def wait_mid_session(self, windows: int = 1) -> None:
        """Wait until ``drill-ramp`` (20 s, paced) has published ``windows`` windows; fail if
        it already ended (the drill would strike after the run, not in it)."""
        events = self.wait_events(
            lambda events: self.windows("drill-ramp")(events) >= windows,
            f"{windows} window(s) of drill-ramp",
        )
        ended = [
            e
            for e in events
            if e["session_id"] == "drill-ramp" and e["event_type"] == "session.ended"
        ]
        assert not ended, "drill-ramp ended before the drill could strike mid-session"

    def windows(self, session_id: str) -> Callable[[list[dict[str, Any]]], int]:
        """Counter of the published quality windows of one session."""

        def count(events: list[dict[str, Any]]) -> int:
            return len(
                {
                    e["event_id"]
                    for e in events
                    if e["session_id"] == session_id
                    and e["event_type"] == "conversation_quality.updated"
                }
            )

        return count

    def wait_caught_up(self, group: str, keys: list[str], what: str, within_s: float = 90) -> None:
        """Wait until ``group`` committed the end of every partition of ``keys``' topics."""
        deadline = time.monotonic() + within_s
        while behind := asyncio.run(_committed_behind(group, [self.topic(k) for k in keys])):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not commit to the end within {within_s:g} s: "
                                     f"(committed, end) = {behind}")  # fmt: skip
            time.sleep(0.3)

    def finish(self, within_s: float = 120) -> dict[str, list[dict[str, Any]]]:
        """Wait until every session ended and was loaded; stop everything; the snapshot."""
        deadline = time.monotonic() + within_s
        for process in self.producers:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            assert code == 0, f"a producer exited with {code}: {self._logs('produce-*.log')}"
        self.wait_events(
            lambda events: all(
                any(e["session_id"] == sid and e["event_type"] == "session.ended" for e in events)
                for sid in CLIPS
            ),
            "session.ended of every session",
            within_s=max(1.0, deadline - time.monotonic()),
        )
        assert self.worker is not None
        assert asyncio.run(self.worker.terminate()) == 0, self.worker.output()[-3000:]
        assert self.cues is not None
        # its own bound, like the sink's below: a cues app restarted by a drill first waits
        # for its killed member's group session to expire, which the shared deadline
        # (spent on the real-time producers) did not always leave room for on a loaded box
        asyncio.run(wait_until_consumed(self.cues))
        assert self.cues.stop() == 0, self._logs("cues/cues-*.log")
        assert self.sink is not None
        self.wait_caught_up(self.sink_group, ["events", "usage", "cues", "chunks"], "the sink")
        assert self.sink.terminate() == 0, self.sink.tail()
        return snapshot(self.store_dir)

    def _logs(self, pattern: str) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.workdir.glob(pattern))
        )


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """This process's Kafka clients use ``values`` (e.g. another broker) inside the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    load.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        load.cache_clear()
