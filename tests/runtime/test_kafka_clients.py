"""runtime.kafka's clients against the real broker: idempotent producer, manual-commit groups."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from kafka_helpers import consume_records

from runtime.errors import ConfigError
from runtime.kafka import bootstrap_servers, make_admin, make_consumer, make_producer
from runtime.settings import load

pytestmark = pytest.mark.kafka

KEYS = [f"session-{n}" for n in range(8)]
PER_KEY = 12


async def _consume(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Exactly ``count`` records, or a failure naming how many arrived within 30 s."""
    records: list[ConsumerRecord[bytes, bytes]] = await consume_records(consumer, count)
    return records


async def test_bootstrap_comes_from_the_session_broker(kafka_bootstrap: str) -> None:
    assert bootstrap_servers() == kafka_bootstrap


async def test_idempotent_producer_and_manual_commit_group(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=3)
    group = f"group-{uuid.uuid4().hex[:8]}"

    producer = make_producer()
    await producer.start()
    try:
        sent: dict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
        for seq in range(PER_KEY):
            for key in KEYS:
                meta = await producer.send_and_wait(
                    topic, value=f"{key}:{seq}".encode(), key=key.encode()
                )
                sent[meta.partition].append((key.encode(), f"{key}:{seq}".encode(), meta.offset))
        # The broker granted an idempotent producer id (InitProducerId, acks=all).
        assert producer._txn_manager is not None
        assert producer._txn_manager.producer_id >= 0
    finally:
        await producer.stop()
    total = len(KEYS) * PER_KEY
    assert sum(len(records) for records in sent.values()) == total
    for partition_sent in sent.values():
        assert [offset for _k, _v, offset in partition_sent] == list(range(len(partition_sent)))

    # First member reads everything but commits only the first half of each partition.
    first = make_consumer(topic, group_id=group)
    await first.start()
    try:
        records = await _consume(first, total)
        by_partition: dict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
        for record in records:
            assert record.key is not None
            assert record.value is not None
            by_partition[record.partition].append((record.key, record.value, record.offset))
        assert by_partition == sent  # per-partition order, nothing missing, nothing extra
        halfway = {TopicPartition(topic, p): len(rs) // 2 for p, rs in sent.items()}
        await first.commit(halfway)
        for tp, offset in halfway.items():
            assert await first.committed(tp) == offset
    finally:
        await first.stop()

    # The next member of the group resumes exactly at the committed offsets.
    second = make_consumer(topic, group_id=group)
    await second.start()
    try:
        rest = await _consume(second, total - sum(halfway.values()))
        resumed: dict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
        for record in rest:
            assert record.key is not None
            assert record.value is not None
            resumed[record.partition].append((record.key, record.value, record.offset))
        assert resumed == {p: rs[len(rs) // 2 :] for p, rs in sent.items()}
        await second.commit()
        assert await second.getmany(timeout_ms=300) == {}
    finally:
        await second.stop()

    admin = make_admin()
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert {tp: meta.offset for tp, meta in committed.items()} == {
        TopicPartition(topic, p): len(rs) for p, rs in sent.items()
    }


async def test_keys_stay_on_one_partition(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=4)
    producer = make_producer()
    await producer.start()
    try:
        partitions: dict[str, set[int]] = defaultdict(set)
        for seq in range(3):
            for key in KEYS:
                meta = await producer.send_and_wait(
                    topic, value=str(seq).encode(), key=key.encode()
                )
                partitions[key].add(meta.partition)
    finally:
        await producer.stop()
    assert {key: len(parts) for key, parts in partitions.items()} == dict.fromkeys(KEYS, 1)


def test_unset_bootstrap_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    load.cache_clear()
    try:
        for make in (make_producer, make_admin):
            with pytest.raises(ConfigError) as caught:
                make()
            assert str(caught.value) == (
                "KAFKA_BOOTSTRAP_SERVERS is not set: set it to the cluster's bootstrap servers "
                "(host:port[,host:port...])"
            )
        with pytest.raises(ConfigError):
            make_consumer("topic", group_id="g")
    finally:
        load.cache_clear()
