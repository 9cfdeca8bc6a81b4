"""Operations: HTTP endpoints and metrics, SIGTERM drain and hand-over, live shedding."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client import Histogram
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    WorkerFactory,
    assert_windows_once,
    ended,
    fixture_chunks,
    session_done,
    started_record,
    state_records,
    usage_done,
    usage_tiles,
    windows,
    worker_settings,
)
from sim_helpers import CLIP_A, CLIP_RAMP
from structlog.testing import capture_logs
from worker_process import create_prefixed_topics, delete_topics, worker_processes

from simulator.config import SessionLimits
from simulator.server import Simulator
from workers.session import metrics
from workers.session.outbox import WorkerTopics
from workers.session.segmenter import ChunkRef, Segmenter, SegmentLimits
from workers.session.state_store import read_progress

pytestmark = pytest.mark.kafka
T = TypeVar("T")


async def test_health_readiness_and_metrics(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    worker = await workers(worker_topics, simulator.http_url)
    base = f"http://127.0.0.1:{worker.runtime.http_port}"
    clip = fixture_chunks(CLIP_A)
    sid = f"ops-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/healthz")).status_code == 200
        deadline = time.monotonic() + 30
        while (await http.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "/readyz never became ready (no assignment)"
        events = await TopicReader(worker_topics.events).start()
        async with ChunkPublisher(worker_topics.chunks) as publisher:
            await publisher.session(sid, clip)
        await events.until(lambda r: ended(r.of(sid)), within_s=60, what="session.ended")
        await events.stop()
        text = (await http.get("/metrics")).text
        assert (await http.get("/nowhere")).status_code == 404
    for name in (
        "inter1_worker_active_sessions",
        "inter1_worker_events_published_total",
        "inter1_worker_media_bytes_sent_total",
        "inter1_worker_session_open_seconds_count",
        "inter1_worker_chunk_first_event_seconds_bucket",
        "inter1_worker_consumer_lag_records",
        "inter1_worker_shed_seconds_total",
    ):
        assert name in text, f"{name} missing from /metrics"


def _loop_lines(output: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in output.splitlines() if '"event_loop"' in line]
    return [{"loop": e["loop"], "requested": e["requested"]} for e in lines]


async def test_sigterm_drains_and_the_next_worker_resumes(
    tmp_path: Path, simulator: Simulator, kafka_bootstrap: str
) -> None:
    prefix = f"term{uuid.uuid4().hex[:8]}."
    topics = await create_prefixed_topics(prefix)
    clip = fixture_chunks(CLIP_RAMP)
    sid = f"term-{uuid.uuid4().hex[:6]}"
    events = await TopicReader(topics.events).start()
    usage = await TopicReader(topics.usage).start()
    try:
        with worker_processes(tmp_path, prefix, simulator.http_url) as start:
            first = start()
            await first.wait_started()
            async with ChunkPublisher(topics.chunks) as publisher:
                await publisher.send(started_record(sid))
                left = await publisher.paced_until(
                    sid,
                    clip.chunks,
                    events,
                    lambda r: (
                        sum(e["event_type"] == "conversation_quality.updated" for e in r.of(sid))
                        >= 2
                    ),
                    what="two windows",
                )
                assert left, "the whole clip was sent before two windows came back"
                assert await first.terminate(timeout_s=60) == 0, first.output()[-3000:]
                await events.drain()
                # the connection was closed gracefully: its tail analysed, session.ended
                assert ended([e for e in events.of(sid) if e["incarnation"] == 0])
                for chunk in left:
                    await publisher.chunk(sid, chunk)
                await publisher.end(sid, clip)
            second = start(PIPELINE_WORKER_EVENT_LOOP="asyncio")
            await events.until(
                lambda r: ended([e for e in r.of(sid) if e["incarnation"] >= 1]),
                within_s=60,
                what="session.ended of the second worker",
            )
            await usage_done(usage, sid, clip.duration_s)
            assert await second.terminate() == 0
        assert_windows_once(windows(events.of(sid)), clip.duration_s)
        assert {r for _, _, r in usage_tiles(usage.of(sid), clip.duration_s)} == {"analysed"}
        assert "session_worker_stopped" in first.output()
        # the default loop is uvloop (SIGTERM handled on it); the setting selects asyncio
        assert _loop_lines(first.output()) == [{"loop": "uvloop", "requested": "uvloop"}]
        assert _loop_lines(second.output()) == [{"loop": "asyncio", "requested": "asyncio"}]
    finally:
        await events.stop()
        await usage.stop()
        await delete_topics(topics)


async def test_live_chunks_lagging_too_far_are_shed(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    await workers(worker_topics, simulator.http_url, settings=worker_settings(live_max_lag_s=30.0))
    clip = fixture_chunks(CLIP_A)
    sid = f"live-{uuid.uuid4().hex[:6]}"
    stale = datetime.now(UTC) - timedelta(minutes=5)
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        await publisher.send(started_record(sid, live=True))
        for chunk in clip.chunks:
            old = chunk.seq in (6, 7)
            await publisher.chunk(sid, chunk, produced_at=stale if old else None)
        await publisher.end(sid, clip)
    try:
        await session_done(events, usage, sid, clip.duration_s)
    finally:
        await events.stop()
        await usage.stop()
    tiles = usage_tiles(usage.of(sid), clip.duration_s)
    shed: list[tuple[float, float]] = []
    for a, b, reason in tiles:  # the service also reports the gap (stream_skip): records split
        if reason == "worker_shed":
            shed[-1:] = [(shed[-1][0], b)] if shed and shed[-1][1] == a else [*shed[-1:], (a, b)]
    six, seven = clip.chunks[6], clip.chunks[7]
    assert shed == [(six.media_start_s, round(seven.media_start_s + seven.media_duration_s, 3))]


def _observed(histogram: Histogram) -> float:
    """How many observations ``histogram`` holds (all of this process)."""
    return next(
        sample.value
        for family in histogram.collect()
        for sample in family.samples
        if sample.name.endswith("_count")
    )


async def test_events_publish_when_they_wait_and_each_latency_leg_is_timed(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    # progress and checkpoints an hour apart: only a waiting record can trigger a publish
    slow = worker_settings(publish_interval_s=3600.0, commit_interval_s=3600.0)
    await workers(worker_topics, simulator.http_url, settings=slow)
    clip = fixture_chunks(CLIP_A)
    sid = f"legs-{uuid.uuid4().hex[:6]}"
    legs = (
        metrics.CHUNK_CONSUME_LATENCY,
        metrics.FRAME_SEND_LATENCY,
        metrics.FRAME_RELAY_LATENCY,
        metrics.FRAME_WS_SEND_LATENCY,
        metrics.EVENT_PUBLISH_LATENCY,
    )
    before = {leg: _observed(leg) for leg in legs}
    events = await TopicReader(worker_topics.events).start()
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        await publisher.session(sid, clip, live=True)
    try:
        await events.until(lambda r: ended(r.of(sid)), within_s=60, what="session.ended")
    finally:
        await events.stop()
    published = len(events.of(sid))
    await _until(
        lambda: (
            _observed(metrics.EVENT_PUBLISH_LATENCY) - before[metrics.EVENT_PUBLISH_LATENCY]
            == published
        ),
        f"one publish-latency observation per event ({published})",
    )
    # the frames a live connection sends: complete ones as their last chunk comes, the rest
    # at the end of the video session (timed from the SessionEnded record)
    segmenter = Segmenter(SegmentLimits(min_duration_s=SessionLimits().min_segment_duration_s))
    refs = [
        ChunkRef(
            c.seq,
            c.seq,
            c.media_start_s,
            c.media_start_s + c.media_duration_s,
            c.payload,
            datetime.now(UTC),
        )
        for c in clip.chunks
    ]
    by_chunk = sum(len(segmenter.add(ref)) for ref in refs)
    at_end = len(segmenter.flush())
    assert by_chunk >= 2
    counted = {leg: _observed(leg) - before[leg] for leg in legs}
    assert counted == {
        metrics.CHUNK_CONSUME_LATENCY: len(clip.chunks),
        metrics.FRAME_SEND_LATENCY: by_chunk,  # end to end: from a chunk's produced_at
        metrics.FRAME_RELAY_LATENCY: by_chunk + at_end,
        metrics.FRAME_WS_SEND_LATENCY: by_chunk + at_end,
        metrics.EVENT_PUBLISH_LATENCY: published,
    }


async def _until(check: Callable[[], bool], what: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"{what} within {within_s:g} s"
        await asyncio.sleep(0.05)


async def _until_async(
    fetch: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str, within_s: float = 30.0
) -> T:
    deadline = time.monotonic() + within_s
    while not check(found := await fetch()):
        assert time.monotonic() < deadline, f"{what} within {within_s:g} s: {found}"
        await asyncio.sleep(0.2)
    return found


async def test_ended_session_ids_are_forgotten_once_committed_past(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    worker = await workers(worker_topics, simulator.http_url)
    handler = worker.runtime.handler
    clip = fixture_chunks(CLIP_A)
    sids = [f"forget-{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        for sid in sids:
            await publisher.session(sid, clip)
        await _until(lambda: set(sids) <= handler.finished_ids, "both ended sessions remembered")
        # Later traffic drives checkpoints; two commits later the ids are forgotten.
        other = f"forget-next-{uuid.uuid4().hex[:6]}"
        await publisher.send(started_record(other))
        for chunk in clip.chunks:  # apart, so each lands in its own checkpoint
            if not set(sids) & handler.finished_ids:
                break
            await publisher.chunk(other, chunk)
            await asyncio.sleep(0.5)
        assert not set(sids) & handler.finished_ids, "the ended ids were not forgotten"
        assert handler.finished == 2
        assert not set(sids) & set(handler.sessions)
        # ... and their progress is tombstoned (written with the next publish): a closed
        # state, then the tombstone as the last record; no owner restores them again.
        for sid in sids:
            states = await _until_async(
                lambda sid=sid: state_records(worker_topics.session_state, sid),
                lambda found: bool(found) and found[-1] is None,
                f"a tombstone for {sid}",
            )
            assert states.count(None) == 1, states
            closed = states[-2]
            assert closed is not None, states
            assert closed["status"] == "closed", closed
        restored = await read_progress(worker_topics.session_state, range(2))
        assert not set(sids) & set(restored), sorted(restored)
        await publisher.end(other, clip)


async def test_a_full_session_queue_pauses_its_partition_until_it_drains(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    # a recording paced at 4x real time, its chunks all fetched at once, 2 queued at most
    paced = worker_settings(session_queue_chunks=2, recorded_pace=4.0)
    await workers(worker_topics, simulator.http_url, settings=paced)
    clip = fixture_chunks(CLIP_A)
    sid = f"full-{uuid.uuid4().hex[:6]}"
    events = await TopicReader(worker_topics.events).start()
    with capture_logs() as logs:
        async with ChunkPublisher(worker_topics.chunks) as publisher:
            await publisher.session(sid, clip)
        try:
            await events.until(lambda r: ended(r.of(sid)), within_s=60, what="session.ended")
        finally:
            await events.stop()
    moves = [
        (log["event"], log["partition"])
        for log in logs
        if log["event"] in ("partition_paused", "partition_resumed")
    ]
    assert moves, "the session's full queue never paused its partition"
    assert moves[0][0] == "partition_paused"
    assert moves[-1][0] == "partition_resumed"  # resumed once the queue drained
    assert {p for _event, p in moves} == {moves[0][1]}  # only the session's partition
    assert_windows_once(windows(events.of(sid)), clip.duration_s)


async def test_fetches_that_gather_chunks_still_relay_every_session(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    """The live tuning (``fetch_max_wait_ms`` 50, ``fetch_min_bytes`` 2 MiB) reaches the
    consumer, and a live session whose chunks never fill a fetch is relayed whole."""
    settings = worker_settings(fetch_max_wait_ms=50, fetch_min_bytes=2 * 1024 * 1024)
    worker = await workers(worker_topics, simulator.http_url, settings=settings)
    fetcher = worker.runtime.loop.consumer._fetcher
    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (50, 2 * 1024 * 1024)
    clip = fixture_chunks(CLIP_A)
    assert sum(len(c.payload) for c in clip.chunks) < 2 * 1024 * 1024
    sid = f"fetch-{uuid.uuid4().hex[:6]}"
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        await publisher.session(sid, clip, live=True)
    try:
        await session_done(events, usage, sid, clip.duration_s)
    finally:
        await events.stop()
        await usage.stop()
    assert_windows_once(windows(events.of(sid)), clip.duration_s)
    assert {reason for _, _, reason in usage_tiles(usage.of(sid), clip.duration_s)} == {"analysed"}
