"""What ``inter1-pipeline demo`` does, step by step, on the embedded defaults.

1. Kafka: the configured cluster, or the local broker (started here, stopped at the end).
2. Topics: ``topics ensure`` against it.
3. ClickHouse: the configured server or the embedded engine, migrated.
4. Round trip: one example record of every schema (every Inter1Event payload kind) is
   encoded, published, consumed, decoded, compared with what was sent, and landed in
   ClickHouse's ``record_log`` with a dedup token; a retried insert of the same batch is sent
   too and must not add rows; offsets are committed after the insert.
5. Live: a generated clip through the producer, its chunks read back and analysed over one
   Inter-1 session (the local simulator by default); see ``demo_session``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from clickhouse_connect.driver.client import Client

from deploy.kafka_broker import LocalBroker
from deploy.topics import ensure_topics
from inter1_pipeline.kafka_address import with_bootstrap
from runtime.errors import PipelineError
from runtime.kafka import make_admin, make_consumer, make_producer
from runtime.redact import redact_url

if TYPE_CHECKING:
    from inter1_pipeline.demo_session import LiveReport
from runtime.settings import KafkaSettings, StackSettings, load
from runtime.topics import load_topic_specs, topic_name
from schemas.catalog import RECORD_TOPICS
from schemas.codec import get_codec
from schemas.examples import example_records
from sinks.clickhouse_client import clickhouse_url, make_client
from sinks.migrations import migrate
from sinks.record_log import LoggedRecord, insert_batch

__all__ = ["DemoError", "DemoReport", "run_demo"]

Say = Callable[[str], None]


class DemoError(PipelineError):
    """A demo step produced something other than what it sent."""


@dataclass
class DemoReport:
    """What the demo did, for the summary and for tests."""

    bootstrap: str = ""
    clickhouse: str = ""
    published: dict[str, int] = field(default_factory=dict)
    consumed: int = 0
    rows_by_record: dict[str, int] = field(default_factory=dict)
    retried_inserts_deduplicated: int = 0
    live: LiveReport | None = None


def _record_key(datum: dict[str, Any]) -> bytes:
    session_id = datum.get("session_id")
    return str(session_id or "demo").encode("utf-8")


async def run_demo(
    say: Say, *, keep_stack: bool = False, consume_timeout_s: float = 60.0, live: bool = True
) -> DemoReport:
    """Run the demo; raises :class:`DemoError` when any round trip does not match."""
    report = DemoReport()
    async with AsyncExitStack() as stack:
        kafka = await _kafka(stack, say, report, keep_stack=keep_stack)
        url = clickhouse_url()
        report.clickhouse = redact_url(url)
        client = make_client(url)
        stack.callback(client.close)
        applied = migrate(client)
        say(f"clickhouse: {report.clickhouse} ({len(applied)} migration(s) applied)")
        await _round_trip(stack, say, report, client, kafka=kafka, timeout_s=consume_timeout_s)
        if live:
            from inter1_pipeline.demo_session import produce_and_analyse

            report.live = await produce_and_analyse(
                say, load(StackSettings).state_dir / "demo", kafka=kafka
            )
    return report


async def _kafka(
    stack: AsyncExitStack, say: Say, report: DemoReport, *, keep_stack: bool
) -> KafkaSettings:
    """Use the configured cluster or start the local broker; ensure the topics."""
    kafka: KafkaSettings = load(KafkaSettings)
    if not kafka.bootstrap_servers:
        broker = LocalBroker.from_settings(load(StackSettings))
        was_running = broker.status().running
        say(
            "kafka: starting the local broker (Apache Kafka 4.1, KRaft)..."
            if not was_running
            else "kafka: using the running local broker"
        )
        kafka = with_bootstrap(kafka, await broker.start())
        if not was_running and not keep_stack:
            stack.push_async_callback(broker.stop)
    report.bootstrap = kafka.bootstrap_servers
    say(f"kafka: {report.bootstrap}")
    admin = make_admin(kafka)
    await admin.start()
    stack.push_async_callback(admin.close)
    for outcome in await ensure_topics(admin, load_topic_specs().values()):
        say(f"topics: {outcome.name} {outcome.action}")
    return kafka


async def _round_trip(
    stack: AsyncExitStack,
    say: Say,
    report: DemoReport,
    client: Client,
    *,
    kafka: KafkaSettings,
    timeout_s: float,
) -> None:
    """Every example record: publish, consume, compare, land in ClickHouse once."""
    codec = get_codec()
    producer = make_producer(kafka)
    await producer.start()
    stack.push_async_callback(producer.stop)
    sent: dict[tuple[str, int, int], tuple[str, dict[str, Any]]] = {}
    for name, datum in example_records():
        topic = topic_name(RECORD_TOPICS[name])
        meta = await producer.send_and_wait(
            topic, codec.encode(name, datum, topic=topic), key=_record_key(datum)
        )
        sent[(topic, meta.partition, meta.offset)] = (name, datum)
        report.published[name] = report.published.get(name, 0) + 1
    say(f"published: {sum(report.published.values())} records ({_counts(report.published)})")

    consumer = make_consumer(group_id="inter1-demo", settings=kafka, consumer_timeout_ms=200)
    await consumer.start()
    stack.push_async_callback(consumer.stop)
    batches = await _consume(consumer, sent, timeout_s)
    report.consumed = sum(len(b) for b in batches.values())
    _check_equal(batches, sent)
    say(f"consumed: {report.consumed} records, every one decoded equal to what was sent")

    for tp, batch in sorted(batches.items()):
        insert_batch(client, batch)
        # Commit only after the rows are durable in ClickHouse.
        await consumer.commit({tp: batch[-1].offset + 1})
    # A retried insert (same batch, same token) must be dropped by the dedup window.
    for batch in batches.values():
        insert_batch(client, batch)
        report.retried_inserts_deduplicated += 1

    rows = client.query(
        "SELECT record_name, count() FROM record_log "
        "WHERE (topic, partition, offset) IN {coords:Array(Tuple(String, UInt32, UInt64))} "
        "GROUP BY record_name ORDER BY record_name",
        parameters={"coords": list(sent)},
    ).result_rows
    report.rows_by_record = {str(name): int(count) for name, count in rows}
    if report.rows_by_record != report.published:
        raise DemoError(f"ClickHouse holds {report.rows_by_record}, expected {report.published}")
    say(
        f"clickhouse: record_log holds each record once after "
        f"{report.retried_inserts_deduplicated} retried batch insert(s): "
        f"{_counts(report.rows_by_record)}"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def _check_equal(
    batches: dict[TopicPartition, list[LoggedRecord]],
    sent: dict[tuple[str, int, int], tuple[str, dict[str, Any]]],
) -> None:
    mismatched = [
        f"{r.topic}:{r.partition}:{r.offset}"
        for batch in batches.values()
        for r in batch
        if (r.decoded.name, r.decoded.datum) != sent[(r.topic, r.partition, r.offset)]
    ]
    if mismatched:
        raise DemoError(f"decoded records differ from what was sent: {mismatched}")


async def _consume(
    consumer: AIOKafkaConsumer,
    sent: dict[tuple[str, int, int], tuple[str, dict[str, Any]]],
    timeout_s: float,
) -> dict[TopicPartition, list[LoggedRecord]]:
    """Read exactly the published coordinates back, batched per topic-partition."""
    codec = get_codec()
    first: dict[TopicPartition, int] = {}
    for topic, partition, offset in sent:
        tp = TopicPartition(topic, partition)
        first[tp] = min(offset, first.get(tp, offset))
    consumer.assign(list(first))
    for tp, offset in first.items():
        consumer.seek(tp, offset)
    batches: dict[TopicPartition, list[LoggedRecord]] = defaultdict(list)
    remaining = set(sent)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while remaining:
        if loop.time() > deadline:
            raise DemoError(f"{len(remaining)} published record(s) never came back")
        fetched = await consumer.getmany(timeout_ms=500)
        for tp, messages in fetched.items():
            for msg in messages:
                coord = (msg.topic, msg.partition, msg.offset)
                if coord not in remaining:
                    continue
                remaining.discard(coord)
                decoded = codec.decode(msg.value, topic=msg.topic)
                batches[tp].append(
                    LoggedRecord(
                        msg.topic, msg.partition, msg.offset, msg.key, msg.timestamp, decoded
                    )
                )
    return dict(batches)
