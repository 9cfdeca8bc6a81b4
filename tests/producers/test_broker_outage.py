"""Live sessions ride out a Kafka outage: spooled in order, dropped whole when the spool is full,
published by the next start after a kill. Against a broker of their own, stopped and restarted
on the same port and data (the suite's shared broker keeps running for everyone else)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from kafka_helpers import consume_records
from sim_helpers import CLIP_B, clip_bytes

import runtime.kafka
from deploy.kafka_broker import LocalBroker
from deploy.kafka_jars import jars_dir
from deploy.topics import wait_for_topics
from producers.app import ProduceOptions, exit_code, produce
from producers.exceptions import PublishError
from producers.publisher import DryRunPublisher, KafkaPublisher
from producers.reader import ReaderOptions
from producers.replay import ORPHAN_END_MESSAGE
from producers.spool import spool_file
from runtime.kafka import make_admin, make_consumer
from runtime.settings import KafkaSettings, ProducerSettings
from runtime.topics import topic_name
from schemas.codec import get_codec

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
CLIP_CHUNKS = [(seq, 2.0 * seq, 2.0) for seq in range(7)]  # CLIP_B: 14 s, a keyframe a second
Record = tuple[bytes, str, dict[str, Any]]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, kafka_jars: Path) -> Iterator[LocalBroker]:
    """A broker only this module uses (it is stopped and started again by the tests)."""
    state = tmp_path_factory.mktemp("outage-broker")
    jars_dir(state).parent.mkdir(parents=True)
    jars_dir(state).symlink_to(kafka_jars, target_is_directory=True)
    own = LocalBroker(state, heap_mb=384, start_timeout_s=180)
    asyncio.run(own.start())
    try:
        yield own
    finally:
        asyncio.run(own.stop())


@pytest.fixture
def short_client_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process clients give up on a record after 3 s (``request_timeout_ms``, 40 s by
    default), so these outages are long ones for them: ``send`` stops taking records and,
    when the metadata loses the partition's leader, batches expire and the publisher must
    replace the client (``test_publisher_replaces_a_client_left_broken_by_a_failed_batch``
    shows that deterministically)."""
    make_producer = runtime.kafka.make_producer

    def short_timeout(settings: KafkaSettings | None = None, **overrides: Any) -> Any:
        return make_producer(settings, **{"request_timeout_ms": 3000, **overrides})

    monkeypatch.setattr(runtime.kafka, "make_producer", short_timeout)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip_b.mp4"
    path.write_bytes(clip_bytes(CLIP_B))
    return path


async def _kafka(broker: LocalBroker, *topics: str) -> KafkaSettings:
    """Settings for the module's broker (started if a test left it down), with ``topics``."""
    kafka = KafkaSettings(bootstrap_servers=await broker.start())
    admin = make_admin(kafka)
    await admin.start()
    try:
        missing = set(topics) - set(await admin.list_topics())
        if missing:
            await admin.create_topics([NewTopic(name, 1, 1) for name in sorted(missing)])
            await wait_for_topics(admin, dict.fromkeys(missing, 1))
    finally:
        await admin.close()
    return kafka


async def _read(kafka: KafkaSettings, topic: str, key: bytes) -> list[Record]:
    """Every record of ``topic`` (one partition) up to its end offset, those keyed ``key``."""
    consumer = make_consumer(topic, group_id=None, settings=kafka)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([TopicPartition(topic, 0)]))[TopicPartition(topic, 0)]
        messages = await consume_records(consumer, end, what=f"records of {topic}")
    finally:
        await consumer.stop()
    out: list[Record] = []
    for message in messages:
        if message.key == key:
            decoded = get_codec().decode(message.value)
            out.append((message.key, decoded.name, decoded.datum))
    return out


