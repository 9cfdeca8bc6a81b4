"""Hand items from a worker thread to an event loop, with at most ``capacity`` waiting.

The worker blocks on a semaphore while the loop is behind (backpressure) and otherwise
pays one ``call_soon_threadsafe`` per ``batch`` items: it never waits for the loop to take
an item. Waking the loop costs two threads trading the GIL (and often CPU cores), so a
file read as fast as it goes hands chunks over a few at a time; a live source uses
``batch=1`` and every chunk goes out as soon as it is cut.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Generic, TypeVar, cast

__all__ = ["Handoff"]

_T = TypeVar("_T")
_INTERRUPT = object()


class Handoff(Generic[_T]):
    """A bounded thread -> loop queue. Create it on the loop's thread.

    ``capacity`` bounds the items held (batched or queued) at once; it is raised to
    ``batch`` when smaller.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        stop: threading.Event,
        *,
        batch: int = 1,
        poll_s: float = 0.25,
    ) -> None:
        self._loop = loop
        self._slots = threading.Semaphore(max(capacity, batch))
        self._stop = stop
        self._batch_size = max(1, batch)
        self._poll_s = poll_s
        self._batch: list[_T] = []
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def put(self, item: _T, *, last: bool = False) -> bool:
        """Worker thread: queue ``item``, blocking while ``capacity`` items are held.

        The loop is woken once ``batch`` items are held, or at once when ``last``.
        Returns False when ``stop`` was set (the item may not be taken) or the loop is gone.
        """
        while not self._slots.acquire(timeout=self._poll_s):
            if self._stop.is_set():
                return False
        self._batch.append(item)
        if len(self._batch) < self._batch_size and not last:
            return not self._stop.is_set()
        batch, self._batch = self._batch, []
        try:
            self._loop.call_soon_threadsafe(self._enqueue, batch)
        except RuntimeError:  # the loop is closed
            return False
        return not self._stop.is_set()

    def _enqueue(self, batch: list[_T]) -> None:
        for item in batch:
            self._queue.put_nowait(item)

    async def get(self) -> _T | None:
        """Loop thread: the next item, or None after :meth:`interrupt`."""
        item = await self._queue.get()
        if item is _INTERRUPT:
            return None
        self._slots.release()
        return cast(_T, item)

    def interrupt(self) -> None:
        """Loop thread: make a waiting (or the next) :meth:`get` return None."""
        self._queue.put_nowait(_INTERRUPT)
