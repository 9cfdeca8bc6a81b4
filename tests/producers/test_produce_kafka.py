"""Publishing through the real broker and reading the records back with the codec."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiokafka.admin import NewTopic
from kafka_helpers import consume_records

from deploy.topics import wait_for_topics
from producers.app import ProduceOptions, exit_code, produce
from producers.publisher import KafkaPublisher
from producers.reader import ReaderOptions
from producers.records import SessionMeta
from runtime.kafka import make_admin, make_consumer
from runtime.settings import load
from schemas.codec import get_codec

pytestmark = pytest.mark.kafka

MediaFactory = Callable[[str], Path]
ROOT = Path(__file__).resolve().parents[2]


async def read_all(topic: str, count: int | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """Records of ``topic`` as (key, record name, datum), in partition order.

    Reads until ``count`` records arrived, or (``count`` None) until the topic is drained.
    """
    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    records: list[tuple[str, str, dict[str, Any]]] = []
    idle = 0
    try:
        for _ in range(240):
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0 if batches else idle + 1
            for _, messages in sorted(batches.items(), key=lambda item: item[0].partition):
                for message in messages:
                    decoded = get_codec().decode(message.value, topic=topic)
                    records.append((message.key.decode(), decoded.name, decoded.datum))
            if count is not None and len(records) >= count:
                break
            if count is None and records and idle >= 2:
                break
        else:
            wanted = "the topic to drain" if count is None else f"{count} records"
            raise AssertionError(f"{topic}: waited 120 s for {wanted}; {len(records)} arrived")
    finally:
        await consumer.stop()
    return records


def by_session(
    records: list[tuple[str, str, dict[str, Any]]],
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    sessions: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, name, datum in records:
        assert datum["session_id"] == key
        sessions.setdefault(key, []).append((name, datum))
    return sessions


async def test_sessions_published_and_read_back(kafka_topic: Any, media: MediaFactory) -> None:
    topic = kafka_topic(partitions=3)
    sources = (str(media("h264_aac.mp4")), str(media("h264_longgop.mp4")))
    options = ProduceOptions(
        sources=sources,
        reader=ReaderOptions(),
        meta=SessionMeta(tenant="acme", app="tests", labels={"room": "a"}),
        max_record_bytes=129 * 1024,
        progress=False,
    )

    report = await produce(options, publisher=KafkaPublisher(topic))

    assert exit_code(report) == 0
    assert [r.reason for r in report.results] == ["completed", "completed"]
    split = report.results[1]
    records = await read_all(topic)
    sessions = by_session(records)
    assert set(sessions) == {r.session_id for r in report.results}

    plain = sessions[report.results[0].session_id]
    assert [name for name, _ in plain] == [
        "SessionStarted",
        "VideoChunk",
        "VideoChunk",
        "SessionEnded",
    ]
    started = plain[0][1]
    assert {
        k: started[k]
        for k in (
            "source_url",
            "source_kind",
            "live",
            "container",
            "mime_type",
            "video_codec",
            "audio_codec",
            "width",
            "height",
            "frame_rate",
            "transcoded",
            "chunk_target_duration_s",
            "tenant",
            "app",
            "labels",
        )
    } == {
        "source_url": sources[0],
        "source_kind": "file",
        "live": False,
        "container": "mp4",
        "mime_type": 'video/mp4; codecs="avc1.42c00b,mp4a.40.2"',
        "video_codec": "h264",
        "audio_codec": "aac",
        "width": 160,
        "height": 120,
        "frame_rate": 25.0,
        "transcoded": False,
        "chunk_target_duration_s": 2.0,
        "tenant": "acme",
        "app": "tests",
        "labels": {"room": "a"},
    }
    chunks = [datum for name, datum in plain if name == "VideoChunk"]
    assert [
        (c["seq"], c["media_start_s"], c["media_duration_s"], c["part_index"], c["part_count"])
        for c in chunks
    ] == [(0, 0.0, 2.0, 0, 1), (1, 2.0, 2.0, 0, 1)]
    for chunk in chunks:
        assert chunk["byte_size"] == len(chunk["payload"])
        with av.open(io.BytesIO(chunk["payload"])) as container:
            assert len(list(container.decode(video=0))) == 50
    ended = plain[-1][1]
    assert (
        ended["reason"],
        ended["error"],
        ended["chunks"],
        ended["media_seconds"],
        ended["bytes"],
    ) == (
        "completed",
        None,
        2,
        4.0,
        sum(c["byte_size"] for c in chunks),
    )

    parts = sessions[split.session_id]
    assert parts[0][0] == "SessionStarted"
    assert parts[-1][0] == "SessionEnded"
    pieces = [datum for name, datum in parts[1:-1]]
    assert all(name == "VideoChunk" for name, _ in parts[1:-1])
    # Split parts: consecutive records sharing a seq, indexes in order, all under the limit.
    assert [(p["seq"], p["part_index"]) for p in pieces] == [
        (p["seq"], i) for seq in (0, 1) for i, p in enumerate(x for x in pieces if x["seq"] == seq)
    ]
    assert all(p["part_count"] == sum(1 for x in pieces if x["seq"] == p["seq"]) for p in pieces)
    assert all(p["byte_size"] <= 128 * 1024 for p in pieces)
    assert len(pieces) > 2
    assert [p["keyframe_start"] for p in pieces] == [p["part_index"] == 0 for p in pieces]
    for seq, frames in ((0, 100), (1, 50)):
        joined = b"".join(p["payload"] for p in pieces if p["seq"] == seq)
        with av.open(io.BytesIO(joined)) as container:
            assert len(list(container.decode(video=0))) == frames
    assert parts[-1][1]["chunks"] == 2
    assert parts[-1][1]["media_seconds"] == 6.0
    assert len(records) == 4 + len(chunks) + len(pieces)


async def test_source_error_midway_ends_session_once(
    kafka_topic: Any, media: MediaFactory, tmp_path: Path
) -> None:
    topic = kafka_topic()
    data = media("h264_faststart.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])

    report = await produce(
        ProduceOptions(sources=(str(cut),), session_id="s-cut", progress=False),
        publisher=KafkaPublisher(topic),
    )

    assert exit_code(report) == 65
    assert report.results[0].reason == "source_error"
    records = await read_all(topic, 3)
    assert [(key, name) for key, name, _ in records] == [
        ("s-cut", "SessionStarted"),
        ("s-cut", "VideoChunk"),
        ("s-cut", "SessionEnded"),
    ]
    ended = records[-1][2]
    assert (ended["reason"], ended["error"], ended["chunks"], ended["media_seconds"]) == (
        "source_error",
        f"{cut}: truncated: media ends at 2.04 s of 4.00 s",
        1,
        2.0,
    )


async def _create_topic(name: str) -> None:
    admin = make_admin()
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
        await wait_for_topics(admin, {name: 1})
    finally:
        await admin.close()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_sessions_with_one_end_each(
    kafka_bootstrap: str, media: MediaFactory, signum: signal.Signals
) -> None:
    prefix = f"test.sig.{uuid.uuid4().hex[:8]}."
    topic = prefix + "inter1.video-chunks"
    await _create_topic(topic)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC_PREFIX": prefix}
    command = [
        str(Path(sys.executable).parent / "inter1-pipeline"),
        "produce",
        "--realtime",
        "--loop",
        "0",
        "--chunk-duration",
        "1",
        str(media("h264_aac_gop12.mov")),
        str(media("h264_silent.mp4")),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        # Wait for the first records of both sessions, then ask the producer to stop.
        seen = await read_all(topic, 4)
        assert len(seen) >= 4
        process.send_signal(signum)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, stderr.decode()
    assert f"stopped by {signum.name}" in stderr.decode()
    load.cache_clear()
    records = await read_all(topic)
    for session, items in by_session(records).items():
        names = [name for name, _ in items]
        assert names[0] == "SessionStarted", session
        assert names.count("SessionStarted") == 1
        assert names.count("SessionEnded") == 1
        assert names[-1] == "SessionEnded"
        chunks = [datum for name, datum in items if name == "VideoChunk"]
        assert [c["seq"] for c in chunks] == list(range(len(chunks)))
        ended = items[-1][1]
        assert (ended["reason"], ended["error"], ended["chunks"]) == ("stopped", None, len(chunks))
        assert ended["media_seconds"] == pytest.approx(sum(c["media_duration_s"] for c in chunks))
    assert len(by_session(records)) == 2
    assert stdout.decode().strip().splitlines()[-1].startswith("2 sources: 2 stopped; ")


async def test_publisher_in_flight_budget_keeps_order(kafka_topic: Any) -> None:
    topic = kafka_topic()
    publisher = KafkaPublisher(topic, max_in_flight=2, max_in_flight_bytes=100 * 1024)
    payloads = [bytes([n]) * (60 * 1024) for n in range(10)]
    async with publisher:
        futures = [await publisher.send(b"k", payload) for payload in payloads]
        offsets = [(await future).offset for future in futures]

    assert offsets == list(range(10))
    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    try:
        messages = await consume_records(consumer, 10, what=f"payloads on {topic}")
        received = [m.value for m in messages]
    finally:
        await consumer.stop()
    assert received == payloads
