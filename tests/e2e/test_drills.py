"""Failure drills over the whole pipeline: producer -> Kafka -> session worker -> Inter-1
simulator -> events -> sink (ClickHouse) and cues app, each a real process.

One clean run is the baseline. Each drill runs the same fixture sessions while something
fails mid-run, recovers with no help but restarting what died, and must leave ClickHouse
holding exactly the clean run's analytics (see ``pipeline.SNAPSHOT`` for the columns left
out and why), usage tiling the media. The runs are paced by the media (20 s) and mostly
wait, so the clean run and the drills on the session's broker run side by side, once per
module (each on its own topics, groups, store and simulator); the broker drill, which needs
this process's Kafka clients pointed at its own broker, runs after them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pipeline import CLIPS, Pipeline, SimulatorThread, environment
from session_helpers import TopicReader

from deploy.kafka_broker import LocalBroker
from deploy.kafka_jars import jars_dir
from deploy.processes import free_port

# The module's runs are set up once, in the first test's setup: minutes on a loaded box.
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.clickhouse,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

Snapshot = dict[str, list[dict[str, Any]]]


def _until(check: Callable[[], bool], what: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {within_s:g} s"
        time.sleep(0.1)


def _tiles(snap: Snapshot) -> dict[str, list[tuple[float, float]]]:
    """Per session, the usage ranges (analysed or dropped, re-analysis apart), checked to tile
    the session's media from 0 to its end with no gap and no overlap."""
    ends = {row["session_id"]: row["media_seconds"] for row in snap["sessions"]}
    tiles: dict[str, list[tuple[float, float]]] = {}
    for sid, end in ends.items():
        ranges = sorted(
            (u["media_start_s"], u["media_end_s"], u["analysed_s"] + u["dropped_s"])
            for u in snap["usage"]
            if u["session_id"] == sid
        )
        cursor = 0.0
        for start, stop, seconds in ranges:
            assert abs(start - cursor) < 1e-6, f"{sid}: usage gap or overlap at {cursor}: {ranges}"
            assert abs(stop - start - seconds) < 1e-6, f"{sid}: {start}-{stop} counts {seconds}"
            cursor = stop
        assert abs(cursor - end) < 1e-6, f"{sid}: usage ends at {cursor}, media at {end}"
        tiles[sid] = [(start, stop) for start, stop, _ in ranges]
    return tiles


def _no_dead_letters(run: Pipeline) -> None:
    async def go() -> list[tuple[str, dict[str, Any]]]:
        reader = await TopicReader(run.prefix + "inter1.dead-letter").start()
        try:
            await reader.drain()
        finally:
            await reader.stop()
        return reader.records

    assert asyncio.run(go()) == []


_EXACT = (
    "sessions",
    "window_events",
    "signal_events",
    "signal_intervals",
    "engagement_timeline",
    "quality_timeline",
    "quality_overall",
    "coverage",
    "session_summaries",
    "cues",
    "usage",
)


def _assert_same_analytics(snap: Snapshot, clean: Snapshot) -> None:
    """Exactly the clean run's analytics; usage tiles the media; re-analysis shown apart.

    Signal intervals are a function of the session's window events: with the same events
    (``signal_events``: every column but the connection and its place there) the view gives
    the same intervals, however many Inter-1 connections carried them (``signal_intervals``
    joins them across connections, migration 0004), and so the same session summaries.
    """
    assert _tiles(snap) == _tiles(clean)
    for name in _EXACT:
        extra = [row for row in snap[name] if row not in clean[name]]
        missing = [row for row in clean[name] if row not in snap[name]]
        assert snap[name] == clean[name], f"{name}: extra {extra}, missing {missing}"
    # re-analysed seconds (a failover's overlap) are separate records, never in the tiles;
    # the summary shows their sum
    reanalysed = {s["session_id"]: 0.0 for s in snap["summary_reanalysed"]}
    for row in snap["reanalysed"]:
        assert row["reason"] == "failover"
        assert row["media_end_s"] - row["media_start_s"] == pytest.approx(row["reanalysed_s"])
        reanalysed[row["session_id"]] += row["reanalysed_s"]
    assert {s["session_id"]: s["reanalysed_s"] for s in snap["summary_reanalysed"]} == (
        pytest.approx(reanalysed)
    )
    # every session ended once, on the connection that finished it
    ends = {
        r["session_id"]: r["n"]
        for r in snap["connection_events"]
        if r["event_type"] == "session.ended"
    }
    assert ends == dict.fromkeys(CLIPS, 1)


