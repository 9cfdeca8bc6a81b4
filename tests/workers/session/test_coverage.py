"""Media the service reports as not analysed (``coverage.dropped``) is accounted by why:
a gap in the stream the worker sent (``stream_skip``) versus media the service received and
shed (``backpressure``), so billing reconciliation can name the cause."""

from __future__ import annotations

import uuid

import pytest
from session_helpers import (
    ChunkPublisher,
    TopicReader,
    WorkerFactory,
    fixture_chunks,
    session_done,
    started_record,
    usage_tiles,
)
from sim_helpers import CLIP_A

from simulator.server import Simulator
from workers.session.outbox import WorkerTopics

pytestmark = pytest.mark.kafka


async def test_a_chunk_missing_from_the_stream_is_a_stream_skip(
    worker_topics: WorkerTopics, simulator: Simulator, workers: WorkerFactory
) -> None:
    await workers(worker_topics, simulator.http_url)
    clip = fixture_chunks(CLIP_A)
    missing = clip.chunks[5:7]  # 1.9 s: over the service's 1 s stream-skip threshold
    sid = f"skip-{uuid.uuid4().hex[:6]}"
    events = await TopicReader(worker_topics.events).start()
    usage = await TopicReader(worker_topics.usage).start()
    try:
        async with ChunkPublisher(worker_topics.chunks) as publisher:
            await publisher.send(started_record(sid))
            for chunk in clip.chunks:
                if chunk not in missing:  # the producer lost them: a hole in the stream
                    await publisher.chunk(sid, chunk)
            await publisher.end(sid, clip)
        await session_done(events, usage, sid, clip.duration_s)
    finally:
        await events.stop()
        await usage.stop()
    tiles = usage_tiles(usage.of(sid), clip.duration_s)
    not_analysed = [(a, b, reason) for a, b, reason in tiles if reason != "analysed"]
    # From the first missing chunk's start to where the service's media resumes: the first
    # packet of the chunk after the hole (audio at 6.856 s; the chunk's range starts at its
    # keyframe, 7.0 s). Fixture bytes: the same on every machine.
    first, after = missing[0], clip.chunks[7]
    assert after.media_start_s == 7.0
    assert not_analysed == [(first.media_start_s, 6.856, "stream_skip")], tiles
