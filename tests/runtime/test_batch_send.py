"""runtime.batch_send against the real broker: per-partition batches land where ``send`` would."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable

import pytest
from kafka_helpers import consume_records

from runtime.batch_send import Acked, BatchSender
from runtime.kafka import make_consumer, make_producer

pytestmark = pytest.mark.kafka

KEYS = [f"session-{n}".encode() for n in range(6)]


async def test_batches_keep_the_default_partitioning_and_per_key_order(
    kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic(partitions=3)
    # 6 keys x 40 records of 1 KiB: each partition's records overflow the 16 KiB batch, so
    # a partition takes several batches.
    records = [(topic, key, key + b":%03d:" % n + bytes(1024)) for n in range(40) for key in KEYS]
    producer = make_producer()
    await producer.start()
    try:
        # where the producer's own send() puts each key
        expected = {
            key: (await producer.send_and_wait(topic, b"probe", key=key)).partition for key in KEYS
        }
        acked = await BatchSender(producer).send(records)
    finally:
        await producer.stop()

    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    try:
        got = await consume_records(consumer, len(KEYS) + len(records))
    finally:
        await consumer.stop()
    landed: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
    for record in got:
        assert record.key is not None
        assert record.value is not None
        if record.value != b"probe":
            landed[record.key].append((record.partition, record.value[: len(record.key) + 5]))
    for key in KEYS:
        # every record of a key on the partition send() picks, in the order given
        assert landed[key] == [(expected[key], key + b":%03d:" % n) for n in range(40)]
    # the acknowledgements tile each partition's offsets after its probes, batch by batch
    by_partition: dict[int, list[Acked]] = defaultdict(list)
    for batch in acked:
        assert batch.topic == topic
        by_partition[batch.partition].append(batch)
    probes = defaultdict(int)
    for key in KEYS:
        probes[expected[key]] += 1
    for partition, batches in by_partition.items():
        assert len(batches) > 1
        assert batches[0].first_offset == probes[partition]
        for before, after in itertools.pairwise(batches):
            assert after.first_offset == before.last_offset + 1
        keys_here = sum(1 for key in KEYS if expected[key] == partition)
        assert batches[-1].last_offset == probes[partition] + 40 * keys_here - 1