@dataclass(frozen=True)
class Drill:
    """What goes wrong: ``prepare`` the simulator before the run, ``strike`` mid-run."""

    strike: Callable[[Pipeline, SimulatorThread], None] | None = None
    prepare: Callable[[SimulatorThread], None] | None = None


def _kill_worker(run: Pipeline, sim: SimulatorThread) -> None:
    run.wait_mid_session()
    run.kill_worker()
    run.start_worker()


def _kill_sink(run: Pipeline, sim: SimulatorThread) -> None:
    assert run.sink is not None
    sink = run.sink
    run.wait_mid_session()
    _until(lambda: sink.query("SELECT count() AS n FROM events")[0]["n"] >= 5, "events loaded")
    sink.kill9()
    run.start_sink()


def _kill_cues(run: Pipeline, sim: SimulatorThread) -> None:
    run.wait_mid_session()
    assert run.cues is not None
    run.cues.kill()
    run.cues.start()


def _disconnects(run: Pipeline, sim: SimulatorThread) -> None:
    """Connections dropped (1006) at 12 s of their media, after windows were published, then
    closed with ih1001 / 1011 at 14 s, then healthy: the worker reconnects each time."""
    _until(lambda: "fault_drop" in sim.end_reasons(), "a dropped connection")
    sim.set_faults("close=1011@14")
    _until(lambda: "fault_close" in sim.end_reasons(), "a connection closed with 1011")
    sim.set_faults("")


def _refusals(run: Pipeline, sim: SimulatorThread) -> None:
    """Capacity 1 for two sessions: one is refused with ih1003 / 1013 and retried until the
    capacity is raised (a burst of refusals, not a session failure)."""
    assert run.worker is not None
    worker = run.worker
    _until(lambda: '"close_code": 1013' in worker.output(), "a refusal with 1013")
    time.sleep(2)  # the refused session keeps retrying meanwhile
    sim.set_capacity(200)


DRILLS = {
    "clean": Drill(),
    "kill-9-session-worker": Drill(_kill_worker),
    "kill-9-sink": Drill(_kill_sink),
    "kill-9-cues": Drill(_kill_cues),
    "simulator-disconnects": Drill(_disconnects, lambda sim: sim.set_faults("drop@12")),
    "ih1003-burst": Drill(_refusals, lambda sim: sim.set_capacity(1)),
}


def _run(drill: Drill, workdir: Path, env: dict[str, str] | None = None) -> Snapshot:
    with SimulatorThread() as sim:
        if drill.prepare is not None:
            drill.prepare(sim)
        with Pipeline(workdir, sim.http_url, env=env or {}) as run:
            run.produce()
            if drill.strike is not None:
                drill.strike(run, sim)
            snap = run.finish()
            _no_dead_letters(run)
    return snap


def _broker_restart(workdir: Path, broker: LocalBroker, address: str) -> Snapshot:
    """The drill's own broker (never the session's), stopped and started on its data dir."""
    with environment(KAFKA_BOOTSTRAP_SERVERS=address):
        restarted = Drill(lambda run, sim: _restart_broker(run, broker, address))
        return _run(restarted, workdir, {"KAFKA_BOOTSTRAP_SERVERS": address})


def _restart_broker(run: Pipeline, broker: LocalBroker, address: str) -> None:
    run.wait_mid_session()
    assert asyncio.run(broker.stop())
    assert asyncio.run(broker.start()) == address


@pytest.fixture(scope="module")
def runs(
    kafka_bootstrap: str, kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Snapshot | BaseException]:
    """Every run's snapshot (or what it raised), keyed by drill name."""
    state = tmp_path_factory.mktemp("own-broker")
    jars_dir(state).parent.mkdir(parents=True)
    jars_dir(state).symlink_to(kafka_jars, target_is_directory=True)
    broker = LocalBroker(state, port=free_port("127.0.0.1"), heap_mb=384)
    try:
        with ThreadPoolExecutor(len(DRILLS) + 1) as pool:
            starting = pool.submit(asyncio.run, broker.start())  # the JVM starts meanwhile
            futures = {
                name: pool.submit(_run, drill, tmp_path_factory.mktemp(name))
                for name, drill in DRILLS.items()
            }
        results: dict[str, Snapshot | BaseException] = {
            name: future.exception() or future.result() for name, future in futures.items()
        }
        try:
            results["kafka-broker-restart"] = _broker_restart(
                tmp_path_factory.mktemp("kafka-broker-restart"), broker, starting.result()
            )
        except Exception as exc:  # reported by its own test
            results["kafka-broker-restart"] = exc
    finally:
        asyncio.run(broker.stop())
    return results


