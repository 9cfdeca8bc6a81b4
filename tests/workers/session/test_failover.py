"""Drills: kill -9 the worker process mid-session and restart it; two workers in a group
with a rebalance mid-session. Each time the events, deduplicated by event_id, hold every
window once by media time and usage accounts every second once (re-analysis apart)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    WorkerFactory,
    assert_windows_once,
    ended,
    fixture_chunks,
    record_summary,
    started_record,
    usage_tiles,
    windows,
    worker_settings,
)
from sim_helpers import CLIP_RAMP
from worker_process import create_prefixed_topics, delete_topics, worker_processes

from simulator.server import Simulator
from workers.session.outbox import WorkerTopics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _window_events(reader: TopicReader, sid: str) -> int:
    return sum(e["event_type"] == "conversation_quality.updated" for e in reader.of(sid))


async def _finish(
    reader: TopicReader, usage: TopicReader, sid: str, end_s: float, what: str
) -> None:
    await reader.until(lambda r: ended(r.of(sid)), within_s=90, what=f"session.ended ({what})")
    await usage.until(
        lambda r: bool(r.of(sid)) and max(u["media_end_s"] for u in r.of(sid)) >= end_s,
        within_s=30,
        what=f"usage up to the media end ({what})",
    )


def _check(
    events: TopicReader, usage: TopicReader, sid: str, end_s: float, *, overlap: bool = True
) -> set[int]:
    published = events.of(sid)
    assert_windows_once(windows(published), end_s)
    tiles = usage_tiles(usage.of(sid), end_s)
    assert {reason for _, _, reason in tiles} == {"analysed"}
    reanalysed = [u for u in usage.of(sid) if u["reanalysed_s"] > 0]
    incarnations = {e["incarnation"] for e in published}
    # Even killed before its progress named the connection, the dead one's number is read
    # back from its events: the new connection never reuses it.
    assert len(incarnations) >= 2, f"incarnations {incarnations}"
    assert bool(reanalysed) == overlap, f"re-analysed records: {reanalysed}"
    for record in reanalysed:
        assert record["reason"] == "failover"
        assert record["incarnation"] >= 1
        assert record["analysed_s"] == record["dropped_s"] == 0.0
    return incarnations


def _readies(reader: TopicReader, sid: str) -> int:
    return sum(e["event_type"] == "session.ready" for e in reader.of(sid))


@pytest.mark.parametrize(
    "windows_before_kill",
    [
        pytest.param(0, id="before-the-first-window"),
        pytest.param(3, id="mid-session"),
    ],
)
async def test_kill_9_and_restart(
    tmp_path: Path, simulator: Simulator, kafka_bootstrap: str, windows_before_kill: int
) -> None:
    prefix = f"drill{uuid.uuid4().hex[:8]}."
    topics = await create_prefixed_topics(prefix)
    clip = fixture_chunks(CLIP_RAMP)
    sid = f"kill9-{uuid.uuid4().hex[:6]}"
    events = await TopicReader(topics.events).start()
    usage = await TopicReader(topics.usage).start()
    try:
        with worker_processes(tmp_path, prefix, simulator.http_url) as start:
            first = start()
            await first.wait_started()
            async with ChunkPublisher(topics.chunks) as publisher:
                await publisher.send(started_record(sid))
                try:
                    left = await publisher.paced_until(
                        sid,
                        clip.chunks,
                        events,
                        lambda r: (
                            _window_events(r, sid) >= windows_before_kill and _readies(r, sid) >= 1
                        ),
                        what=f"{windows_before_kill} windows of the first worker",
                    )
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{first.output()[-4000:]}") from None
                first.kill9()
                for chunk in left:
                    await publisher.chunk(sid, chunk)
                await publisher.end(sid, clip)
            second = start()
            try:
                await _finish(events, usage, sid, clip.duration_s, "after the restart")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{second.output()[-4000:]}") from None
            assert await second.terminate() == 0
        incarnations = _check(events, usage, sid, clip.duration_s, overlap=windows_before_kill > 0)
        assert min(incarnations) == 0
        before = [
            record_summary(e)
            for e in sorted(events.of(sid), key=lambda e: e["event_seq"])
            if e["incarnation"] == 0 and e["event_type"] == "conversation_quality.updated"
        ]
        assert len(before) >= windows_before_kill
    finally:
        await events.stop()
        await usage.stop()
        await delete_topics(topics)


async def test_rebalance_mid_session(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    clip = fixture_chunks(CLIP_RAMP)
    group = f"rebalance-{uuid.uuid4().hex[:6]}"
    first = await workers(
        worker_topics, simulator.http_url, settings=worker_settings(group_id=group)
    )
    sids = [f"rebal-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    try:
        async with ChunkPublisher(worker_topics.chunks) as publisher:
            for sid in sids:
                await publisher.send(started_record(sid))
            rest = {}
            for sid in sids:
                rest[sid] = await publisher.paced_until(
                    sid,
                    clip.chunks,
                    events,
                    lambda r, sid=sid: _window_events(r, sid) >= 3,
                    what=f"three windows of {sid} from the first worker",
                )
            await workers(
                worker_topics, simulator.http_url, settings=worker_settings(group_id=group)
            )
            await events.until(
                lambda r: len({e["incarnation"] for sid in sids for e in r.of(sid)}) >= 2,
                within_s=60,
                what="a second incarnation after the rebalance",
            )
            for sid in sids:
                for chunk in rest[sid]:
                    await publisher.chunk(sid, chunk)
                await publisher.end(sid, clip)
        for sid in sids:
            await _finish(events, usage, sid, clip.duration_s, sid)
        moved = 0
        for sid in sids:
            published = events.of(sid)
            assert_windows_once(windows(published), clip.duration_s)
            tiles = usage_tiles(usage.of(sid), clip.duration_s)
            assert {reason for _, _, reason in tiles} == {"analysed"}
            if len({e["incarnation"] for e in published}) >= 2:
                moved += 1
                assert any(u["reanalysed_s"] > 0 for u in usage.of(sid))
        assert moved >= 1, "no session moved in the rebalance"
        assert first.runtime.loop.stats.records > 0
    finally:
        await events.stop()
        await usage.stop()
