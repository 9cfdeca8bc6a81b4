"""Handoff: a bounded thread -> event loop queue (order, backpressure, stop, interrupt)."""

from __future__ import annotations

import asyncio
import threading

from producers.handoff import Handoff


async def test_items_arrive_in_order_and_the_worker_blocks_while_full() -> None:
    stop = threading.Event()
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), 2, stop, poll_s=0.01)
    put_done = threading.Event()

    def worker() -> None:
        for number in range(3):
            handoff.put(number)
        put_done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.sleep(0.1)
    blocked = not put_done.is_set()  # two items wait; the third put waits for a free slot
    got = [await handoff.get() for _ in range(3)]
    await asyncio.to_thread(thread.join)

    assert blocked
    assert got == [0, 1, 2]


async def test_a_blocked_put_gives_up_when_stopped() -> None:
    stop = threading.Event()
    handoff: Handoff[str] = Handoff(asyncio.get_running_loop(), 1, stop, poll_s=0.01)
    assert handoff.put("first")
    stop.set()

    assert not await asyncio.to_thread(handoff.put, "second")
    assert await handoff.get() == "first"


async def test_interrupt_wakes_a_waiting_get() -> None:
    handoff: Handoff[str] = Handoff(asyncio.get_running_loop(), 1, threading.Event())
    waiting = asyncio.ensure_future(handoff.get())
    await asyncio.sleep(0)
    handoff.interrupt()

    assert await waiting is None


async def test_a_batch_reaches_the_loop_when_full_or_on_the_last_item() -> None:
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), 4, threading.Event(), batch=2)
    handoff.put(1)
    await asyncio.sleep(0.01)
    held = handoff._queue.qsize()  # one item: still in the worker's batch
    handoff.put(2)
    handoff.put(3, last=True)
    got = [await handoff.get() for _ in range(3)]

    assert held == 0
    assert got == [1, 2, 3]
