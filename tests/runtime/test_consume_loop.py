"""The consume -> process -> flush -> commit loop against the real broker.

Every wait has its own deadline and fails saying what did not arrive.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence

import pytest
from aiokafka import TopicPartition

from runtime.batch_handler import Backpressure, BatchHandler, BlockingBatchHandler, Record
from runtime.consume_loop import ConsumeLoop, LoopOptions
from runtime.errors import FlushError
from runtime.kafka import make_admin, make_producer

pytestmark = pytest.mark.kafka

WAIT_S = 30.0
NEVER = LoopOptions(commit_interval_s=3600.0, commit_every=0, poll_timeout_ms=200)
FAST_GROUP = {"heartbeat_interval_ms": 300, "session_timeout_ms": 10000}

Seen = tuple[int, int, bytes]  # partition, offset, value


class RecordingHandler(BatchHandler):
    """Remembers every call in order; can fail its flush or push back."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.seen: list[Seen] = []
        self.fail_flush = False
        self.pressure: Backpressure | None = None
        self.may_resume = False

    async def process(self, records: Sequence[Record]) -> Backpressure | None:
        batch = [(r.partition, r.offset, r.value) for r in records]
        self.seen.extend(batch)
        self.events.append(("process", len(batch)))
        pressure, self.pressure = self.pressure, None
        return pressure

    async def flush(self) -> None:
        self.events.append(("flush", len(self.seen)))
        if self.fail_flush:
            raise OSError("sink unreachable")

    async def on_assign(self, partitions: frozenset[TopicPartition]) -> None:
        self.events.append(("assign", sorted(tp.partition for tp in partitions)))

    async def on_revoke(self, partitions: frozenset[TopicPartition]) -> None:
        self.events.append(("revoke", sorted(tp.partition for tp in partitions)))

    async def resumable(self, paused: frozenset[TopicPartition]) -> frozenset[TopicPartition]:
        return paused if self.may_resume else frozenset()


async def produce(topic: str, count: int, *, partitions: int = 1, start: int = 0) -> list[Seen]:
    """``count`` records spread round-robin over ``partitions``; what was written where."""
    producer = make_producer()
    await producer.start()
    written: list[Seen] = []
    try:
        for n in range(start, start + count):
            value = f"r{n}".encode()
            meta = await producer.send_and_wait(topic, value, partition=n % partitions)
            written.append((meta.partition, meta.offset, value))
    finally:
        await producer.stop()
    return written


async def run_until(loop: ConsumeLoop, count: int) -> None:
    """Run ``loop`` until it processed ``count`` more records (own deadline)."""
    before = loop.stats.records
    await loop.run(max_records=count, timeout_s=WAIT_S)
    got = loop.stats.records - before
    assert got == count, f"only {got} of {count} records arrived within {WAIT_S:g} s"


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT_S:g} s")
        await asyncio.sleep(0.05)


async def group_offsets(group: str) -> dict[int, int]:
    admin = make_admin()
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def new_group() -> str:
    return f"loop-{uuid.uuid4().hex[:10]}"


async def test_records_are_committed_only_after_the_flush(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=2)
    written = await produce(topic, 10, partitions=2)
    group = new_group()
    handler = RecordingHandler()
    async with ConsumeLoop(handler, [topic], group_id=group, options=NEVER) as loop:
        await run_until(loop, 10)
        assert sorted(handler.seen) == sorted(written)
        assert [e for e in handler.events if e[0] == "flush"] == []
        assert await group_offsets(group) == {}  # processed, not flushed: nothing committed
        assert loop.pending_offsets == {TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 5}

        committed = await loop.checkpoint()

        assert committed == {TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 5}
        assert handler.events[-1] == ("flush", 10)
        assert await group_offsets(group) == {0: 5, 1: 5}
        assert loop.pending_offsets == {}
        assert await loop.checkpoint() == {}  # nothing new: no flush, no commit
        assert [e for e in handler.events if e[0] == "flush"] == [("flush", 10)]
    assert loop.stats.checkpoints == 1


