"""Read back what was published for sessions beyond their saved progress (failover).

The outbox writes a session's progress after the events and usage it describes are
acknowledged; a crash in between leaves records on the events and usage topics that the
progress does not know of. Re-analysis after the failover does not repeat a window's events
exactly, so republishing such a window would add events a clean run never has; and a
connection number the progress never named would be used twice. The new owner therefore
reads both topics from each session's ``readback`` offsets to their end (one pass shared by
all the sessions it restores, records filtered by key) and raises the progress to what was
published: the incarnation (events and usage carry it), the watermark (each incarnation's
events are placed in their windows again by :class:`WindowPlacer`, in publication order) and
the usage position. The watermark is the last window known to be *complete*: one followed by
a later window of the same connection, or by its ``session.ended``. A connection's last
window may have been cut by the crash (its events come in several messages, published in
several ticks), so the new connection publishes it again; its events keep their ids.

A window is recovered from the events themselves, so one whose first events before the
crash were all placed by a later anchor (none in the log) stays unpublished: it is
re-analysed, as it would be without the read-back.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from runtime.kafka import make_consumer
from runtime.logs import get_logger
from runtime.settings import KafkaSettings
from schemas.codec import Codec
from schemas.exceptions import CodecError
from schemas.inter1_events import UNKNOWN_EVENT
from workers.session.events import EventContext, WindowPlacer
from workers.session.state_store import SessionProgress

__all__ = ["Published", "apply_published", "end_offsets", "read_back", "summarise"]

_log = get_logger("workers.session.readback")


@dataclass
class Published:
    """What the log holds for one session beyond its progress record."""

    incarnation: int = -1
    watermark_s: float | None = None
    grid_origin_s: float | None = None
    reach_s: float = 0.0
    accounted_ms: int = 0
    events: int = 0
    usage: int = 0


async def end_offsets(
    topics: list[str], settings: KafkaSettings | None = None
) -> dict[str, dict[int, int]]:
    """Topic -> partition -> end offset, for every partition of ``topics``."""
    consumer = make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topics)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    found: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for tp, end in ends.items():
        found[tp.topic][tp.partition] = end
    return found


async def _partitions(consumer: Any, topics: Iterable[str]) -> list[TopicPartition]:
    tps: list[TopicPartition] = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()  # a topic created just now
            parts = consumer.partitions_for_topic(topic) or ()
        tps.extend(TopicPartition(topic, p) for p in sorted(parts))
    return tps


async def read_back(
    progress: Mapping[str, SessionProgress],
    roles: Mapping[str, str],
    codec: Codec,
    *,
    window_s: float,
    hop_s: float,
    settings: KafkaSettings | None = None,
) -> dict[str, Published]:
    """What ``roles``' topics (topic -> ``events``/``usage``) hold for these sessions at or
    after each one's ``readback`` offsets; sessions without offsets are skipped."""
    starts = _starts(progress, roles)
    if not starts:
        return {}
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    usage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    consumer = make_consumer(group_id=None, settings=settings, isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign(list(starts))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(starts))
        todo = {tp for tp, start in starts.items() if ends[tp] > start}
        for tp in todo:
            consumer.seek(tp, starts[tp])
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batches.items():
                role = roles[tp.topic]
                found = events if role == "events" else usage
                for record in records:
                    if record.offset < ends[tp]:
                        _collect(record, role, progress, codec, found)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return {
        sid: summarise(
            events.get(sid, []), usage.get(sid, []), window_s, hop_s, progress=progress[sid]
        )
        for sid in set(events) | set(usage)
    }


def _starts(
    progress: Mapping[str, SessionProgress], roles: Mapping[str, str]
) -> dict[TopicPartition, int]:
    """Where the read-back starts on each partition: the lowest offset any session names."""
    starts: dict[TopicPartition, int] = {}
    for item in progress.values():
        for topic, role in roles.items():
            for part, offset in item.readback.get(role, {}).items():
                tp = TopicPartition(topic, part)
                starts[tp] = min(starts.get(tp, offset), offset)
    return starts


