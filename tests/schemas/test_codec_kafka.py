"""Both framings through the real broker: what a producer writes, a consumer reads back equal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka_helpers import consume_records

from runtime.kafka import make_consumer, make_producer
from schemas.codec import Codec
from schemas.examples import example_records
from schemas.registry_client import RegistryClient

pytestmark = pytest.mark.kafka


async def _round_trip(codec_out: Codec, codec_in: Codec, topic: str) -> list[tuple[str, Any]]:
    records = example_records()
    producer = make_producer()
    await producer.start()
    try:
        for name, datum in records:
            await producer.send_and_wait(topic, codec_out.encode(name, datum, topic=topic))
    finally:
        await producer.stop()
    consumer = make_consumer(topic, group_id=None, consumer_timeout_ms=200)
    await consumer.start()
    decoded: list[tuple[str, Any]] = []
    try:
        what = f"example records on {topic}"
        for msg in await consume_records(consumer, len(records), what=what):
            result = codec_in.decode(msg.value, topic=msg.topic)
            decoded.append((result.name, result.datum))
    finally:
        await consumer.stop()
    return decoded


async def test_single_object_framing_through_kafka(
    kafka_topic: Callable[..., str], codec: Codec
) -> None:
    topic = kafka_topic(1)
    assert await _round_trip(codec, Codec(), topic) == example_records()


async def test_confluent_framing_through_kafka(
    kafka_topic: Callable[..., str], registry_server_factory: Callable[..., Any]
) -> None:
    server = registry_server_factory()
    topic = kafka_topic(1)
    writer = Codec(registry=RegistryClient(server.url))
    # A separate reader with a cold cache resolves every writer schema by id from the registry.
    reader = Codec(registry=RegistryClient(server.url))
    assert await _round_trip(writer, reader, topic) == example_records()
    subjects = {f"{topic}-ai.interhuman.pipeline.{name}" for name, _ in example_records()}
    assert set(server.state.subjects) == subjects