async def _wait_spool(path: Path, *, chunks: int = 0, ended: bool = False) -> None:
    """Until the spool file holds ``chunks`` chunk records (and the SessionEnded)."""
    deadline = time.monotonic() + 60
    while True:
        if os.path.exists(path):  # noqa: ASYNC240 - a stat per poll, in a test
            db = sqlite3.connect(path)
            try:
                kinds = [row[0] for row in db.execute("SELECT kind FROM records")]
            except sqlite3.OperationalError:
                kinds = []  # created but not initialised yet
            finally:
                db.close()
            if kinds.count("chunk") >= chunks and (not ended or "ended" in kinds):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: {chunks} chunks (ended={ended}) not spooled in 60 s")
        await asyncio.sleep(0.2)


def _assert_session(records: list[Record], chunks: list[tuple[int, float, float]]) -> None:
    """SessionStarted, each chunk once in order, tiling the media, SessionEnded once."""
    names = [name for _, name, _ in records]
    assert names == ["SessionStarted"] + ["VideoChunk"] * len(chunks) + ["SessionEnded"]
    got = [(d["seq"], d["media_start_s"], d["media_duration_s"]) for _, n, d in records[1:-1]]
    assert got == chunks


def _options(clip: Path, session_id: str, kafka: KafkaSettings, spool: Path, **limits: Any) -> Any:
    return ProduceOptions(
        sources=(str(clip),),
        reader=ReaderOptions(realtime=True),
        session_id=session_id,
        progress=False,
        kafka=kafka,
        producer=ProducerSettings(spool_dir=spool, ack_timeout_s=1.0, stop_timeout_s=5.0, **limits),
    )


async def _first_records(kafka: KafkaSettings, topic: str) -> None:
    """Until SessionStarted and chunk 0 are on ``topic``."""
    consumer = make_consumer(topic, group_id=None, settings=kafka)
    await consumer.start()
    try:
        await consume_records(consumer, 2, what=f"SessionStarted and chunk 0 on {topic}")
    finally:
        await consumer.stop()