def _snapshot(runs: dict[str, Snapshot | BaseException], name: str) -> Snapshot:
    result = runs[name]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture(scope="module")
def clean(runs: dict[str, Snapshot | BaseException]) -> Snapshot:
    return _snapshot(runs, "clean")


def test_clean_run(clean: Snapshot) -> None:
    """The baseline itself: both sessions complete, analysed end to end, with cues."""
    assert [(s["session_id"], s["media_seconds"], s["end_reason"]) for s in clean["sessions"]] == [
        ("drill-b", 14, "completed"),
        ("drill-ramp", 20, "completed"),
    ]
    assert _tiles(clean) == {
        "drill-b": [(0, 8), (8, 11), (11, 14)],
        "drill-ramp": [(0, 8), (8, 11), (11, 14), (14, 17), (17, 20)],
    }
    assert {u["reason"] for u in clean["usage"]} == {"analysed"}
    assert clean["reanalysed"] == []
    assert {s["session_id"]: s["reanalysed_s"] for s in clean["summary_reanalysed"]} == {
        "drill-b": 0,
        "drill-ramp": 0,
    }
    assert [
        (c["session_id"], c["rule"], c["media_start_s"], c["media_end_s"]) for c in clean["cues"]
    ] == [
        ("drill-b", "hesitation-burst", 0, 11),
        ("drill-b", "low-energy", 8, 14),
    ]
    assert [
        (s["session_id"], s["signals"], s["billable_s"], s["cues"])
        for s in clean["session_summaries"]
    ] == [("drill-b", 4, 14, 2), ("drill-ramp", 4, 20, 0)]
    assert [
        (r["session_id"], r["signal_type"], r["start_s"], r["end_s"], r["state"], r["updates"])
        for r in clean["signal_intervals"]
    ] == [
        ("drill-b", "confusion", 0, 14, "closed", 1),
        ("drill-b", "disengagement", 0, 14, "closed", 1),
        ("drill-b", "hesitation", 0, 14, "closed", 1),
        ("drill-b", "uncertainty", 0, 14, "closed", 1),
        ("drill-ramp", "engagement", 0, 20, "closed", 4),
        ("drill-ramp", "frustration", 6, 20, "closed", 2),
        ("drill-ramp", "interest", 0, 20, "closed", 4),
        ("drill-ramp", "stress", 0, 20, "closed", 4),
    ]
    # one connection per session, and it carried every interval
    assert {(r["incarnation"], r["connections"]) for r in clean["interval_connections"]} == {(0, 1)}


@pytest.mark.parametrize(
    ("name", "reconnects"),
    [
        pytest.param("kill-9-session-worker", True, id="kill-9-session-worker"),
        pytest.param("kill-9-sink", False, id="kill-9-sink"),
        pytest.param("kill-9-cues", False, id="kill-9-cues"),
        pytest.param("kafka-broker-restart", False, id="kafka-broker-restart"),
        pytest.param("simulator-disconnects", True, id="simulator-disconnects"),
        pytest.param("ih1003-burst", False, id="ih1003-burst"),
    ],
)
def test_drill(
    runs: dict[str, Snapshot | BaseException], clean: Snapshot, name: str, reconnects: bool
) -> None:
    """After recovery: the clean run's analytics exactly; usage tiles the media."""
    snap = _snapshot(runs, name)
    _assert_same_analytics(snap, clean)
    if not reconnects:
        # every interval carried by the one connection that carried it in the clean run
        assert snap["interval_connections"] == clean["interval_connections"]
        return
    # the drill moved drill-ramp to a new Inter-1 connection mid-session, while signals
    # detected at 0 s were active: the view joined their events from both connections into
    # the clean run's single interval (above). Which connection's copy of a window published
    # twice (the dead connection's last, possibly cut window, under the same ids) the tables
    # keep is not fixed, so the carrying connection is all this checks: not the first only.
    carriers = {
        (r["incarnation"], r["connections"])
        for r in snap["interval_connections"]
        if r["session_id"] == "drill-ramp"
    }
    assert any(incarnation >= 1 or n >= 2 for incarnation, n in carriers), carriers
