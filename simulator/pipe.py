"""The blocking byte pipe between a session's event loop and its demux thread."""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BytePipe"]


@dataclass
class BytePipe:
    """A blocking byte pipe: the loop appends frames, the demux thread reads them."""

    chunks: deque[bytes] = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    eof: bool = False
    aborted: bool = False
    head: memoryview = field(default_factory=lambda: memoryview(b""))
    frame_ends: list[int] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    received: int = 0
    consumed: int = 0
    on_wait: Callable[[], None] | None = None
    """Called (demux thread, outside the lock) when a read is about to block for the next
    frame: the reader reports what it has, rather than holding it until more bytes come."""

    def put(self, data: bytes) -> None:
        """Append one frame (event loop side), noting when it arrived."""
        with self.cond:
            if data:  # an empty frame carries nothing; b"" from read() means end of stream
                self.chunks.append(data)
            self.received += len(data)
            self.frame_ends.append(self.received)
            self.arrivals.append(time.monotonic())
            self.cond.notify()

    def finish(self, *, abort: bool) -> None:
        """No more frames; ``abort`` makes the next read return EOF at once."""
        with self.cond:
            self.eof = True
            self.aborted = self.aborted or abort
            self.cond.notify()

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, blocking until some arrive (demux thread side); b"" at EOF."""
        if self.on_wait is not None:
            with self.cond:
                starved = not len(self.head) and not self.chunks and not self.eof
            if starved:
                self.on_wait()
        with self.cond:
            while not len(self.head) and not self.chunks and not self.eof:
                self.cond.wait()
            if self.aborted:
                return b""
            if not len(self.head) and self.chunks:
                self.head = memoryview(self.chunks.popleft())
            out = bytes(self.head[:size])
            self.head = self.head[len(out) :]
            self.consumed += len(out)
            return out

    def position_info(self) -> tuple[int, float]:
        """(index of the frame being read, arrival time of that frame)."""
        with self.cond:
            index = min(bisect.bisect_left(self.frame_ends, self.consumed), len(self.arrivals) - 1)
            return max(index, 0), self.arrivals[index] if self.arrivals else time.monotonic()