def _collect(
    record: ConsumerRecord[bytes, bytes],
    role: str,
    progress: Mapping[str, SessionProgress],
    codec: Codec,
    found: dict[str, list[dict[str, Any]]],
) -> None:
    """Keep ``record`` if it is a restored session's and at or past its read-back offset."""
    sid = record.key.decode(errors="replace") if record.key else ""
    item = progress.get(sid)
    if item is None or record.value is None:
        return
    if record.offset < item.readback.get(role, {}).get(record.partition, 0):
        return
    try:
        found[sid].append(codec.decode(record.value, topic=record.topic).datum)
    except CodecError as exc:
        _log.warning("readback_unreadable", session_id=sid, offset=record.offset, error=str(exc))


def _envelope(event: Mapping[str, Any]) -> dict[str, Any]:
    branch, data = event["payload"]
    if branch == UNKNOWN_EVENT:
        raw = json.loads(data["raw_json"])
        return raw if isinstance(raw, dict) else {"type": event["event_type"]}
    return {"type": event["event_type"], "data": data}


def summarise(
    events: list[dict[str, Any]],
    usage: list[dict[str, Any]],
    window_s: float,
    hop_s: float,
    *,
    progress: SessionProgress | None = None,
) -> Published:
    """What one session's read-back ``Inter1Event`` and ``UsageRecord`` data amount to;
    ``progress`` (the saved state the read-back starts from) names the window its
    connection had open then, which a later window of that connection completes."""
    found = Published(events=len(events), usage=len(usage))
    by_incarnation: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_incarnation[event["incarnation"]].append(event)
        found.incarnation = max(found.incarnation, event["incarnation"])
    for incarnation, group in sorted(by_incarnation.items()):
        group.sort(key=lambda e: e["event_seq"])
        offset = group[0]["media_offset_s"]
        context = EventContext(group[0]["session_id"], group[0]["api_version"], incarnation, offset)
        placer = WindowPlacer(context, window_s=window_s, hop_s=hop_s)
        complete: list[float] = []  # windows a later window (or the end) shows were finished
        latest = None
        if progress is not None and progress.incarnation == incarnation:
            latest = progress.open_window_s
        for event in group:
            for placed in placer.add(_envelope(event)):
                if placed.window_s is not None and (latest is None or placed.window_s > latest):
                    if latest is not None:
                        complete.append(latest)
                    latest = placed.window_s
                if placed.reach_s is not None:
                    found.reach_s = max(found.reach_s, placed.reach_s)
            if event["event_type"] == "session.ended" and latest is not None:
                complete.append(latest)
        if complete and max(complete) > (
            found.watermark_s if found.watermark_s is not None else -math.inf
        ):
            found.watermark_s, found.grid_origin_s = max(complete), offset
    for record in usage:
        found.incarnation = max(found.incarnation, record["incarnation"])
        if record["reanalysed_s"] == 0:
            found.accounted_ms = max(found.accounted_ms, round(record["media_end_s"] * 1000))
    return found


def apply_published(progress: SessionProgress, found: Published) -> bool:
    """Raise ``progress`` to what was published; True when anything changed."""
    before = progress.copy()
    progress.incarnation = max(progress.incarnation, found.incarnation)
    if found.watermark_s is not None and (
        progress.watermark_s is None or found.watermark_s > progress.watermark_s
    ):
        progress.watermark_s = found.watermark_s
        if found.grid_origin_s is not None:
            progress.grid_origin_s = found.grid_origin_s
    progress.reach_s = max(progress.reach_s, found.reach_s)
    if found.accounted_ms > progress.accounted_ms:
        progress.accounted_ms = found.accounted_ms
        progress.dropped = [(a, b, r) for a, b, r in progress.dropped if b > found.accounted_ms]
        progress.degraded = [(a, b) for a, b in progress.degraded if b > found.accounted_ms]
    return progress != before
