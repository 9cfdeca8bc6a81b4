"""Kill -9 drills at the gap between a publish's records and its progress records
(``PIPELINE_WORKER_CRASH_AT=records_acked@<n>``): the events are durable, the session state
describing them is not. The new owner reads back what was published beyond the state, so
no connection number is used twice and no complete window is published again; the dead
connection's last window, which the crash may have cut, is published again under the same
event ids."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    assert_windows_once,
    fixture_chunks,
    session_done,
    started_record,
    state_records,
    usage_tiles,
    windows,
)
from sim_helpers import CLIP_RAMP
from worker_process import WorkerProcess, create_prefixed_topics, delete_topics, worker_processes

from simulator.server import Simulator
from workers.session.faults import CRASH_EXIT_CODE
from workers.session.outbox import WorkerTopics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _window_starts(events: list[dict[str, Any]]) -> dict[int, list[float]]:
    """Incarnation -> starts of the windows it published, every record counted (no dedup)."""
    starts: dict[int, list[float]] = defaultdict(list)
    for event in events:
        if event["event_type"] == "conversation_quality.updated":
            entry = event["payload"][1]["timeline"][-1]
            starts[event["incarnation"]].append(round(event["media_offset_s"] + entry["start"], 3))
    return starts


async def _crash_then_resume(
    tmp_path: Path,
    simulator: Simulator,
    topics: WorkerTopics,
    sid: str,
    crash_after_events: int,
    *,
    announce: bool,
) -> tuple[TopicReader, TopicReader, WorkerProcess, list[dict[str, Any]]]:
    """Run a worker that crashes at the point, then one that finishes the session; the
    events, the usage, the second worker and the session states the first one left."""
    clip = fixture_chunks(CLIP_RAMP)
    events = await TopicReader(topics.events).start()
    usage = await TopicReader(topics.usage).start()
    try:
        second, dead_states = await _run_workers(
            tmp_path,
            simulator,
            topics,
            sid,
            crash_after_events,
            announce=announce,
            events=events,
            usage=usage,
        )
    finally:
        await events.stop()
        await usage.stop()
    # deduplicated by event_id: a window published by both connections counts once only
    # when the new one gave its events the same ids
    found = windows(events.of(sid))
    assert_windows_once(found, clip.duration_s)
    tiles = usage_tiles(usage.of(sid), clip.duration_s)
    assert {reason for _, _, reason in tiles} == {"analysed"}
    return events, usage, second, dead_states


async def _run_workers(
    tmp_path: Path,
    simulator: Simulator,
    topics: WorkerTopics,
    sid: str,
    crash_after_events: int,
    *,
    announce: bool,
    events: TopicReader,
    usage: TopicReader,
) -> tuple[WorkerProcess, list[dict[str, Any]]]:
    clip = fixture_chunks(CLIP_RAMP)
    prefix = topics.chunks.removesuffix("inter1.video-chunks")
    with worker_processes(tmp_path, prefix, simulator.http_url) as start:
        first = start(PIPELINE_WORKER_CRASH_AT=f"records_acked@{crash_after_events}")
        await first.wait_started()
        async with ChunkPublisher(topics.chunks) as publisher:
            if announce:
                await publisher.send(started_record(sid))
            left = await publisher.paced_until(
                sid,
                clip.chunks,
                events,
                lambda _r: first.process is not None and first.process.poll() is not None,
                what="the crash at the fault-injection point",
            )
            assert await first.exited() == CRASH_EXIT_CODE, first.output()[-3000:]
            dead_states = [s for s in await state_records(topics.session_state, sid) if s]
            for chunk in left:
                await publisher.chunk(sid, chunk)
            await publisher.end(sid, clip)
        second = start()
        try:
            await session_done(events, usage, sid, clip.duration_s, within_s=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{second.output()[-4000:]}") from None
        assert await second.terminate() == 0
    return second, dead_states


async def test_crash_after_events_acked_before_state_recovers_the_watermark(
    tmp_path: Path, simulator: Simulator, kafka_bootstrap: str
) -> None:
    topics = await create_prefixed_topics(f"rbwm{uuid.uuid4().hex[:8]}.")
    sid = f"readback-wm-{uuid.uuid4().hex[:6]}"
    try:
        events, usage, second, dead_states = await _crash_then_resume(
            tmp_path, simulator, topics, sid, 12, announce=True
        )
        published = events.of(sid)
        starts = _window_starts(published)
        assert sorted(starts) == [0, 1], f"incarnations {sorted(starts)}"
        # The scenario: the dead worker's last durable state is behind windows it published.
        last_watermark = dead_states[-1]["watermark_s"]
        assert last_watermark is not None
        assert max(starts[0]) > last_watermark, (
            f"the crash left no window beyond the state ({last_watermark}): {starts}"
        )
        # The new connection publishes from the dead one's last window on: that window again
        # (when its quality entry was out before the crash) or the next; nothing earlier.
        # Counting every record: a republished window shows under both incarnations.
        last = max(starts[0])
        assert min(starts[1]) in (last, last + 3.0), starts
        assert set(starts[0]) & set(starts[1]) <= {last}, starts
        assert len(starts[0]) == len(set(starts[0])), starts
        assert "session_progress_read_back" in second.output()
        reanalysed = [u for u in usage.of(sid) if u["reanalysed_s"] > 0]
        assert [(u["reason"], u["incarnation"]) for u in reanalysed] == [("failover", 1)]
    finally:
        await delete_topics(topics)


async def test_crash_before_the_first_state_write_never_reuses_an_incarnation(
    tmp_path: Path, simulator: Simulator, kafka_bootstrap: str
) -> None:
    topics = await create_prefixed_topics(f"rbinc{uuid.uuid4().hex[:8]}.")
    sid = f"readback-inc-{uuid.uuid4().hex[:6]}"
    try:
        events, _usage, second, _states_left = await _crash_then_resume(
            tmp_path, simulator, topics, sid, 1, announce=False
        )
        readies = [e for e in events.of(sid) if e["event_type"] == "session.ready"]
        # Every record counted: one session.ready per connection, each its own id.
        assert sorted(e["incarnation"] for e in readies) == [0, 1]
        assert len({e["event_id"] for e in readies}) == 2
        assert "session_progress_read_back" in second.output()
    finally:
        await delete_topics(topics)
