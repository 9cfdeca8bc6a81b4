"""Per-session progress in the compacted session-state topic (JSON, keyed by session id).

A record is written for every session whose progress changed, in each publish, after
the events and usage it describes are acknowledged and before the chunk offsets are
committed. The new owner of a partition reads the topic back (:func:`read_progress`)
and resumes each open session from its restart chunk (``restart_offset``): a
self-contained chunk far enough before the watermark that the first window to publish
has its full context. ``watermark_s`` (the media time of the last window published
*completely*: a later window began, or the connection ended) decides which re-analysed
events are suppressed.

``readback`` names, per published topic (``events``, ``usage``) and partition, the offset
from which the worker's publications not yet described by this record can be read: the
next owner reads them back (:mod:`workers.session.readback`), so a crash between the
records' acknowledgement and this record loses neither the watermark nor the incarnation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from aiokafka import TopicPartition

from runtime.kafka import make_consumer
from runtime.logs import get_logger
from runtime.settings import KafkaSettings

__all__ = ["STATE_VERSION", "SessionProgress", "read_progress"]

_log = get_logger("workers.session.state_store")
STATE_VERSION = 1
_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass
class SessionProgress:
    """What a new owner needs to resume one video session."""

    session_id: str
    partition: int
    status: str = "open"
    """``open``, ``closed`` (ended normally) or ``failed``."""
    incarnation: int = -1
    """Last Inter-1 connection number used (-1: none yet)."""
    watermark_s: float | None = None
    open_window_s: float | None = None
    """The latest window ``incarnation`` placed; complete only once a later one begins."""
    reach_s: float = 0.0
    accounted_ms: int = 0
    dropped: list[tuple[int, int, str]] = field(default_factory=list)
    degraded: list[tuple[int, int]] = field(default_factory=list)
    restart_offset: int | None = None
    restart_seq: int | None = None
    last_seq: int = -1
    media_end_s: float = 0.0
    grid_origin_s: float = 0.0
    live: bool = False
    tenant: str | None = None
    app: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    readback: dict[str, dict[int, int]] = field(default_factory=dict)
    """Topic role (``events``, ``usage``) -> partition -> first offset not described here."""

    def copy(self) -> SessionProgress:
        """A copy that later changes to this one do not touch."""
        return replace(
            self,
            dropped=list(self.dropped),
            degraded=list(self.degraded),
            labels=dict(self.labels),
            readback={role: dict(parts) for role, parts in self.readback.items()},
        )

    def unclaimed(self, first_offset: int | None, first_seq: int | None) -> SessionProgress:
        """The session as first seen: no connection, window, usage or progress claimed yet
        (written before any of its records, so a crash can never leave records without
        a state that leads back to them)."""
        return SessionProgress(
            session_id=self.session_id,
            partition=self.partition,
            restart_offset=first_offset,
            restart_seq=first_seq,
            live=self.live,
            tenant=self.tenant,
            app=self.app,
            labels=dict(self.labels),
        )

    def to_json(self) -> bytes:
        """The record value (the fields by name, as ``dataclasses.asdict`` would give them;
        written out because ``asdict`` deep-copies every value, a hot spot of each publish)."""
        return _ENCODER.encode(
            {
                "v": STATE_VERSION,
                "session_id": self.session_id,
                "partition": self.partition,
                "status": self.status,
                "incarnation": self.incarnation,
                "watermark_s": self.watermark_s,
                "open_window_s": self.open_window_s,
                "reach_s": self.reach_s,
                "accounted_ms": self.accounted_ms,
                "dropped": self.dropped,
                "degraded": self.degraded,
                "restart_offset": self.restart_offset,
                "restart_seq": self.restart_seq,
                "last_seq": self.last_seq,
                "media_end_s": self.media_end_s,
                "grid_origin_s": self.grid_origin_s,
                "live": self.live,
                "tenant": self.tenant,
                "app": self.app,
                "labels": self.labels,
                "readback": self.readback,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SessionProgress:
        """Read a record value (unknown fields ignored)."""
        raw: dict[str, Any] = json.loads(data)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        progress = cls(**known)
        progress.dropped = [(int(a), int(b), str(r)) for a, b, r in progress.dropped]
        progress.degraded = [(int(a), int(b)) for a, b in progress.degraded]
        progress.readback = {
            str(role): {int(p): int(o) for p, o in parts.items()}
            for role, parts in progress.readback.items()
        }
        return progress


async def read_progress(
    topic: str, partitions: Iterable[int], settings: KafkaSettings | None = None
) -> dict[str, SessionProgress]:
    """The latest progress of every session whose chunk partition is in ``partitions``.

    Reads the whole compacted topic to its end (tombstones delete a session).
    """
    wanted = set(partitions)
    consumer = make_consumer(group_id=None, settings=settings, isolation_level="read_committed")
    await consumer.start()
    latest: dict[str, SessionProgress] = {}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            await consumer._client.force_metadata_update()  # a topic created just now
            parts = consumer.partitions_for_topic(topic) or ()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        todo = {tp for tp, end in ends.items() if end > 0}
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if record.value is None:
                        latest.pop(key, None)
                        continue
                    try:
                        latest[key] = SessionProgress.from_json(record.value)
                    except (ValueError, TypeError, KeyError) as exc:
                        _log.warning("session_state_unreadable", session_id=key, error=repr(exc))
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return {k: v for k, v in latest.items() if v.partition in wanted}
