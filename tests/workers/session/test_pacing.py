"""Recorded sessions paced at ``PIPELINE_WORKER_RECORDED_PACE`` x real time against a
simulator whose model sheds windows that queue up: paced, nothing is dropped; unpaced (the
whole recording at once), windows are shed and show as ``coverage.dropped``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    WorkerFactory,
    fixture_chunks,
    make_topics,
    session_done,
    usage_tiles,
    worker_settings,
)
from sim_helpers import CLIP_RAMP, instant_config

from simulator.config import AnalysisConfig, LoadConfig
from simulator.server import Simulator
from workers.session.outbox import WorkerTopics

pytestmark = pytest.mark.kafka


@pytest.fixture
async def shedding_simulator() -> AsyncIterator[Simulator]:
    """A slow model (0.1 s per media second a window owns: the first window keeps it
    0.8 s) whose queue holds one window's media (8 s; more is shed), no lag limit. Media
    read box by box (``decode="boxes"``): nothing is decoded, so when each frame's windows
    are ready does not depend on how fast this machine decodes."""
    load = LoadConfig(processing_ratio=0.1, queue_windows=1, max_lag_s=3600.0)
    sim = Simulator(instant_config(load=load, analysis=AnalysisConfig(decode="boxes")))
    await sim.start()
    yield sim
    await sim.stop()


async def _run(
    topics: WorkerTopics, sim: Simulator, workers: WorkerFactory, pace: float
) -> tuple[list[dict], list[dict]]:
    await workers(topics, sim.http_url, settings=worker_settings(recorded_pace=pace))
    clip = fixture_chunks(CLIP_RAMP)
    sid = f"pace-{pace:g}-{uuid.uuid4().hex[:6]}"
    async with ChunkPublisher(topics.chunks) as publisher:
        await publisher.session(sid, clip)  # the whole recording at once
    events = await TopicReader(topics.events).start()
    usage = await TopicReader(topics.usage).start()
    try:
        await session_done(events, usage, sid, clip.duration_s)
        await events.drain()
    finally:
        await events.stop()
        await usage.stop()
    usage_tiles(usage.of(sid), clip.duration_s)
    return events.of(sid), usage.of(sid)


async def test_paced_recording_is_not_shed_unpaced_is(
    worker_topics: WorkerTopics,
    kafka_topic: Callable[..., str],
    shedding_simulator: Simulator,
    workers: WorkerFactory,
) -> None:
    paced_events, paced_usage = await _run(worker_topics, shedding_simulator, workers, 3.0)
    assert [e["payload"][1] for e in paced_events if e["event_type"] == "coverage.dropped"] == []
    assert {u["reason"] for u in paced_usage} == {"analysed"}
    assert sum(u["analysed_s"] for u in paced_usage) == pytest.approx(
        fixture_chunks(CLIP_RAMP).duration_s
    )

    events, usage = await _run(make_topics(kafka_topic), shedding_simulator, workers, 0.0)
    dropped = [e for e in events if e["event_type"] == "coverage.dropped"]
    assert dropped, "the unpaced recording was not shed"
    shed = sum(u["dropped_s"] for u in usage if u["reason"] == "backpressure")
    assert shed > 0
