"""A fixture clip through the chunk topic -> session worker -> events topic, on the real
broker and the in-process simulator: the same events as the clip fed to the simulator
directly, usage tiling the media."""

from __future__ import annotations

import uuid

import pytest
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    WorkerFactory,
    ended,
    fixture_chunks,
    record_summary,
    session_done,
    summary,
    usage_tiles,
    webm_fixture_chunks,
)
from sim_helpers import CLIP_A, CLIP_RAMP, CLIP_WEBM, Driver, segments

from simulator.server import Simulator
from workers.session.outbox import WorkerTopics

pytestmark = pytest.mark.kafka

INCLUDE = ["conversation_quality_overall", "conversation_quality_timeline"]


async def direct_run(sim: Simulator, stream: bytes) -> list[tuple[object, ...]]:
    run = await Driver(sim).run(
        segments(stream),  # >= 3 s frames, as v1 requires and as the worker sends
        configs=[{"include": INCLUDE, "goal_dimensions": []}],
    )
    return [
        summary(e.type, e.data.model_dump(mode="json"))
        for e in run.events
        if e.type not in ("session.closing", "session.ready", "session.updated")
    ]


async def test_clip_through_the_worker_gives_the_simulators_events(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    await workers(worker_topics, simulator.http_url)
    sessions = {
        f"relay-a-{uuid.uuid4().hex[:6]}": CLIP_A,
        f"relay-r-{uuid.uuid4().hex[:6]}": CLIP_RAMP,
    }
    clips = {sid: fixture_chunks(spec) for sid, spec in sessions.items()}
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        for sid, clip in clips.items():
            await publisher.session(sid, clip)
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    try:
        await events.until(
            lambda r: all(ended(r.of(sid)) for sid in clips), within_s=60, what="session.ended"
        )
        for sid, clip in clips.items():
            await usage.until(
                lambda r, sid=sid, clip=clip: (
                    bool(r.of(sid)) and max(u["media_end_s"] for u in r.of(sid)) >= clip.duration_s
                ),
                within_s=30,
                what=f"usage up to the media end of {sid}",
            )
        await events.drain()  # events placed at the connection's end follow session.ended
    finally:
        await events.stop()
        await usage.stop()
    for sid, clip in clips.items():
        published = sorted(events.of(sid), key=lambda e: (e["incarnation"], e["event_seq"]))
        assert [e["incarnation"] for e in published] == [0] * len(published)
        assert len({e["event_id"] for e in published}) == len(published)
        got = [
            record_summary(e)
            for e in published
            if e["event_type"] not in ("session.closing", "session.ready", "session.updated")
        ]
        expected = await direct_run(simulator, clip.stream)
        assert expected == got
        assert {e["event_type"] for e in published} >= {"session.ready", "session.updated"}
        tiles = usage_tiles(usage.of(sid), clip.duration_s)
        assert {reason for _, _, reason in tiles} == {"analysed"}
        assert sum(u["analysed_s"] for u in usage.of(sid)) == pytest.approx(clip.duration_s)


async def test_webm_clip_continues_one_stream_with_clusters_only(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    """Every chunk of a WebM session carries the init header; the connection gets it once
    (its Segment opened to unknown size) and clusters after it: the same events as the
    whole file fed to the simulator directly."""
    await workers(worker_topics, simulator.http_url)
    sid = f"relay-webm-{uuid.uuid4().hex[:6]}"
    clip = webm_fixture_chunks(CLIP_WEBM)
    assert [(c.media_start_s, c.media_duration_s) for c in clip.chunks] == [
        (0.0, 3.0),
        (3.0, 3.0),
        (6.0, 3.008),
    ]
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        await publisher.session(sid, clip)
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    try:
        await session_done(events, usage, sid, clip.duration_s)
        await events.drain()  # events placed at the connection's end follow session.ended
    finally:
        await events.stop()
        await usage.stop()
    published = sorted(events.of(sid), key=lambda e: e["event_seq"])
    assert {e["incarnation"] for e in published} == {0}
    errors = [e["payload"][1] for e in published if e["event_type"] == "error"]
    assert errors == []
    got = [
        record_summary(e)
        for e in published
        if e["event_type"] not in ("session.closing", "session.ready", "session.updated")
    ]
    assert got == await direct_run(simulator, clip.stream)
    assert sum(e["event_type"] == "conversation_quality.updated" for e in published) == 2
    tiles = usage_tiles(usage.of(sid), clip.duration_s)
    assert {reason for _, _, reason in tiles} == {"analysed"}