async def test_commit_every_records(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic()
    await produce(topic, 6)
    group = new_group()
    handler = RecordingHandler()
    options = LoopOptions(commit_interval_s=3600.0, commit_every=3, max_batch_records=3)
    async with ConsumeLoop(handler, [topic], group_id=group, options=options) as loop:
        await run_until(loop, 6)
        assert await group_offsets(group) == {0: 6}
    assert [e for e in handler.events if e[0] == "flush"] == [("flush", 3), ("flush", 6)]


async def test_failed_flush_commits_nothing_and_run_raises(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic()
    written = await produce(topic, 5)
    group = new_group()
    handler = RecordingHandler()
    handler.fail_flush = True
    options = LoopOptions(commit_interval_s=3600.0, commit_every=5)
    loop = ConsumeLoop(handler, [topic], group_id=group, options=options)
    await loop.start()
    try:
        with pytest.raises(FlushError) as caught:
            await loop.run(timeout_s=WAIT_S)
        assert str(caught.value) == f"handler flush failed, offsets not committed: {topic}[0]@5"
        assert isinstance(caught.value.__cause__, OSError)
        with pytest.raises(FlushError):  # the loop stays failed
            await loop.checkpoint()
    finally:
        await loop.stop()  # does not commit after a failure, does not raise again
    assert await group_offsets(group) == {}

    again = RecordingHandler()
    async with ConsumeLoop(again, [topic], group_id=group, options=NEVER) as second:
        await run_until(second, 5)
    assert again.seen == written  # redelivered: nothing was lost


async def test_crash_without_commit_redelivers_the_uncommitted_records(
    kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic()
    written = await produce(topic, 6)
    group = new_group()
    first = RecordingHandler()
    loop = ConsumeLoop(first, [topic], group_id=group, options=NEVER)
    await loop.start()
    await run_until(loop, 3)
    await loop.checkpoint()
    await run_until(loop, 3)
    await loop.abort()  # a crash: processed, never flushed or committed
    await loop.abort()
    assert first.seen == written
    assert await group_offsets(group) == {0: 3}

    second = RecordingHandler()
    async with ConsumeLoop(second, [topic], group_id=group, options=NEVER) as resumed:
        await run_until(resumed, 3)
    assert second.seen == written[3:]
    assert await group_offsets(group) == {0: 6}


async def test_rebalance_flushes_and_commits_on_revoke(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=4)
    first_half = await produce(topic, 20, partitions=4)
    group = new_group()
    a_handler, b_handler = RecordingHandler(), RecordingHandler()
    a = ConsumeLoop(a_handler, [topic], group_id=group, options=NEVER, **FAST_GROUP)
    b = ConsumeLoop(b_handler, [topic], group_id=group, options=NEVER, **FAST_GROUP)
    async with a:
        await run_until(a, 20)
        assert await group_offsets(group) == {}
        a_task = asyncio.create_task(a.run())
        try:
            async with b:
                b_task = asyncio.create_task(b.run())
                try:
                    await wait_for(
                        lambda: (
                            len(b.consumer.assignment()) == 2 and len(a.consumer.assignment()) == 2
                        ),
                        "the rebalance giving each member 2 of 4 partitions",
                    )
                    # A's revoke flushed everything it processed, then committed it.
                    revoke_at = next(
                        i for i, e in enumerate(a_handler.events) if e == ("revoke", [0, 1, 2, 3])
                    )
                    assert a_handler.events[revoke_at - 1] == ("flush", 20)
                    assert await group_offsets(group) == {0: 5, 1: 5, 2: 5, 3: 5}
                    b_assigned = set(b.consumer.assignment())
                    second_half = await produce(topic, 20, partitions=4, start=20)
                    await wait_for(
                        lambda: len(a_handler.seen) + len(b_handler.seen) >= 40,
                        "40 records processed by the two members",
                    )
                finally:
                    b.request_stop()
                    await b_task
            await wait_for(lambda: len(a.consumer.assignment()) == 4, "A owning all 4 again")
        finally:
            a.request_stop()
            await a_task
    seen = a_handler.seen + b_handler.seen
    assert len(seen) == 40  # nothing processed twice after the clean revokes
    assert sorted(seen) == sorted(first_half + second_half)
    assert {p for p, _, _ in b_handler.seen} == {
        tp.partition for tp in b_assigned
    }  # B only ever got its own two partitions
    assert await group_offsets(group) == {0: 10, 1: 10, 2: 10, 3: 10}


async def test_pause_on_backpressure_and_resume(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic()
    written = await produce(topic, 9)
    tp = TopicPartition(topic, 0)
    handler = RecordingHandler()
    handler.pressure = Backpressure(frozenset({tp}))
    options = LoopOptions(commit_interval_s=3600.0, commit_every=0, max_batch_records=3)
    async with ConsumeLoop(handler, [topic], group_id=new_group(), options=options) as loop:
        await run_until(loop, 3)
        assert loop.consumer.paused() == {tp}
        # Paused: a bounded run hands over nothing more (the handler does not resume yet).
        await loop.run(timeout_s=1.0)
        assert handler.seen == written[:3]
        assert loop.consumer.paused() == {tp}

        handler.may_resume = True
        handler.pressure = Backpressure(frozenset({tp}), retry_after_s=0.0)
        await run_until(loop, 6)
        assert loop.consumer.paused() == set()
    assert handler.seen == written
    assert [e for e in handler.events if e[0] == "process"] == [("process", 3)] * 3


class ThreadHandler(BlockingBatchHandler):
    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.values: list[bytes] = []

    def process_blocking(self, records: Sequence[Record]) -> Backpressure | None:
        self.threads.add(threading.current_thread().name)
        self.values.extend(r.value for r in records)
        return None

    def flush_blocking(self) -> None:
        self.threads.add(threading.current_thread().name)


async def test_blocking_handler_runs_off_the_event_loop(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic()
    await produce(topic, 4)
    handler = ThreadHandler()
    async with ConsumeLoop(handler, [topic], group_id=new_group(), options=NEVER) as loop:
        await run_until(loop, 4)
        await loop.checkpoint()
    assert handler.values == [b"r0", b"r1", b"r2", b"r3"]
    assert threading.current_thread().name not in handler.threads
    assert len(handler.threads) >= 1


async def test_lifecycle_is_idempotent_and_stop_flag_ends_run(
    kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic()
    loop = ConsumeLoop(RecordingHandler(), [topic], group_id=new_group(), options=NEVER)
    with pytest.raises(RuntimeError, match="ConsumeLoop is not started"):
        await loop.run(timeout_s=0.1)
    await loop.start()
    await loop.start()
    loop.request_stop()
    stats = await loop.run()  # returns at once: the stop flag is set
    assert stats.records == 0
    await loop.stop()
    await loop.stop()
    await loop.abort()


async def test_failed_flush_on_revoke_stops_the_loop(kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic(partitions=2)
    written = await produce(topic, 4, partitions=2)
    group = new_group()
    a_handler, b_handler = RecordingHandler(), RecordingHandler()
    a = ConsumeLoop(a_handler, [topic], group_id=group, options=NEVER, **FAST_GROUP)
    b = ConsumeLoop(b_handler, [topic], group_id=group, options=NEVER, **FAST_GROUP)
    await a.start()
    try:
        await run_until(a, 4)
        a_handler.fail_flush = True
        a_task = asyncio.create_task(a.run())
        async with b:
            done, _ = await asyncio.wait({a_task}, timeout=WAIT_S)
            assert done, f"A's run() did not end within {WAIT_S:g} s of the failed revoke flush"
            with pytest.raises(FlushError) as caught:
                a_task.result()
            assert str(caught.value) == (
                f"handler flush failed, offsets not committed: {topic}[0]@2, {topic}[1]@2"
            )
            assert ("revoke", [0, 1]) not in a_handler.events  # state kept: nothing durable
            await a.abort()  # leaves the group: B takes both partitions
            assert await group_offsets(group) == {}
            await run_until(b, 4)
            assert sorted(b_handler.seen) == sorted(written)  # redelivered, nothing lost
    finally:
        await a.abort()
