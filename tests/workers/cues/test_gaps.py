"""The committed offset the gap guard starts from after a rebalance (real broker)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from cues_app import CuesRun
from stream import RULES_FILE

pytestmark = [pytest.mark.kafka]


async def _commit(group_id: str, topic: str, offset: int) -> None:
    from runtime.kafka import make_consumer

    consumer = make_consumer(group_id=group_id)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): offset})
    finally:
        await consumer.stop()


def test_committed_offset_is_the_groups_or_none(kafka_bootstrap: str, tmp_path: Path) -> None:
    from faust.types import TP

    from workers.cues.gaps import committed_offset

    run = CuesRun(tmp_path, RULES_FILE)
    asyncio.run(run.ensure_topics())
    events = run.topics["events"]
    group = f"test-cues-gaps-{uuid.uuid4().hex[:8]}"

    assert asyncio.run(committed_offset(group, TP(events, 0))) is None
    asyncio.run(_commit(group, events, 14))
    assert asyncio.run(committed_offset(group, TP(events, 0))) == 14
    assert asyncio.run(committed_offset(f"{group}-other", TP(events, 0))) is None
