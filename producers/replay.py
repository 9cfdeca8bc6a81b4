"""Publish the spools a producer left behind when it exited during a Kafka outage.

At start, ``produce`` looks for spool files no running process holds (see
:func:`producers.spool.orphan_spools`) and publishes each, in order, alongside its own
sources. A session whose spool does not end with its SessionEnded (the producer was
killed, or stopped while Kafka was still down) gets one: reason ``stopped``, with the
totals stored with the last spooled chunk, so every started session still ends exactly
once. A spool that cannot be read is renamed ``*.corrupt`` and reported, never published.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from producers.delivery import OutagePolicy, SessionDelivery
from producers.exceptions import SpoolCorruptError, SpoolLockedError
from producers.publisher import Publisher
from producers.records import SessionTotals, session_ended, utc_now
from producers.session import RecordEncoder
from producers.spool import Spool, SpoolBudget, SpoolRecord
from runtime.logs import get_logger

__all__ = ["ORPHAN_END_MESSAGE", "ReplayResult", "replay_spool"]

ORPHAN_END_MESSAGE = (
    "the producer exited during a Kafka outage; its spooled records were published by the "
    "next start"
)
_WINDOW = 8
_log = get_logger("producers.replay")


@dataclass
class ReplayResult:
    """What became of one left-over spool."""

    path: Path
    session_id: str | None = None
    records: int = 0
    published: bool = False
    error: str | None = None


async def replay_spool(
    path: Path,
    publisher: Publisher,
    *,
    encoder: RecordEncoder,
    policy: OutagePolicy,
    stop: asyncio.Event,
) -> ReplayResult:
    """Publish one left-over spool (ending its session if it was not ended)."""
    result = ReplayResult(path)
    spool = Spool(path, None, policy.budget or SpoolBudget(0))
    try:
        await asyncio.to_thread(spool.open)
    except SpoolLockedError:
        return result  # another producer took it meanwhile
    except SpoolCorruptError as exc:
        aside = path.with_name(path.name + ".corrupt")
        await asyncio.to_thread(path.rename, aside)
        result.error = f"{exc} (moved to {aside})"
        _log.error("spool_corrupt", spool=str(path), moved_to=str(aside), error=str(exc))
        return result
    session_id = spool.session_id or ""
    result.session_id, result.records = session_id, spool.records
    last = spool.last()
    if last is not None and last.record.kind != "ended":
        topic = spool.session_topic() or publisher.topic  # dead letters go elsewhere
        totals = SessionTotals(**json.loads(spool.totals() or "{}"))
        ended = session_ended(session_id, "stopped", ORPHAN_END_MESSAGE, totals, utc_now())
        value = encoder.encode(ended.AVRO_NAME, ended.to_avro(), topic=topic)
        record = SpoolRecord(topic, session_id.encode("utf-8"), value, "ended")
        await asyncio.to_thread(spool.append, [record], force=True)
        result.records += 1
        _log.warning("spool_session_ended", session_id=session_id, spool=str(path))
    delivery = SessionDelivery(
        publisher, session_id, spool=spool, ack_timeout_s=policy.ack_timeout_s, window=_WINDOW
    )
    try:
        await delivery.resume()
        result.published = await delivery.flush(stop, policy.stop_timeout_s)
    finally:
        await delivery.close()
    _log.info(
        "spool_published" if result.published else "spool_not_published",
        session_id=session_id,
        records=result.records,
    )
    return result
