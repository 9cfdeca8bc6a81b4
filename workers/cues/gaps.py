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
which ``applied_offset`` makes no-ops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TP

from runtime.logs import get_logger

__all__ = ["OffsetGuard"]

CommittedLookup = Callable[[TP], Awaitable[int | None]]
"""The group's committed offset of a partition (the next one to read), None if none."""


class OffsetGuard:
    """Per events partition: the offset the agent must handle next."""

    def __init__(self, committed: CommittedLookup) -> None:
        self._committed = committed
        self._next: dict[TP, int | None] = {}

    def reset(self) -> None:
        """A rebalance: the consumer seeks to the committed offsets; ask for them again."""
        self._next.clear()

    async def admit(self, app: Any, event: Any) -> bool:
        """True: process ``event``. False: an earlier event was skipped; it is refetched."""
        message = event.message
        tp = TP(message.topic, message.partition)
        if tp not in self._next:
            self._next[tp] = await self._committed(tp)
        expected = self._next[tp]
        if expected is None or message.offset <= expected:
            return True
        get_logger(
            "workers.cues",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        ).warning(
            "events skipped by the stream before this one: seeking back",
            expected_offset=expected,
            generation=message.generation_id,
            app_generation=app.consumer_generation_id,
        )
        message.acked = True  # faust's ack must not make its offset committable
        app.consumer.unacked.discard(message)
        await app.consumer.seek(tp, expected)
        return False

    def handled(self, event: Any) -> None:
        """``event`` was processed (applied, replayed or dead-lettered)."""
        message = event.message
        self._next[TP(message.topic, message.partition)] = message.offset + 1