async def _cli_producer(kafka: KafkaSettings, prefix: str, spool: Path, clip: Path) -> Any:
    """``inter1-pipeline produce --realtime`` of ``clip`` as session ``outage-3``."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": str(kafka.bootstrap_servers),
        "KAFKA_TOPIC_PREFIX": prefix,
        "PIPELINE_PRODUCER_SPOOL_DIR": str(spool),
        "PIPELINE_PRODUCER_ACK_TIMEOUT_S": "1",
    }
    command = [
        str(Path(sys.executable).parent / "inter1-pipeline"),
        "produce",
        "--realtime",
        "--no-progress",
        "--session-id",
        "outage-3",
        str(clip),
    ]
    return await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def test_broker_restart_mid_stream_spooled_in_order_and_a_killed_producers_spool_kept(
    broker: LocalBroker, clip: Path, tmp_path: Path, short_client_timeout: None
) -> None:
    """Two live producers meet the same outage: one rides it out, one is killed (SIGKILL) in
    it and the next start publishes what it had spooled and ends its session."""
    topic = f"test.outage.{uuid.uuid4().hex[:8]}"
    prefix = f"test.kill.{uuid.uuid4().hex[:8]}."
    killed_topic = prefix + "inter1.video-chunks"
    kafka = await _kafka(broker, topic, killed_topic, topic_name("dead_letter"))
    live_spool, killed_spool = tmp_path / "live", tmp_path / "killed"
    process = await _cli_producer(kafka, prefix, killed_spool, clip)
    producing = asyncio.ensure_future(
        produce(
            _options(clip, "outage-1", kafka, live_spool),
            publisher=KafkaPublisher(topic, settings=kafka),
        )
    )
    try:
        # Mid-stream: once chunk 0 of both sessions is on its topic, the broker goes away,
        await _first_records(kafka, topic)
        await _first_records(kafka, killed_topic)
        await broker.stop()
        # the sessions keep reading into their spools; one producer is killed meanwhile,
        await _wait_spool(spool_file(live_spool, "outage-1"), chunks=2)
        await _wait_spool(spool_file(killed_spool, "outage-3"), chunks=2)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        # and the broker comes back on the same port with the same data.
        await broker.start()
        report = await producing
    finally:
        if not producing.done():
            producing.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    result = report.results[0]
    assert (result.reason, exit_code(report)) == ("completed", 0)
    assert (result.delivery.outages, result.delivery.dropped_chunks) == (1, 0)
    assert 2 <= result.delivery.spooled_chunks <= 7
    assert result.delivery.left_in_spool == 0
    assert list(live_spool.iterdir()) == []  # drained: the spool's files are gone

    records = await _read(kafka, topic, b"outage-1")
    _assert_session(records, CLIP_CHUNKS)
    ended = records[-1][2]
    assert (ended["reason"], ended["chunks"], ended["media_seconds"]) == ("completed", 7, 14.0)

    # The killed producer's next start (here with no source of its own) publishes its spool.
    report = await produce(
        ProduceOptions(
            sources=(),
            progress=False,
            kafka=kafka,
            producer=ProducerSettings(spool_dir=killed_spool, ack_timeout_s=1.0),
        ),
        publisher=KafkaPublisher(killed_topic, settings=kafka),
    )
    assert [(r.session_id, r.published, r.error) for r in report.replayed] == [
        ("outage-3", True, None)
    ]
    assert list(killed_spool.iterdir()) == []
    records = await _read(kafka, killed_topic, b"outage-3")
    published = len(records) - 2
    assert published >= 3  # chunk 0 before the outage, two or more from the spool
    _assert_session(records, CLIP_CHUNKS[:published])
    ended = records[-1][2]
    assert (ended["reason"], ended["error"]) == ("stopped", ORPHAN_END_MESSAGE)
    assert (ended["chunks"], ended["media_seconds"]) == (published, 2.0 * published)


class _Sizes(DryRunPublisher):
    """A dry run that keeps each record's size (key + value), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def send(self, key: bytes, value: bytes, *, topic: str | None = None) -> Any:
        self.sizes.append(len(key) + len(value))
        return await super().send(key, value, topic=topic)


