"""Produce many keyed records as one record batch per partition (aiokafka ``send_batch``).

``AIOKafkaProducer.send`` costs a coroutine, a partitioner call (pure-Python murmur2) and a
future per record; a worker that publishes hundreds of small records per tick spends more
on that than on the bytes. :class:`BatchSender` places each key on the partition the
producer's default partitioner would choose (cached per topic, key and partition count, so
a key lands where ``send`` would have put it and per-key order holds), fills one
``create_batch()`` builder per partition in order, and submits each with ``send_batch``:
one future per batch. The idempotent producer assigns sequence numbers to these batches
like to its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

__all__ = ["Acked", "BatchSender"]

_PARTITIONER = DefaultPartitioner()


@dataclass(frozen=True)
class Acked:
    """Records acknowledged in one batch: ``topic``/``partition``, offsets ``first..last``."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


class BatchSender:
    """Sends ``(topic, key, value)`` records in per-partition batches (see the module)."""

    def __init__(self, producer: AIOKafkaProducer, *, cache_keys: int = 100_000) -> None:
        self._producer = producer
        self._partitions: dict[tuple[str, bytes, int], int] = {}
        self._cache_keys = cache_keys

    async def send(self, records: Sequence[tuple[str, bytes, bytes | None]]) -> list[Acked]:
        """Send every record (a ``None`` value is a tombstone) and wait for all
        acknowledgements; returns one entry per batch (in submission order). Raises what the
        producer raised for any batch."""
        counts: dict[str, int] = {}
        grouped: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        for topic, key, value in records:
            if topic not in counts:  # metadata wait once per topic and call
                counts[topic] = len(await self._producer.partitions_for(topic))
            partition = self._partition(topic, key, counts[topic])
            grouped.setdefault((topic, partition), []).append((key, value))
        waits: list[tuple[str, int, int, asyncio.Future[RecordMetadata]]] = []
        for (topic, partition), items in grouped.items():
            batch, count = self._producer.create_batch(), 0
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    future = await self._submit(batch, topic, partition)
                    waits.append((topic, partition, count, future))
                    batch, count = self._producer.create_batch(), 0
                    batch.append(key=key, value=value, timestamp=None)  # a first record always fits
                count += 1
            future = await self._submit(batch, topic, partition)
            waits.append((topic, partition, count, future))
        metas = await asyncio.gather(*(future for *_, future in waits))
        return [
            Acked(topic, partition, meta.offset, meta.offset + count - 1)
            for (topic, partition, count, _), meta in zip(waits, metas, strict=True)
        ]

    async def _submit(
        self, batch: object, topic: str, partition: int
    ) -> asyncio.Future[RecordMetadata]:
        future: asyncio.Future[RecordMetadata] = await self._producer.send_batch(
            batch, topic, partition=partition
        )
        return future

    def _partition(self, topic: str, key: bytes, count: int) -> int:
        """The partition ``send`` picks for ``key`` among ``count`` (default partitioner)."""
        cached = self._partitions.get((topic, key, count))
        if cached is None:
            if len(self._partitions) >= self._cache_keys:
                self._partitions.clear()  # finished sessions' keys; recomputed when needed
            cached = int(_PARTITIONER(key, list(range(count)), None))
            self._partitions[(topic, key, count)] = cached
        return cached
