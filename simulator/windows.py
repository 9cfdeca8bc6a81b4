"""Sliding analysis windows and the simulated model's queue (where shedding happens).

Windows cover 8 s and advance every 3 s of media time. Each window *owns* the media it
adds to the timeline: the first owns ``[0, 8)``, the next ``[8, 11)``, then ``[11, 14)``...
and the last owns the remainder up to the end of the media. Owned slices partition the
media received, so analysed + dropped always adds up exactly to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from simulator.features import FeatureBin
from simulator.skips import overlap, subtract

__all__ = ["AnalysisQueue", "Window", "WindowPlanner"]


@dataclass(frozen=True)
class Window:
    """One analysis window: covered range, owned slice (ms) and its features."""

    index: int
    start_ms: int
    end_ms: int
    owned_start_ms: int
    owned_end_ms: int
    bins: tuple[FeatureBin, ...]
    arrival: float
    degraded_ms: tuple[tuple[int, int], ...] = ()
    skipped: bool = False
    """Part of the owned slice was not decoded (decode shedding): the window is shed."""

    hop_ms: int = 3000
    stream_skips_ms: tuple[tuple[int, int], ...] = ()
    """Parts of the owned slice the client never sent (stream skips): dropped, not billed."""

    @property
    def media_parts_ms(self) -> list[tuple[int, int]]:
        """The owned slice minus its stream skips: what analysing the window bills."""
        return subtract([(self.owned_start_ms, self.owned_end_ms)], self.stream_skips_ms)

    @property
    def all_skipped(self) -> bool:
        """The whole owned slice is a stream skip: nothing to analyse, nothing billed."""
        return not self.media_parts_ms

    @property
    def grid_start_ms(self) -> int:
        """Where the window's events are placed: its start on the 3 s hop grid (as the docs)."""
        return self.index * self.hop_ms

    @property
    def owned_ms(self) -> int:
        """Length of the owned slice in ms."""
        return self.owned_end_ms - self.owned_start_ms


