"""KafkaPublisher delivery futures: acknowledged, or failed with PublishError (not aiokafka)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from producers.exceptions import PublishError
from producers.publisher import KafkaPublisher


class _FakeProducer:
    """Stands in for a started AIOKafkaProducer: each send returns a future we settle."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(future)
        return future


def _publisher(fake: _FakeProducer) -> KafkaPublisher:
    publisher = KafkaPublisher("t", max_in_flight=4)
    publisher._producer = fake  # as start() leaves it, without a broker
    publisher._capacity = asyncio.Event()
    return publisher


async def test_acknowledged_record_resolves_and_frees_its_budget() -> None:
    fake = _FakeProducer()
    publisher = _publisher(fake)

    acked = await publisher.send(b"k", b"value")
    fake.sent[0].set_result("metadata")

    assert await acked == "metadata"
    assert (publisher._in_flight, publisher._in_flight_bytes) == (0, 0)


async def test_kafka_failure_becomes_publish_error_with_its_cause() -> None:
    fake = _FakeProducer()
    publisher = _publisher(fake)

    acked = await publisher.send(b"k", b"value")
    fake.sent[0].set_exception(KafkaTimeoutError("no ack"))

    with pytest.raises(PublishError, match="Kafka did not acknowledge a record") as caught:
        await acked
    assert isinstance(caught.value.__cause__, KafkaTimeoutError)
    assert publisher._in_flight == 0
