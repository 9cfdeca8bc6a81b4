"""Hand items from a worker thread to an event loop, with at most ``capacity`` waiting.

The worker blocks on a semaphore while the loop is behind (backpressure) and otherwise
pays one ``call_soon_threadsafe`` per item: it never waits for the loop to take an item,
so a fast worker and an idle loop do not ping-pong between threads for every chunk.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Generic, TypeVar, cast

__all__ = ["Handoff"]

_T = TypeVar("_T")
_INTERRUPT = object()


class Handoff(Generic[_T]):
    """A bounded thread -> loop queue. Create it on the loop's thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        stop: threading.Event,
        *,
        poll_s: float = 0.25,
    ) -> None:
        self._loop = loop
        self._slots = threading.Semaphore(capacity)
        self._stop = stop
        self._poll_s = poll_s
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def put(self, item: _T) -> bool:
        """Worker thread: queue ``item``, blocking while ``capacity`` items wait.

        Returns False when ``stop`` was set (the item may not be taken) or the loop is gone.
        """
        while not self._slots.acquire(timeout=self._poll_s):
            if self._stop.is_set():
                return False
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed
            return False
        return not self._stop.is_set()

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
