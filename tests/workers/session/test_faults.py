"""Simulator faults through the worker: retried close codes, never-retried ones, unknown
values; poison chunks go to the dead-letter topic while other sessions go on."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from interhumanai import InterhumanClient
from prometheus_client import REGISTRY
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    WorkerFactory,
    ended,
    fixture_chunks,
    started_record,
    usage_done,
    usage_tiles,
    worker_settings,
)
from sim_helpers import CLIP_A, instant_config

from chunks import VideoChunk
from schemas.codec import get_codec
from simulator.server import Simulator
from workers.session.outbox import WorkerTopics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CLIP = fixture_chunks(CLIP_A)


async def _run_session(
    topics: WorkerTopics, sid: str, *, failed: bool
) -> tuple[TopicReader, TopicReader, TopicReader]:
    events = await TopicReader(topics.events).start()
    usage = await TopicReader(topics.usage).start()
    letters = await TopicReader(topics.dead_letter).start()
    async with ChunkPublisher(topics.chunks) as publisher:
        await publisher.session(sid, CLIP, pause_s=0.05)
    try:
        if failed:
            await letters.until(lambda r: bool(r.of(sid)), within_s=60, what="a dead letter")
        else:
            await events.until(lambda r: ended(r.of(sid)), within_s=60, what="session.ended")
        await usage_done(usage, sid, CLIP.duration_s)
        await events.drain()
        await letters.drain()
    finally:
        for reader in (events, usage, letters):
            await reader.stop()
    return events, usage, letters


def _refusals() -> float:
    value = REGISTRY.get_sample_value(
        "inter1_worker_reconnects_total", {"cause": "try_again_later"}
    )
    return value or 0.0


def _readies(events: TopicReader, sid: str) -> list[int]:
    return sorted(e["incarnation"] for e in events.of(sid) if e["event_type"] == "session.ready")


@pytest.mark.parametrize(
    ("key", "changes", "error_code", "connections"),
    [
        pytest.param("bad-key", {}, "401", 0, id="401-bad-key"),
        pytest.param("sim-key-noscope", {}, "ih2003", 0, id="4003-no-scope"),
        pytest.param(
            "sim-key",
            {"api_version": "v2", "model": "no-such-model"},
            "ih4005",
            0,
            id="1008-bad-model",
        ),
        pytest.param("sim-fault:close=1011@3", {}, "ih1001", 3, id="1011-retried"),
        pytest.param("sim-fault:drop@3", {}, "1006", 3, id="1006-retried"),
    ],
)
async def test_close_codes(  # noqa: PLR0917 - parametrized
    worker_topics: WorkerTopics,
    simulator: Simulator,
    workers: WorkerFactory,
    key: str,
    changes: dict[str, Any],
    error_code: str,
    connections: int,
) -> None:
    settings = worker_settings(
        reconnect_attempts=2, **{k: v for k, v in changes.items() if k == "model"}
    )
    await workers(
        worker_topics,
        simulator.http_url,
        api_key=key,
        settings=settings,
        api_version=changes.get("api_version", "v1"),
    )
    sid = f"fault-{uuid.uuid4().hex[:6]}"
    events, usage, letters = await _run_session(worker_topics, sid, failed=True)
    # Retried codes: a new connection (new container stream) per attempt, until exhausted;
    # the others: no session.ready at all, never retried.
    assert _readies(events, sid) == list(range(connections))
    [letter] = letters.of(sid)
    assert letter["error_type"] == "SessionFailedError"
    assert letter["error_code"] == error_code
    assert letter["stage"] == "session-worker"
    verdict = "retries exhausted" if connections else "never retried"
    assert verdict in letter["error_message"]
    tiles = usage_tiles(usage.of(sid), CLIP.duration_s)
    assert tiles[-1][2] == "session_error"
    assert {reason for _, _, reason in tiles} <= {"analysed", "session_error"}
    assert not ended(events.of(sid))


async def test_1013_is_retried_until_capacity_frees(
    worker_topics: WorkerTopics, workers: WorkerFactory
) -> None:
    base = instant_config()
    sim = Simulator(dataclasses.replace(base, load=dataclasses.replace(base.load, capacity=1)))
    await sim.start()
    try:
        blocker = InterhumanClient(access_token="sim-key", base_url=sim.http_url).stream()
        await blocker.connect()
        await blocker.wait_for_session_ready()
        await workers(
            worker_topics,
            sim.http_url,
            settings=worker_settings(
                reconnect_attempts=50, reconnect_base_s=0.2, reconnect_max_s=0.2
            ),
        )
        sid = f"busy-{uuid.uuid4().hex[:6]}"
        letters = await TopicReader(worker_topics.dead_letter).start()
        async with ChunkPublisher(worker_topics.chunks) as publisher:
            await publisher.send(started_record(sid))
            await publisher.chunk(sid, CLIP.chunks[0])
        before = _refusals()
        deadline = time.monotonic() + 30
        while _refusals() <= before:  # the worker's connect is refused with 1013 at least once
            assert time.monotonic() < deadline, "the worker was never refused with 1013"
            await asyncio.sleep(0.05)
        await blocker.close()
        events = await TopicReader(worker_topics.events).start()
        usage = await TopicReader(worker_topics.usage).start()
        async with ChunkPublisher(worker_topics.chunks) as publisher:
            for chunk in CLIP.chunks[1:]:
                await publisher.chunk(sid, chunk)
            await publisher.end(sid, CLIP)
        await events.until(lambda r: ended(r.of(sid)), within_s=60, what="session.ended after 1013")
        await usage_done(usage, sid, CLIP.duration_s)
        assert letters.of(sid) == []
        assert _readies(events, sid) == [0]
        tiles = usage_tiles(usage.of(sid), CLIP.duration_s)
        assert {reason for _, _, reason in tiles} == {"analysed"}
        for reader in (events, usage, letters):
            await reader.stop()
    finally:
        await sim.stop()


async def test_unknown_values_and_kinds_pass_through(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    await workers(
        worker_topics, simulator.http_url, api_key="sim-fault:unknown_value@3,unknown_event@4"
    )
    sid = f"unknown-{uuid.uuid4().hex[:6]}"
    events, usage, letters = await _run_session(worker_topics, sid, failed=False)
    published = events.of(sid)
    signals = [e["payload"] for e in published if e["event_type"] == "signal.detected"]
    assert ("ai.interhuman.pipeline.inter1.SignalDetected", "sim_new_signal") in {
        (name, data["signal_type"]) for name, data in signals
    }
    states = {
        e["payload"][1]["state"] for e in published if e["event_type"] == "engagement.updated"
    }
    assert "sim_new_state" in states
    unknown = [e for e in published if e["event_type"] == "sim.unknown"]
    assert len(unknown) == 1
    assert unknown[0]["payload"][0] == "ai.interhuman.pipeline.inter1.UnknownEvent"
    assert '"injected unknown event kind"' in unknown[0]["payload"][1]["raw_json"]
    assert _readies(events, sid) == [0]
    assert letters.of(sid) == []
    assert {reason for _, _, reason in usage_tiles(usage.of(sid), CLIP.duration_s)} == {"analysed"}


async def test_poison_chunk_goes_to_dead_letter_and_other_sessions_go_on(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    await workers(worker_topics, simulator.http_url)
    healthy, poisoned = f"healthy-{uuid.uuid4().hex[:6]}", f"poisoned-{uuid.uuid4().hex[:6]}"
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    letters = await TopicReader(worker_topics.dead_letter).start()
    async with ChunkPublisher(worker_topics.chunks) as publisher:
        await publisher.send(started_record(healthy))
        await publisher.send(started_record(poisoned))
        await publisher.raw(poisoned, b"\xc3\x01not avro at all")
        cut = _chunk_value(poisoned, CLIP.chunks[0].payload)[:-40]  # ends inside the payload
        await publisher.raw(poisoned, cut)
        for chunk in CLIP.chunks:
            await publisher.chunk(healthy, chunk)
            if chunk.seq == 5:  # part 0 of 2, then the next chunk: part 1 never comes
                half = len(chunk.payload) // 2
                await publisher.send(
                    VideoChunk(
                        session_id=poisoned,
                        seq=5,
                        media_start_s=chunk.media_start_s,
                        media_duration_s=chunk.media_duration_s,
                        keyframe_start=True,
                        payload=chunk.payload[:half],
                        produced_at=chunk_time(),
                        part_index=0,
                        part_count=2,
                    )
                )
            else:
                await publisher.chunk(poisoned, chunk)
        await publisher.end(healthy, CLIP)
        await publisher.end(poisoned, CLIP)
    try:
        await events.until(
            lambda r: ended(r.of(healthy)) and ended(r.of(poisoned)),
            within_s=60,
            what="session.ended of both sessions",
        )
        await letters.until(
            lambda r: len(r.of(poisoned)) >= 3, within_s=30, what="three dead letters"
        )
        await usage.until(
            lambda r: all(
                r.of(s) and max(u["media_end_s"] for u in r.of(s)) >= CLIP.duration_s
                for s in (healthy, poisoned)
            ),
            within_s=30,
            what="usage of both sessions",
        )
    finally:
        for reader in (events, usage, letters):
            await reader.stop()
    kinds = sorted(d["error_type"] for d in letters.of(poisoned))
    assert kinds == ["MissingPartError", "TruncatedRecordError", "UnknownFingerprintError"]
    by_kind = {d["error_type"]: d for d in letters.of(poisoned)}
    undecodable = by_kind["UnknownFingerprintError"]
    assert undecodable["value"] == b"\xc3\x01not avro at all"
    assert undecodable["source_topic"] == worker_topics.chunks
    # the wire reader leaves a damaged chunk record to the codec: same error as before it
    assert by_kind["TruncatedRecordError"]["value"] == cut
    assert by_kind["TruncatedRecordError"]["error_message"] == (
        f"VideoChunk record of {len(cut)} bytes ends before its body is complete; the value "
        "was cut off or is not Avro"
    )
    assert letters.of(healthy) == []
    healthy_tiles = usage_tiles(usage.of(healthy), CLIP.duration_s)
    assert {reason for _, _, reason in healthy_tiles} == {"analysed"}
    poisoned_tiles = usage_tiles(usage.of(poisoned), CLIP.duration_s)
    lost = [(a, b) for a, b, reason in poisoned_tiles if reason == "poison_chunk"]
    five = CLIP.chunks[5]
    assert lost == [(five.media_start_s, round(five.media_start_s + five.media_duration_s, 3))]


def _chunk_value(sid: str, payload: bytes) -> bytes:
    record = VideoChunk(
        session_id=sid,
        seq=0,
        media_start_s=0.0,
        media_duration_s=1.0,
        keyframe_start=True,
        payload=payload,
        produced_at=chunk_time(),
    )
    return get_codec().encode(record.AVRO_NAME, record.to_avro())


def chunk_time() -> datetime:
    return datetime.now(UTC)