@dataclass
class WindowPlanner:
    """Cuts the stream of completed feature bins into windows."""

    window_ms: int
    hop_ms: int
    bins: list[FeatureBin] = field(default_factory=list)
    gaps_ms: list[tuple[int, int]] = field(default_factory=list)
    skipped_ms: list[tuple[int, int]] = field(default_factory=list)
    stream_skips_ms: list[tuple[int, int]] = field(default_factory=list)
    gap_min_ms: int = 1000
    """A video gap's part outside stream skips must be longer than this to be degraded."""
    next_index: int = 0
    owned_until_ms: int = 0

    def add(
        self,
        bins: list[FeatureBin],
        gaps_ms: list[tuple[int, int]],
        arrival: float,
        final_ms: int | None = None,
        skipped_ms: list[tuple[int, int]] | None = None,
        *,
        stream_skips_ms: list[tuple[int, int]] | None = None,
    ) -> list[Window]:
        """Add completed bins; return the windows now ready (all of them once ``final_ms``).

        ``gaps_ms`` (video gaps), ``skipped_ms`` (media not decoded) and ``stream_skips_ms``
        (media never sent) are cumulative.
        """
        self.bins.extend(bins)
        self.gaps_ms = gaps_ms
        if skipped_ms is not None:
            self.skipped_ms = skipped_ms
        if stream_skips_ms is not None:
            self.stream_skips_ms = stream_skips_ms
        ready: list[Window] = []
        complete_ms = len(self.bins) * 1000 if final_ms is None else final_ms
        while True:
            start = self.next_index * self.hop_ms
            end = start + self.window_ms
            if end <= complete_ms:
                ready.append(self._window(start, end, arrival))
                continue
            if final_ms is not None and self.owned_until_ms < final_ms:
                ready.append(self._window(max(0, final_ms - self.window_ms), final_ms, arrival))
            return ready

    def _window(self, start: int, end: int, arrival: float) -> Window:
        owned_start = self.owned_until_ms
        skips = self.stream_skips_ms
        # Bins wholly inside a stream skip hold no media: they are not evidence of silence.
        cover = tuple(
            b
            for b in self.bins[start // 1000 : -(-end // 1000)]
            if subtract([(b.index * 1000, b.index * 1000 + 1000)], skips)
        )
        gaps = sorted(
            piece
            for gap in self.gaps_ms
            for piece in (
                subtract([gap], skips, self.gap_min_ms) if overlap(skips, *gap) else [gap]
            )
        )
        degraded = tuple(overlap(gaps, owned_start, end))
        skipped = any(a < end and b > owned_start for a, b in self.skipped_ms)
        window = Window(
            self.next_index,
            start,
            end,
            owned_start,
            end,
            cover,
            arrival,
            degraded,
            skipped,
            self.hop_ms,
            tuple(overlap(skips, owned_start, end)),
        )
        self.next_index += 1
        self.owned_until_ms = end
        return window


Emit = Callable[[Window], Awaitable[None]]
Drop = Callable[[Window, str], Awaitable[None]]
Reserve = Callable[[Window, float, float, float], "tuple[float, float] | str"]
"""A shared model backend: (window, now, earliest, latest start) -> (start, done) or why shed."""


class AnalysisQueue:
    """The simulated model: each window costs ``ratio x owned seconds`` of model time.

    A window is shed (``drop(window, reason)``) instead of queued when its media was not
    decoded (``lag``: decode shedding), when waiting for the model would put more than
    ``queue_windows`` full windows of media (``window_ms`` each) in the queue
    (``backpressure``) or when its analysis would start more than ``max_lag_s`` after its
    media arrived (``lag``). Analysed windows are passed to ``emit`` in order, each once
    its simulated model time has elapsed.

    The queue is bounded by the media its waiting windows own, not by their count: a
    window's model cost is proportional to its owned slice (one hop after the first), and
    one long frame (and the close, which completes the last second) readies several hop
    windows at once. Counted as whole windows, that burst was shed on an idle model; it is
    not congestion.
    """

    def __init__(
        self,
        *,
        ratio: float,
        queue_windows: int,
        max_lag_s: float,
        emit: Emit,
        drop: Drop,
        reserve: Reserve | None = None,
        window_ms: int = 8000,
    ) -> None:
        self._reserve = reserve
        self._backlog_limit_ms = queue_windows * window_ms
        self._ratio = ratio
        self._max_lag_s = max_lag_s
        self._emit = emit
        self._drop = drop
        self._pending: deque[tuple[float, float, Window]] = deque()
        self._busy_until = 0.0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None

    def start(self) -> None:
        """Start the model task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sim-model")

    async def submit(self, window: Window) -> None:
        """Queue ``window`` for analysis, or shed it."""
        if self._closed_reason is not None:
            await self._drop(window, self._closed_reason)
            return
        if window.skipped:
            await self._drop(window, "lag")
            return
        now = time.monotonic()
        if window.all_skipped:  # no media to analyse: reported in order, at no model cost
            start = max(now, self._busy_until)
            self._pending.append((start, start, window))
            self._idle.clear()
            self._wakeup.set()
            return
        start = max(now, self._busy_until)
        waiting_ms = sum(w.owned_ms for s, _, w in self._pending if s > now)
        if start > now and waiting_ms + window.owned_ms > self._backlog_limit_ms:
            await self._drop(window, "backpressure")
            return
        if self._reserve is not None:  # one backend for all sessions (simulator/backend.py)
            slot = self._reserve(window, now, start, window.arrival + self._max_lag_s)
            if isinstance(slot, str):
                await self._drop(window, slot)
                return
            start, done = slot
        elif start - window.arrival > self._max_lag_s:
            await self._drop(window, "lag")
            return
        else:
            done = start + self._ratio * window.owned_ms / 1000.0
        self._busy_until = done
        self._pending.append((start, done, window))
        self._idle.clear()
        self._wakeup.set()

    async def drain(self, timeout_s: float) -> None:
        """Wait for queued windows; those not done within ``timeout_s`` are dropped."""
        deadline = time.monotonic() + timeout_s
        for start, done, window in list(self._pending):
            if done > deadline:
                self._pending.remove((start, done, window))
                await self._drop(window, "drain_timeout")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))

    async def abandon(self, reason: str) -> None:
        """Stop the model; every window not yet emitted (or submitted later) is dropped."""
        self._closed_reason = self._closed_reason or reason
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            _, _, window = self._pending.popleft()
            await self._drop(window, reason)
        self._idle.set()

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            _, done, _ = self._pending[0]
            delay = done - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            _, _, window = self._pending[0]
            await self._emit(window)
            self._pending.popleft()
