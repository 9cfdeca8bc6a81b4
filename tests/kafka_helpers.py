"""Helpers for tests that read from the real broker: every wait has its own deadline."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer

__all__ = ["consume_records"]


async def consume_records(
    consumer: AIOKafkaConsumer, count: int, *, within_s: float = 30.0, what: str = "records"
) -> list[Any]:
    """Exactly ``count`` records from a started consumer, in arrival order per partition.

    Fails with a message naming what did not arrive when ``within_s`` seconds pass first,
    instead of leaving the test to the suite-wide pytest timeout.
    """
    records: list[Any] = []
    deadline = time.monotonic() + within_s
    while len(records) < count:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise AssertionError(
                f"only {len(records)} of {count} {what} arrived within {within_s:g} s"
            )
        batches = await consumer.getmany(
            timeout_ms=min(500, left_ms), max_records=count - len(records)
        )
        for _, batch in sorted(batches.items(), key=lambda item: item[0].partition):
            records.extend(batch)
    return records
