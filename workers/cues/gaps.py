"""Never apply an event while an earlier one of its partition was skipped: seek back instead.

faust's stream drops, without handing it to the agent, an event it reads while a rebalance
is under way (flow control inactive) or that was fetched under an older consumer generation
(``Stream._c_aiter``/``_py_aiter``). Such an event is not acked; faust counts on its seek to
the committed offsets at the end of the rebalance to fetch it again. But events of the same
stale fetch that the stream reads once flow resumes are processed: the agent then applies
``N+1`` while ``N`` was dropped. The drill (kill -9 under load) saw both outcomes:

- ``N+1`` applied first, so the session's ``applied_offset`` passed ``N`` and the refetched
  ``N`` was taken for a replay: the event was never applied (17 of 18 events);
- faust's commit counts offsets from its acked list; with ``N`` missing at its head it
  either commits past ``N`` (its gap check lets the list start one above the committed
  offset) or stops for good at ``N`` (the stalls: committed 14/18 and 17/18, forever).

:class:`OffsetGuard` knows the next offset the agent must see on each partition: the one
after the last it handled, or after a rebalance the group's committed offset (where faust
seeks to). An event beyond it is not processed and not counted (``message.acked`` set, so
faust's ack leaves it out of the committable offsets); the partition is sought back to the
expected offset, from where the events come again, in order. Events below it are replays,
which ``applied_offset`` makes no-ops. When skipped events are the partition's last ones,
no later event reveals the gap: :meth:`OffsetGuard.refetch_if_stalled`, run every few
seconds, seeks back a partition that has events past the expected one and got none since
its previous run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.types import TP

from runtime.kafka import make_admin
from runtime.logs import get_logger

__all__ = ["OffsetGuard", "committed_offset"]

CommittedLookup = Callable[[TP], Awaitable[int | None]]
"""The group's committed offset of a partition (the next one to read), None if none."""


async def committed_offset(group_id: str, tp: TP) -> int | None:
    """The group's committed offset of ``tp`` (next to read); None if none or unreachable."""
    admin = make_admin()
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(
            group_id, partitions=[TopicPartition(tp.topic, tp.partition)]
        )
    except KafkaError as exc:
        get_logger("workers.cues", topic=tp.topic, partition=tp.partition).warning(
            "committed offset not known: events of the partition are not checked for gaps",
            error=repr(exc),
        )
        return None
    finally:
        await admin.close()
    found = offsets.get(TopicPartition(tp.topic, tp.partition))
    return found.offset if found is not None and found.offset >= 0 else None


class OffsetGuard:
    """Per events partition: the offset the agent must handle next."""

    def __init__(self, committed: CommittedLookup) -> None:
        self._committed = committed
        self._next: dict[TP, int | None] = {}
        self._last_gap: dict[TP, tuple[int, int]] = {}
        self._arrivals: dict[TP, int] = {}
        self._arrivals_seen: dict[TP, int] = {}

    def reset(self) -> None:
        """A rebalance: the consumer seeks to the committed offsets; ask for them again."""
        self._next.clear()
        self._last_gap.clear()

    async def admit(self, app: Any, event: Any) -> bool:
        """True: process ``event``. False: an earlier event was skipped; it is refetched."""
        message = event.message
        tp = TP(message.topic, message.partition)
        self._arrivals[tp] = self._arrivals.get(tp, 0) + 1
        if tp not in self._next:
            self._next[tp] = await self._committed(tp)
        expected = self._next[tp]
        if expected is None or message.offset <= expected:
            return True
        log = get_logger(
            "workers.cues",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        if self._last_gap.get(tp) == (expected, message.offset):
            # Sought back and the log starts here again: the events before are not in the
            # log any more (retention); waiting for them would stop the partition for good.
            log.warning("events before this one are gone from the log", expected_offset=expected)
            return True
        self._last_gap[tp] = (expected, message.offset)
        log.warning(
            "events skipped by the stream before this one: seeking back",
            expected_offset=expected,
            generation=message.generation_id,
            app_generation=app.consumer_generation_id,
        )
        message.acked = True  # faust's ack must not make its offset committable
        app.consumer.unacked.discard(message)
        await app.consumer.seek_wait({tp: expected})
        return False

    def handled(self, event: Any) -> None:
        """``event`` was processed (applied, replayed or dead-lettered)."""
        message = event.message
        self._next[TP(message.topic, message.partition)] = message.offset + 1

    async def refetch_if_stalled(self, app: Any, tp: TP) -> None:
        """Seek ``tp`` back if it has events past the expected one but none arrived lately.

        Called periodically. Skipped events the stream never sees again (no event after
        them arrives, so :meth:`admit` cannot notice) would stop the partition's commits
        for good; a seek back has them fetched again. Refetched events already handled are
        replays (no-ops), so a false alarm (a slow event) costs only a replay.
        """
        if app.rebalancing or not app.flow_control.is_active():
            return  # faust seeks to the committed offsets when the rebalance ends
        arrivals = self._arrivals.get(tp, 0)
        quiet = self._arrivals_seen.get(tp) == arrivals
        self._arrivals_seen[tp] = arrivals
        if not quiet:
            return
        if tp not in self._next:
            self._next[tp] = await self._committed(tp)
        expected = self._next[tp]
        end = app.consumer.highwater(tp)
        if expected is None or end is None or end <= expected:
            return
        get_logger("workers.cues", topic=tp.topic, partition=tp.partition).warning(
            "no events arrive though the partition has more: seeking back",
            expected_offset=expected,
            end_offset=end,
        )
        await app.consumer.seek_wait({tp: expected})
