"""What the worker publishes, batched: events, usage and dead letters, then progress.

:meth:`Outbox.publish` is the worker's unit of durability: it takes everything queued
so far together with a snapshot of every changed session's progress (no await between,
so a snapshot never claims more than the records taken with it), sends the records and
waits for every acknowledgement, and only then writes the progress records to the
session-state topic and waits for those. A crash in between leaves progress behind the
records, never ahead: the new owner re-analyses and suppresses, it never skips.

Every progress record also says where this worker's later publications start
(``readback``: per events and usage partition, the offset after the last record
acknowledged, or the end offset found before the first send), and a session's first
progress record (nothing claimed yet, :meth:`SessionProgress.unclaimed`) is written
before any of its records. So a crash between the records and the progress leaves the
new owner a place to read back what was published beyond the progress (the watermark and
the incarnation are recovered from the events themselves, :mod:`workers.session.readback`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from runtime.batch_send import Acked, BatchSender
from runtime.logs import get_logger
from schemas.codec import Codec
from workers.session import metrics
from workers.session.faults import CrashPoint
from workers.session.state_store import SessionProgress

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

    def readback_roles(self) -> dict[str, str]:
        """Topic -> role of the topics a new owner reads back (keyed by session id)."""
        return {self.events: "events", self.usage: "usage"}


EndOffsets = Callable[[list[str]], Awaitable[dict[str, dict[int, int]]]]
"""Topics -> partition -> end offset (the read-back floor before the first send)."""

Snapshot = Callable[[], SessionProgress]


class Outbox:
    """Queued output of every session of one worker; published in batches."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        codec: Codec,
        topics: WorkerTopics,
        *,
        end_offsets: EndOffsets,
        crash_at: CrashPoint | None = None,
    ) -> None:
        self._producer = producer
        self._sender = BatchSender(producer)
        self._codec = codec
        self.topics = topics
        self._roles = topics.readback_roles()
        self._end_offsets = end_offsets
        self._crash_at = crash_at
        self._records: list[tuple[str, bytes, bytes]] = []
        self._event_times: list[tuple[bytes, float]] = []  # (key, monotonic time) of queued events
        self._after: list[Callable[[], None]] = []
        self._dirty: dict[str, Snapshot] = {}
        self._first: dict[str, Snapshot] = {}
        self._tombstones: list[str] = []
        self._floors: dict[str, dict[int, int]] | None = None  # role -> partition -> offset
        self._lock = asyncio.Lock()
        self._waiting = asyncio.Event()  # set while a live session's records wait
        self._live: set[bytes] = set()  # keys of live sessions: their records go out at once
        self.published = 0
        self.published_events = 0

    def event(self, session_id: str, datum: dict[str, Any]) -> None:
        """Queue an ``Inter1Event`` (the time it was taken is kept for the publish-latency
        histogram: event received -> acknowledged by Kafka)."""
        self._add("Inter1Event", self.topics.events, session_id, datum)
        self._event_times.append((session_id.encode(), time.monotonic()))

    def usage(self, session_id: str, datum: dict[str, Any]) -> None:
        """Queue a ``UsageRecord``."""
        self._add("UsageRecord", self.topics.usage, session_id, datum)

    def dead_letter(self, key: str, datum: dict[str, Any]) -> None:
        """Queue a ``DeadLetter``."""
        self._add("DeadLetter", self.topics.dead_letter, key, datum)

    def after_publish(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the records queued so far are published."""
        self._after.append(callback)

    def progress_changed(self, session_id: str, snapshot: Snapshot) -> None:
        """The session's progress changed; ``snapshot()`` gives a copy to write."""
        self._dirty[session_id] = snapshot

    def first_progress(self, session_id: str, snapshot: Snapshot) -> None:
        """A new session: ``snapshot()`` (claiming nothing) is written before its records."""
        self._first[session_id] = snapshot

    def forget(self, session_id: str) -> None:
        """Write a tombstone for the session's progress with the next publish: it ended and
        the chunk offsets are committed past its last record, so no owner needs it again
        (compaction then removes the session from the topic)."""
        self._tombstones.append(session_id)

    def set_live(self, session_id: str, live: bool) -> None:
        """Whether ``session_id``'s records are published as soon as they wait (live media:
        ``records_waiting`` returns) or with the next periodic publish (recorded media)."""
        if live:
            self._live.add(session_id.encode())
        else:
            self._live.discard(session_id.encode())

    def discard(self, session_ids: set[str]) -> None:
        """Forget what these sessions queued (their partitions moved: the next owner redoes it)."""
        keys = {sid.encode() for sid in session_ids}
        self._records = [r for r in self._records if r[1] not in keys]
        self._event_times = [t for t in self._event_times if t[0] not in keys]
        for sid in session_ids:
            self._dirty.pop(sid, None)
            self._first.pop(sid, None)

    async def prime(self) -> None:
        """Read the read-back floors now (the end offsets), not in the first publish."""
        async with self._lock:
            await self._ensure_floors()

    async def _ensure_floors(self) -> None:
        if self._floors is None:
            ends = await self._end_offsets(list(self._roles))
            self._floors = {self._roles[t]: parts for t, parts in ends.items()}

    async def records_waiting(self) -> None:
        """Return once a live session's record waits to be published (at once if one does)."""
        await self._waiting.wait()

    @property
    def pending(self) -> int:
        """Records queued and not yet published."""
        return len(self._records)

    async def publish(self) -> None:
        """Send the queued records, wait for them, then the progress records (see module)."""
        async with self._lock:
            records, self._records = self._records, []
            self._waiting.clear()
            taken, self._event_times = self._event_times, []
            after, self._after = self._after, []
            firsts = [(sid, snapshot()) for sid, snapshot in self._first.items()]
            self._first.clear()
            states = [(sid, snapshot()) for sid, snapshot in self._dirty.items()]
            self._dirty.clear()
            tombstones, self._tombstones = self._tombstones, []
            if not records and not states and not firsts and not tombstones:
                for callback in after:
                    callback()
                return
            try:
                await self._ensure_floors()
                await self._write_progress(firsts)
                sent = time.monotonic()
                self._advance(await self._sender.send(records))
                acked = time.monotonic()
                metrics.PUBLISH_ACK_LATENCY.observe(acked - sent)
                for _key, at in taken:
                    metrics.EVENT_PUBLISH_LATENCY.observe(acked - at)
                events = sum(topic == self.topics.events for topic, _, _ in records)
                self.published_events += events
                if self._crash_at is not None and events:
                    self._crash_at.check(self.published_events)
                for callback in after:
                    callback()
                await self._write_progress(states, tombstones)
            except BaseException:
                # Nothing is lost silently: the caller's flush fails, offsets stay put, and
                # the records are redelivered to whoever owns the partitions next.
                self._records = records + self._records
                self._tombstones = tombstones + self._tombstones
                self._event_times = taken + self._event_times
                if any(key in self._live for _topic, key, _value in self._records):
                    self._waiting.set()
                raise
            self.published += len(records)
            _log.debug("outbox_published", records=len(records), progress=len(states))

    async def _write_progress(
        self, states: list[tuple[str, SessionProgress]], tombstones: Sequence[str] = ()
    ) -> None:
        """The progress records (and the tombstones of sessions no owner needs again)."""
        floors = self._floors or {}
        topic = self.topics.session_state
        writes: list[tuple[str, bytes, bytes | None]] = []
        for sid, progress in states:
            progress.readback = {role: dict(parts) for role, parts in floors.items()}
            writes.append((topic, sid.encode(), progress.to_json()))
        writes += [(topic, sid.encode(), None) for sid in tombstones]
        if writes:
            await self._sender.send(writes)

    def _advance(self, acked: list[Acked]) -> None:
        """Raise the read-back floors past the records just acknowledged."""
        floors = self._floors
        assert floors is not None
        for batch in acked:
            role = self._roles.get(batch.topic)
            if role is not None:
                parts = floors.setdefault(role, {})
                parts[batch.partition] = max(parts.get(batch.partition, 0), batch.last_offset + 1)

    def _add(self, name: str, topic: str, key: str, datum: dict[str, Any]) -> None:
        encoded = key.encode()
        self._records.append((topic, encoded, self._codec.encode(name, datum, topic=topic)))
        if encoded in self._live:
            self._waiting.set()