async def test_full_spool_drops_whole_chunks_and_says_which(
    broker: LocalBroker, clip: Path, tmp_path: Path, short_client_timeout: None
) -> None:
    # Record sizes of this very clip: SessionStarted, chunks 0..6, SessionEnded.
    sizes = _Sizes()
    await produce(
        ProduceOptions(sources=(str(clip),), session_id="outage-2", progress=False),
        publisher=sizes,
    )
    started, chunk = sizes.sizes[0], sizes.sizes[1:8]
    # Room for what was in flight when the outage began (SessionStarted, chunk 0) plus
    # chunks 1 and 2; chunk 3 does not fit.
    limit = started + sum(chunk[:3]) + chunk[3] // 2

    topic, file_topic = (f"test.outage.{uuid.uuid4().hex[:8]}" for _ in range(2))
    dead_letters = topic_name("dead_letter")
    kafka = await _kafka(broker, topic, file_topic, dead_letters)
    publisher = KafkaPublisher(topic, settings=kafka)
    file_publisher = KafkaPublisher(file_topic, settings=kafka)
    # The clients know the topics' leaders before the broker goes away (as any producer
    # that published once does), then the whole sessions run while Kafka is down.
    for client, warm_topic in (
        (publisher, topic),
        (publisher, dead_letters),
        (file_publisher, file_topic),
    ):
        await client.start()
        await (await client.send(b"warm-up", b"-", topic=warm_topic))
    await broker.stop()
    spool_dir = tmp_path / "spool"
    options = _options(clip, "outage-2", kafka, spool_dir, spool_max_bytes=limit)
    producing = asyncio.ensure_future(produce(options, publisher=publisher))
    # A file read as fast as it goes (not live) meanwhile: it waits for Kafka, spools nothing.
    file_options = ProduceOptions(
        sources=(str(clip),),
        session_id="wait-1",
        progress=False,
        kafka=kafka,
        producer=ProducerSettings(spool_dir=spool_dir, ack_timeout_s=1.0),
    )
    file_producing = asyncio.ensure_future(produce(file_options, publisher=file_publisher))
    try:
        await _wait_spool(spool_file(spool_dir, "outage-2"), chunks=3, ended=True)
        assert not file_producing.done()
        await broker.start()
        report = await producing
        file_report = await file_producing
    finally:
        for task in (producing, file_producing):
            if not task.done():
                task.cancel()
    assert list(spool_dir.iterdir()) == []
    waited = file_report.results[0]
    assert (waited.reason, waited.totals.chunks, waited.totals.media_seconds) == (
        "completed",
        7,
        14.0,
    )
    assert (waited.delivery.outages, waited.delivery.spooled_chunks) == (1, 0)
    assert waited.delivery.dropped_chunks == 0
    file_records = await _read(kafka, file_topic, b"wait-1")
    _assert_session(file_records, CLIP_CHUNKS)

    stats = report.results[0].delivery
    assert (report.results[0].reason, stats.outages, stats.spooled_chunks) == ("completed", 1, 3)
    assert (stats.dropped_chunks, stats.dropped_media_s) == (4, 8.0)
    assert stats.dropped_bytes == sum(chunk[3:]) - 4 * len(b"outage-2")

    records = await _read(kafka, topic, b"outage-2")
    _assert_session(records, CLIP_CHUNKS[:3])
    ended = records[-1][2]
    assert (ended["reason"], ended["chunks"], ended["media_seconds"]) == ("completed", 3, 6.0)

    letters = await _read(kafka, dead_letters, b"outage-2")
    assert [name for _, name, _ in letters] == ["DeadLetter"]
    letter = letters[0][2]
    assert (letter["stage"], letter["error_type"], letter["error_code"]) == (
        "producer",
        "SpoolFullError",
        "spool_full",
    )
    assert letter["error_message"] == (
        f"Kafka outage and spool full ({limit} bytes): dropped 4 chunk(s), seq 3-6, "
        f"media 6.000-14.000 s (8.000 s, {stats.dropped_bytes} bytes)"
    )
    assert {k: v.decode() for k, v in letter["headers"].items()} == {
        "first_seq": "3",
        "last_seq": "6",
        "chunks": "4",
        "media_start_s": "6.0",
        "media_end_s": "14.0",
        "bytes": str(stats.dropped_bytes),
    }
    assert (letter["session_id"], letter["value"], letter["retriable"]) == ("outage-2", None, False)


async def test_publisher_replaces_a_client_left_broken_by_a_failed_batch(
    kafka_topic: Any,
) -> None:
    """A batch the broker refuses leaves a gap in the idempotent client's sequence numbers:
    every later record of the partition fails, until ``recover()`` brings a new client."""
    topic = kafka_topic(config={"max.message.bytes": "2048"})
    publisher = KafkaPublisher(topic)
    await publisher.start()
    try:
        await (await publisher.send(b"k", b"before"))
        with pytest.raises(PublishError, match="MessageSizeTooLarge"):
            await (await publisher.send(b"k", b"x" * 8192))
        with pytest.raises(PublishError, match="OutOfOrderSequenceNumber"):
            await (await publisher.send(b"k", b"small"))
        await publisher.recover()
        await (await publisher.send(b"k", b"after"))
        await publisher.recover()  # nothing failed since: a no-op
        await (await publisher.send(b"k", b"again"))
    finally:
        await publisher.stop()
    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    try:
        values = [m.value for m in await consume_records(consumer, 3, what="records")]
    finally:
        await consumer.stop()
    assert values == [b"before", b"after", b"again"]
