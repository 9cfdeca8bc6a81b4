"""What a consume loop hands records to: the handler protocol, backpressure, blocking work.

A handler turns records into durable output (events produced to Kafka, rows inserted
into ClickHouse). :class:`runtime.consume_loop.ConsumeLoop` commits a record's offset
only after :meth:`BatchHandler.flush` returned following the record's
:meth:`BatchHandler.process`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeAlias, TypeVar

from aiokafka import ConsumerRecord, TopicPartition

__all__ = ["Backpressure", "BatchHandler", "BlockingBatchHandler", "Record", "run_blocking"]

Record: TypeAlias = ConsumerRecord[bytes, bytes]
"""A consumed record; key and value are raw bytes (decoding is the handler's job)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Backpressure:
    """The handler is full for these partitions: stop fetching them for now.

    Attributes:
        partitions: the partitions to pause (the records already handed over stay accepted).
        retry_after_s: resume after this many seconds; None resumes when
            :meth:`BatchHandler.resumable` names the partition.
    """

    partitions: frozenset[TopicPartition]
    retry_after_s: float | None = None


class BatchHandler(ABC):
    """The work a consume loop does; every method runs on the event loop.

    Blocking calls (a synchronous ClickHouse insert, a registry lookup) belong in
    :func:`run_blocking`, or subclass :class:`BlockingBatchHandler`.
    """

    @abstractmethod
    async def process(self, records: Sequence[Record]) -> Backpressure | None:
        """Take a batch (in offset order per partition); optionally ask for a pause.

        Raising stops the loop without committing this batch.
        """

    @abstractmethod
    async def flush(self) -> None:
        """Make durable everything produced for the records processed so far.

        A producer flush (every send acknowledged) or a sink insert. Raising means
        nothing is committed and the loop stops with :class:`runtime.errors.FlushError`.
        """

    async def on_assign(self, partitions: frozenset[TopicPartition]) -> None:
        """These partitions were assigned (their next records follow the committed offset)."""
        return

    async def on_revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """These partitions move away; their work was flushed and committed: drop its state."""
        return

    async def resumable(self, paused: frozenset[TopicPartition]) -> frozenset[TopicPartition]:
        """Which of the partitions paused without a retry time may be fetched again."""
        return paused


class BlockingBatchHandler(BatchHandler):
    """A handler whose work is synchronous: each call runs in a worker thread.

    Calls never overlap (the loop awaits each), so the sync methods need no locking.
    """

    @abstractmethod
    def process_blocking(self, records: Sequence[Record]) -> Backpressure | None:
        """:meth:`BatchHandler.process`, in a worker thread."""

    @abstractmethod
    def flush_blocking(self) -> None:
        """:meth:`BatchHandler.flush`, in a worker thread."""

    async def process(self, records: Sequence[Record]) -> Backpressure | None:
        return await run_blocking(self.process_blocking, records)

    async def flush(self) -> None:
        await run_blocking(self.flush_blocking)


async def run_blocking(func: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run a blocking call in a worker thread so the event loop (heartbeats, fetches) goes on."""
    return await asyncio.to_thread(func, *args, **kwargs)
