"""The one consume -> process -> flush -> commit loop of the session worker and the sink.

A checkpoint is: :meth:`BatchHandler.flush` (everything produced so far is durable), then
commit exactly the offsets of the records processed before that flush. Checkpoints run
every ``commit_interval_s`` or ``commit_every`` records, on revoke, and on :meth:`stop`.

Rebalances are eager in aiokafka: every partition is revoked before any is assigned. The
rebalance listener waits for the batch in progress, checkpoints, and only then lets the
partitions move. A failed flush or commit is never logged and skipped: nothing more is
committed, the loop stops and :meth:`run` raises the error (:class:`FlushError` /
:class:`CommitError`); the records are redelivered to the partitions' next owner.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from runtime.batch_handler import Backpressure, BatchHandler, Record
from runtime.errors import CommitError, FlushError, PipelineError
from runtime.kafka import make_consumer, start_client
from runtime.logs import get_logger
from runtime.settings import KafkaSettings

__all__ = ["ConsumeLoop", "LoopOptions", "LoopStats"]

_log = get_logger("runtime.consume_loop")


@dataclass(frozen=True)
class LoopOptions:
    """How often to checkpoint and how to poll.

    Attributes:
        commit_interval_s: checkpoint at most this long after the first uncommitted record.
        commit_every: also checkpoint once this many records are uncommitted (0: never).
        poll_timeout_ms: longest wait for records in one poll.
        max_batch_records: most records handed to one ``process`` call (None: no limit).
    """

    commit_interval_s: float = 1.0
    commit_every: int = 1000
    poll_timeout_ms: int = 500
    max_batch_records: int | None = None


@dataclass
class LoopStats:
    """What the loop did (cumulative over its life)."""

    records: int = 0
    batches: int = 0
    checkpoints: int = 0
    stale_records: int = 0  # polled across a rebalance, handed back: they are fetched again


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, owner: ConsumeLoop) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner._on_revoked(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._owner._on_assigned(frozenset(assigned))


def _describe(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{off}" for tp, off in sorted(offsets.items()))


class ConsumeLoop:
    """Consume ``topics`` in consumer group ``group_id`` and drive ``handler``.

    No I/O until :meth:`start`; ``start``/``stop`` are idempotent; ``async with`` stops
    cleanly on success and aborts (no commit) when the block raised.

    Args:
        handler: does the work (see :class:`BatchHandler`).
        topics: topics to subscribe to.
        group_id: the consumer group.
        options: checkpoint and poll settings.
        settings: Kafka settings (None: from the environment).
        consumer_overrides: extra ``AIOKafkaConsumer`` options (e.g. ``session_timeout_ms``).
    """

    def __init__(
        self,
        handler: BatchHandler,
        topics: Sequence[str],
        *,
        group_id: str,
        options: LoopOptions | None = None,
        settings: KafkaSettings | None = None,
        **consumer_overrides: Any,
    ) -> None:
        self._handler = handler
        self._topics = tuple(topics)
        self._group_id = group_id
        self._options = options or LoopOptions()
        self._settings = settings
        self._overrides = consumer_overrides
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._failure: PipelineError | None = None
        self._pending: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._uncommitted = 0
        self._first_uncommitted_at: float | None = None
        self._paused: dict[TopicPartition, float | None] = {}  # -> resume time (None: ask)
        self._generation = 0  # bumped on every revoke
        self._signals: list[int] = []
        self.stats = LoopStats()

    # lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> ConsumeLoop:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.stop()
        else:
            await self.abort()

    async def start(self) -> None:
        """Create the consumer, join the group (idempotent)."""
        if self._consumer is not None:
            return
        consumer = make_consumer(
            group_id=self._group_id, settings=self._settings, **self._overrides
        )
        consumer.subscribe(list(self._topics), listener=_Listener(self))
        await start_client(consumer, self._settings)
        self._consumer = consumer
        _log.info("consume_loop_started", topics=list(self._topics), group_id=self._group_id)

    async def stop(self) -> None:
        """Checkpoint what was processed, then leave the group (idempotent).

        Raises the checkpoint's :class:`FlushError` / :class:`CommitError` after closing.
        """
        if self._consumer is None:
            return
        failure: PipelineError | None = None
        if self._failure is None:
            async with self._lock:
                try:
                    await self._checkpoint()
                except PipelineError as exc:
                    self._fail(exc)
                    failure = exc
        await self._close()
        if failure is not None:
            raise failure

    async def abort(self) -> None:
        """Leave the group without flushing or committing (like a crash; idempotent)."""
        if self._consumer is None:
            return
        _log.warning("consume_loop_aborted", uncommitted=_describe(self._pending))
        self._pending.clear()
        await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._remove_signal_handlers()
        if consumer is not None:
            await consumer.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (safe from a signal handler)."""
        self._stop.set()

    def handle_signals(self, *signals: int) -> None:
        """Make these signals (default SIGTERM and SIGINT) call :meth:`request_stop`."""
        loop = asyncio.get_running_loop()
        for sig in signals or (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
            self._signals.append(sig)

    def _remove_signal_handlers(self) -> None:
        if not self._signals:
            return
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The started consumer (for inspection: assignment, positions, committed offsets)."""
        if self._consumer is None:
            raise RuntimeError("ConsumeLoop is not started")
        return self._consumer

    @property
    def pending_offsets(self) -> dict[TopicPartition, int]:
        """Offsets processed but not yet committed (the next offset, per partition)."""
        return dict(self._pending)

    # the loop ----------------------------------------------------------------------------

    async def run(
        self, *, timeout_s: float | None = None, max_records: int | None = None
    ) -> LoopStats:
        """Poll, process, checkpoint until stopped; or bounded by time / records (tests).

        Raises the error that stopped the loop: a failed flush or commit (also one during
        a revoke), or whatever ``handler.process`` raised.
        """
        consumer = self.consumer
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        target = None if max_records is None else self.stats.records + max_records
        while not self._stop.is_set():
            self._raise_failure()
            if target is not None and self.stats.records >= target:
                break
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            await self._resume_due(now)
            wait_ms = self._options.poll_timeout_ms
            if deadline is not None:
                wait_ms = max(0, min(wait_ms, int((deadline - now) * 1000)))
            limit = self._options.max_batch_records
            if target is not None:
                left = target - self.stats.records
                limit = left if limit is None else min(limit, left)
            generation = self._generation
            fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=limit)
            async with self._lock:
                self._raise_failure()
                await self._process(fetched, generation)
                if self._checkpoint_due(loop.time()):
                    await self._checkpoint()
        self._raise_failure()
        return self.stats

    async def checkpoint(self) -> dict[TopicPartition, int]:
        """Flush and commit now; returns the offsets committed."""
        async with self._lock:
            self._raise_failure()
            return await self._checkpoint()

    async def _process(self, fetched: dict[TopicPartition, list[Record]], generation: int) -> None:
        if not fetched:
            return
        assigned = self.consumer.assignment()
        if generation != self._generation:
            # A rebalance ran while polling: these records may belong to the old assignment
            # or the new one. Fetch them again from the first one, now that offsets were
            # committed on revoke and positions follow the new assignment.
            for tp, records in fetched.items():
                if tp in assigned and records:
                    self.consumer.seek(tp, records[0].offset)
            self.stats.stale_records += sum(len(rs) for rs in fetched.values())
            return
        partitions = [tp for tp in sorted(fetched) if tp in assigned and fetched[tp]]
        records = [r for tp in partitions for r in fetched[tp]]
        if not records:
            return
        pressure = await self._handler.process(records)
        if self._first_uncommitted_at is None:
            self._first_uncommitted_at = asyncio.get_running_loop().time()
        for tp in partitions:  # offsets ascend within a partition: its last is the next - 1
            self._pending[tp] = fetched[tp][-1].offset + 1
        self._uncommitted += len(records)
        self.stats.records += len(records)
        self.stats.batches += 1
        if pressure is not None:
            self._pause(pressure)

    def _checkpoint_due(self, now: float) -> bool:
        if not self._pending or self._first_uncommitted_at is None:
            return False
        every = self._options.commit_every
        if every and self._uncommitted >= every:
            return True
        return now - self._first_uncommitted_at >= self._options.commit_interval_s

    async def _checkpoint(self) -> dict[TopicPartition, int]:
        """Flush, then commit the offsets processed before the flush (lock held)."""
        offsets = dict(self._pending)
        if not offsets:
            return {}
        try:
            await self._handler.flush()
        except Exception as exc:
            error = FlushError(f"handler flush failed, offsets not committed: {_describe(offsets)}")
            self._fail(error)
            raise error from exc
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            refused = CommitError(
                f"offset commit failed after the flush: {_describe(offsets)}: {exc!r}"
            )
            self._fail(refused)
            raise refused from exc
        for tp, offset in offsets.items():
            if self._pending.get(tp) == offset:
                del self._pending[tp]
            _log.debug("offset_committed", topic=tp.topic, partition=tp.partition, offset=offset)
        self._uncommitted = 0
        self._first_uncommitted_at = None if not self._pending else self._first_uncommitted_at
        self.stats.checkpoints += 1
        return offsets

    def _fail(self, error: PipelineError) -> None:
        if self._failure is None:
            self._failure = error
            _log.error("consume_loop_failed", error=str(error))
        self._stop.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # backpressure ------------------------------------------------------------------------

    def _pause(self, pressure: Backpressure) -> None:
        assigned = self.consumer.assignment()
        partitions = [tp for tp in pressure.partitions if tp in assigned]
        if not partitions:
            return
        resume_at = None
        if pressure.retry_after_s is not None:
            resume_at = asyncio.get_running_loop().time() + pressure.retry_after_s
        self.consumer.pause(*partitions)
        for tp in partitions:
            self._paused[tp] = resume_at
            _log.info(
                "partition_paused",
                topic=tp.topic,
                partition=tp.partition,
                retry_after_s=pressure.retry_after_s,
            )

    async def _resume_due(self, now: float) -> None:
        if not self._paused:
            return
        due = {tp for tp, at in self._paused.items() if at is not None and now >= at}
        asking = frozenset(tp for tp, at in self._paused.items() if at is None)
        if asking:
            due |= await self._handler.resumable(asking) & asking
        if not due:
            return
        assigned = self.consumer.assignment()
        self.consumer.resume(*(tp for tp in due if tp in assigned))
        for tp in due:
            del self._paused[tp]
            _log.info("partition_resumed", topic=tp.topic, partition=tp.partition)

    # rebalances --------------------------------------------------------------------------

    async def _on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """Checkpoint before the partitions move; a failure stops the loop, never skipped."""
        self._generation += 1
        if not revoked or self._consumer is None:
            return
        async with self._lock:
            if self._failure is not None:
                return
            try:
                committed = await self._checkpoint()
                await self._handler.on_revoke(revoked)
            except PipelineError:
                return  # recorded by _fail: run() raises it
            except Exception as exc:
                error = FlushError(f"handler on_revoke failed for {sorted(revoked)}")
                error.__cause__ = exc
                self._fail(error)
                return
            finally:
                for tp in revoked:
                    self._pending.pop(tp, None)
                    self._paused.pop(tp, None)
            for tp in sorted(revoked):
                _log.info(
                    "partition_revoked",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=committed.get(tp),
                )

    async def _on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        for tp in sorted(assigned):
            _log.info("partition_assigned", topic=tp.topic, partition=tp.partition)
        if self._failure is not None:
            return
        try:
            await self._handler.on_assign(assigned)
        except Exception as exc:
            error = FlushError(f"handler on_assign failed for {sorted(assigned)}")
            error.__cause__ = exc
            self._fail(error)
