"""What the worker publishes, batched: events, usage and dead letters, then progress.

:meth:`Outbox.publish` is the worker's unit of durability: it takes everything queued
so far together with a snapshot of every changed session's progress (no await between,
so a snapshot never claims more than the records taken with it), sends the records and
waits for every acknowledgement, and only then writes the progress records to the
session-state topic and waits for those. A crash in between leaves progress behind the
records, never ahead: the new owner re-analyses and suppresses, it never skips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from runtime.logs import get_logger
from schemas.codec import Codec

__all__ = ["Outbox", "WorkerTopics"]

_log = get_logger("workers.session.outbox")


@dataclass(frozen=True)
class WorkerTopics:
    """Physical names of the topics the worker reads and writes."""

    chunks: str
    events: str
    usage: str
    dead_letter: str
    session_state: str


class Outbox:
    """Queued output of every session of one worker; published in batches."""

    def __init__(self, producer: AIOKafkaProducer, codec: Codec, topics: WorkerTopics) -> None:
        self._producer = producer
        self._codec = codec
        self.topics = topics
        self._records: list[tuple[str, str, bytes]] = []
        self._after: list[Callable[[], None]] = []
        self._dirty: dict[str, Callable[[], bytes | None]] = {}
        self._lock = asyncio.Lock()
        self.published = 0

    def event(self, session_id: str, datum: dict[str, Any]) -> None:
        """Queue an ``Inter1Event``."""
        self._add("Inter1Event", self.topics.events, session_id, datum)

    def usage(self, session_id: str, datum: dict[str, Any]) -> None:
        """Queue a ``UsageRecord``."""
        self._add("UsageRecord", self.topics.usage, session_id, datum)

    def dead_letter(self, key: str, datum: dict[str, Any]) -> None:
        """Queue a ``DeadLetter``."""
        self._add("DeadLetter", self.topics.dead_letter, key, datum)

    def after_publish(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the records queued so far are published."""
        self._after.append(callback)

    def progress_changed(self, session_id: str, snapshot: Callable[[], bytes | None]) -> None:
        """The session's progress changed; ``snapshot()`` gives its record (None: tombstone)."""
        self._dirty[session_id] = snapshot

    def discard(self, session_ids: set[str]) -> None:
        """Forget what these sessions queued (their partitions moved: the next owner redoes it)."""
        self._records = [r for r in self._records if r[1] not in session_ids]
        for sid in session_ids:
            self._dirty.pop(sid, None)

    @property
    def pending(self) -> int:
        """Records queued and not yet published."""
        return len(self._records)

    async def publish(self) -> None:
        """Send the queued records, wait for them, then the progress records (see module)."""
        async with self._lock:
            records, self._records = self._records, []
            after, self._after = self._after, []
            states = [(sid, snapshot()) for sid, snapshot in self._dirty.items()]
            self._dirty.clear()
            if not records and not states:
                for callback in after:
                    callback()
                return
            try:
                sends = [
                    await self._producer.send(topic, value, key=key.encode())
                    for topic, key, value in records
                ]
                await asyncio.gather(*sends)
                for callback in after:
                    callback()
                writes = [
                    await self._producer.send(self.topics.session_state, value, key=sid.encode())
                    for sid, value in states
                ]
                await asyncio.gather(*writes)
            except BaseException:
                # Nothing is lost silently: the caller's flush fails, offsets stay put, and
                # the records are redelivered to whoever owns the partitions next.
                self._records = records + self._records
                raise
            self.published += len(records)
            _log.debug("outbox_published", records=len(records), progress=len(states))

    def _add(self, name: str, topic: str, key: str, datum: dict[str, Any]) -> None:
        self._records.append((topic, key, self._codec.encode(name, datum, topic=topic)))
