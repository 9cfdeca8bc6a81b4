"""One video session: its Inter-1 connections (incarnations), watermark, suppression, usage.

A session runs rounds. Each round is one Inter-1 connection (incarnation ``n``): it opens
on a chunk (the session's first, or a restart chunk after a reconnect or failover),
replays the kept chunks from the restart chunk on, relays new chunks as frames
(:mod:`workers.session.segmenter`), and ends with ``session.close`` -> drain ->
``session.ended`` when the video session ends, on idle, or on shutdown. Events of windows
at or before the watermark the round started with are suppressed (already published; the
watermark is the last window *completely* published, so a window a crash or a dropped
connection may have cut is published again, its events under the same ids);
re-sent seconds are recorded as re-analysed. A close code the policy retries starts the
next round after a backoff; any other fails the session with a usage record and a dead
letter. Usage, dead letters and progress snapshots are kept by
:class:`workers.session.books.SessionBooks`; the options and the end marker are in
:mod:`workers.session.options`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from runtime.logs import get_logger
from workers.session import metrics
from workers.session.books import SessionBooks
from workers.session.connection import Inter1Connection
from workers.session.events import EventContext, Placed, WindowPlacer, event_record
from workers.session.exceptions import ConnectionClosedError, PoisonChunkError
from workers.session.options import End, SessionOptions
from workers.session.outbox import Outbox
from workers.session.reconnect import backoff_s, policy_for, restart_index
from workers.session.segmenter import ChunkRef, Segmenter, SegmentLimits
from workers.session.state_store import SessionProgress

__all__ = ["End", "SessionOptions", "VideoSession"]

_log = get_logger("workers.session.session")
_EPS = 1e-6


class _HoldExpired:
    """Queue wait result: no chunk came within ``tail_hold_s``; send the held frame."""


_HOLD_EXPIRED = _HoldExpired()


@dataclass
class _Round:
    incarnation: int
    media_offset_s: float
    suppress_until_s: float | None
    context: EventContext
    first_seq: int | None = None
    last_sent_seq: int | None = None
    ended_reason: str | None = None
    last_error_code: str | None = None
    waiting_latency: list[datetime] = field(default_factory=list)
    pace_origin: tuple[float, float] | None = None
    """(loop time, media time) of the connection's first frame, for pacing."""
    sent: list[tuple[float, float]] = field(default_factory=list)
    """Session media ranges this connection sent (merged, in order)."""
    open_window_s: float | None = None
    """The latest window this connection placed: complete only once a later window is
    placed or the connection ended with ``session.ended``."""


class VideoSession:
    """State machine of one video session (see the module docstring)."""

    def __init__(
        self,
        progress: SessionProgress,
        options: SessionOptions,
        outbox: Outbox,
        *,
        api_version: str,
        fresh: bool = False,
    ) -> None:
        self.progress = progress
        self.session_id = progress.session_id
        self._options = options
        self._outbox = outbox
        self._queue: asyncio.Queue[ChunkRef | End] = asyncio.Queue()
        self._recent: list[ChunkRef] = []
        self._ending: End | None = None
        self._idle = False
        self.end_seen = False
        """The video session's SessionEnded arrived."""
        self._task: asyncio.Task[None] | None = None
        self._conn: Inter1Connection | None = None
        self._log = _log.bind(session_id=self.session_id, partition=progress.partition)
        self._books = SessionBooks(progress, outbox, api_version, self._log)
        if fresh:
            outbox.first_progress(self.session_id, self._books.unclaimed)
        self.mark_dirty()

    # -- called by the handler ------------------------------------------------------------

    def start(self) -> None:
        """Start the session's task (idempotent)."""
        if self._task is None and not self.done:
            self._task = asyncio.create_task(self._run(), name=f"session-{self.session_id}")
            metrics.ACTIVE_SESSIONS.inc()
            self._task.add_done_callback(lambda _t: metrics.ACTIVE_SESSIONS.dec())

    @property
    def done(self) -> bool:
        """The session closed or failed for good."""
        return self.progress.status != "open"

    @property
    def stopped(self) -> bool:
        """The session's task is not running (never started, or finished)."""
        return self._task is None or self._task.done()

    @property
    def queued(self) -> int:
        """Chunks waiting to be relayed."""
        return self._queue.qsize()

    def add_chunk(self, chunk: ChunkRef) -> None:
        """Queue the next chunk (a failed session accounts it as lost instead)."""
        progress = self.progress
        progress.last_seq = chunk.seq
        progress.media_end_s = max(progress.media_end_s, chunk.media_end_s)
        if progress.restart_offset is None:
            progress.restart_offset, progress.restart_seq = chunk.offset, chunk.seq
        if self._books.first_chunk is None:
            self._books.first_chunk = (chunk.offset, chunk.seq)
        if progress.status == "failed":
            self._books.account(chunk.media_end_s, rest_reason="session_error")
        else:
            self._queue.put_nowait(chunk)
        self.mark_dirty()

    def end(self, end: End) -> None:
        """The video session ended (or the worker shuts down): close gracefully."""
        if end.kind == "ended":
            self.end_seen = True
        if end.media_seconds is not None:
            self.progress.media_end_s = max(self.progress.media_end_s, end.media_seconds)
        if self.progress.status == "failed":
            self._books.account(self.progress.media_end_s, rest_reason="session_error")
            self.mark_dirty()
            return
        self._queue.put_nowait(end)

    def drop_poison(self, start_s: float, end_s: float) -> None:
        """A chunk of this session was dead-lettered: its media counts as dropped."""
        self._books.ledger.note_dropped(start_s, end_s, "poison_chunk")
        self.progress.media_end_s = max(self.progress.media_end_s, end_s)
        self.mark_dirty()

    async def wait(self, timeout_s: float) -> bool:
        """Wait for the task to finish; False on timeout."""
        if self._task is None:
            return True
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        return bool(done)

    async def abandon(self) -> None:
        """Stop now without writing anything more (the partition moved or the worker aborts)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.abort()

    def mark_dirty(self) -> None:
        """Have the next publish write this session's progress."""
        self._books.mark_dirty()

    # -- rounds ---------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self.done:
            if self._ending is None and (self._idle or not self._recent):
                item = await self._queue.get()  # a connection opens on a chunk
                if isinstance(item, End):
                    if item.kind == "ended":
                        self._finish()
                    return
                self._idle = False
                self._recent.append(item)
            try:
                await self._round()
                attempt = 0
                ending, self._ending = self._ending, None
                if ending is not None and ending.kind == "ended":
                    self._finish()
                if ending is None or ending.kind != "idle":
                    return
                self._idle = True
            except ConnectionClosedError as exc:
                policy = policy_for(exc.close_code)
                metrics.RECONNECTS.labels(policy.cause).inc()
                attempt += 1
                if not policy.retriable or attempt > self._options.reconnect_attempts:
                    self._fail(exc, policy.cause, attempt)
                    return
                delay = backoff_s(
                    attempt,
                    base_s=self._options.reconnect_base_s,
                    max_s=self._options.reconnect_max_s,
                )
                self._log.warning(
                    "inter1_reconnect",
                    close_code=exc.close_code,
                    error_code=exc.error_code,
                    cause=policy.cause,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def _round(self) -> None:  # noqa: PLR0915 - one connection's life, read in order
        options, progress = self._options, self.progress
        replay = self._recent[self._restart_index() :]
        self._recent = replay
        incarnation = progress.incarnation + 1
        offset_s = replay[0].media_start_s
        context = EventContext(
            self.session_id,
            options.api_version,
            incarnation,
            offset_s,
            progress.tenant,
            progress.app,
        )
        state = _Round(incarnation, offset_s, progress.watermark_s, context)
        conn = Inter1Connection(
            api_key=options.api_key,
            base_url=options.base_url,
            api_version=options.api_version,
            model=options.model,
        )
        started = asyncio.get_running_loop().time()
        self._conn = conn
        ready = await conn.open(options.open_timeout_s)
        metrics.SESSION_OPEN_LATENCY.observe(asyncio.get_running_loop().time() - started)
        self._books.correlation = conn.correlation_id
        progress.incarnation, progress.grid_origin_s = incarnation, offset_s
        progress.open_window_s = None
        log = self._log.bind(incarnation=incarnation, correlation_id=conn.correlation_id)
        log.info("inter1_connected", media_offset_s=offset_s, first_seq=replay[0].seq)
        if incarnation > 0:
            self._reanalysed(offset_s, state)
        self.mark_dirty()
        placer = WindowPlacer(context, window_s=options.window_s, hop_s=options.hop_s)
        reader = asyncio.create_task(self._read(conn, placer, state))
        try:
            await conn.configure(options.include, options.goal_dimensions)
            data = ready.get("data")
            limits = SegmentLimits.from_ready(data if isinstance(data, dict) else {})
            segmenter = Segmenter(limits, hold_back=not self.progress.live)
            for chunk in list(replay):
                await self._relay(conn, segmenter, chunk, state, reader)
            while self._ending is None:
                item = await self._next(
                    reader, self._options.tail_hold_s if segmenter.holding else None
                )
                if isinstance(item, _HoldExpired):
                    for frame in segmenter.release():
                        await self._send(conn, frame.data, frame.chunks, state, reader)
                    continue
                if item is None:
                    raise conn.closed_error("closed mid-session", state.last_error_code)
                if isinstance(item, End):
                    self._ending = item
                    break
                self._recent.append(item)
                await self._relay(conn, segmenter, item, state, reader)
            for frame in segmenter.flush():
                await self._send(
                    conn, frame.data, frame.chunks, state, reader, trigger=self._ending
                )
            await conn.request_close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), options.drain_timeout_s)
        except ConnectionClosedError:
            await self._settle(reader)
            raise conn.closed_error("closed mid-session", state.last_error_code) from None
        finally:
            if not reader.done():
                await conn.abort()
                await self._settle(reader)
        if state.ended_reason is None:
            raise conn.closed_error("closed before session.ended", state.last_error_code)
        log.info("inter1_session_ended", reason=state.ended_reason)

    async def _next(
        self, reader: asyncio.Task[None], hold_s: float | None = None
    ) -> ChunkRef | End | _HoldExpired | None:
        """The next queue item; None when the connection ended first; End on idle;
        ``_HOLD_EXPIRED`` when ``hold_s`` passed first."""
        if not self._queue.empty():  # no task and no wait when a chunk is already queued
            return self._queue.get_nowait()
        getter = asyncio.ensure_future(self._queue.get())
        idle_s = self._options.idle_timeout_s
        done, _ = await asyncio.wait(
            {getter, reader},
            timeout=idle_s if hold_s is None else min(hold_s, idle_s),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        if reader in done:
            return None
        return _HOLD_EXPIRED if hold_s is not None and hold_s < idle_s else End("idle")

    async def _relay(
        self,
        conn: Inter1Connection,
        segmenter: Segmenter,
        chunk: ChunkRef,
        state: _Round,
        reader: asyncio.Task[None],
    ) -> None:
        if self.progress.live:  # recorded media is paced, never shed for its age
            age_s = (datetime.now(UTC) - chunk.produced_at).total_seconds()
            if age_s > self._options.live_max_lag_s:
                self._shed(chunk, age_s)
                return
        try:
            frames = segmenter.add(chunk)
        except PoisonChunkError as exc:
            self._recent.remove(chunk)
            self._books.dead_letter_chunk(chunk, exc)
            return
        for frame in frames:
            await self._send(conn, frame.data, frame.chunks, state, reader, trigger=chunk)

    async def _send(
        self,
        conn: Inter1Connection,
        data: bytes,
        chunks: tuple[ChunkRef, ...],
        state: _Round,
        reader: asyncio.Task[None],
        *,
        trigger: ChunkRef | End | None = None,
    ) -> None:
        """Send one frame; ``trigger`` (the chunk or end that completed it) times it."""
        await self._pace(chunks[0].media_start_s, state)
        if reader.done():
            raise conn.closed_error("closed mid-session", state.last_error_code)
        for chunk in chunks:
            if state.sent and chunk.media_start_s <= state.sent[-1][1] + _EPS:
                state.sent[-1] = (state.sent[-1][0], max(state.sent[-1][1], chunk.media_end_s))
            else:
                state.sent.append((chunk.media_start_s, chunk.media_end_s))
        sending = time.monotonic()
        await conn.send(data)
        if self.progress.live and trigger is not None:
            _observe_frame(trigger, sending)
        metrics.BYTES_SENT.inc(len(data))
        if state.first_seq is None:
            state.first_seq = chunks[0].seq
        state.last_sent_seq = chunks[-1].seq
        state.waiting_latency.extend(c.produced_at for c in chunks)

    async def _pace(self, media_s: float, state: _Round) -> None:
        """Recorded sessions: wait until ``media_s`` is due at ``recorded_pace`` x real time
        since the connection's first frame (live media comes at its own pace)."""
        pace = self._options.recorded_pace
        if pace <= 0 or self.progress.live:
            return
        now = asyncio.get_running_loop().time()
        if state.pace_origin is None:
            state.pace_origin = (now, media_s)
            return
        started, origin_s = state.pace_origin
        delay = started + (media_s - origin_s) / pace - now
        if delay > 0:
            await asyncio.sleep(delay)

    @staticmethod
    async def _settle(reader: asyncio.Task[None]) -> None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(reader), 5.0)

    # -- events ---------------------------------------------------------------------------

    async def _read(self, conn: Inter1Connection, placer: WindowPlacer, state: _Round) -> None:
        async for envelope in conn.envelopes():
            received = datetime.now(UTC)
            for placed in placer.add(envelope):
                self._publish(placed, state, received)
            kind = envelope.get("type")
            data = envelope.get("data")
            if kind == "session.ended" and isinstance(data, dict):
                state.ended_reason = str(data.get("reason", ""))
            elif kind == "error" and isinstance(data, dict):
                state.last_error_code = str(data.get("code", ""))
                self._log.warning(
                    "inter1_error", code=data.get("code"), message=data.get("message")
                )
        received = datetime.now(UTC)
        for placed in placer.finish():
            self._publish(placed, state, received)
        if state.ended_reason is not None:  # drained: nothing more can come for any window
            self._complete(state.open_window_s)

    def _publish(self, placed: Placed, state: _Round, received: datetime) -> None:
        progress = self.progress
        window = placed.window_s
        bound = state.suppress_until_s
        if window is not None and bound is not None and window <= bound + _EPS:
            metrics.EVENTS_SUPPRESSED.inc()
            return
        envelope = placed.envelope
        kind = str(envelope.get("type", ""))
        data = envelope.get("data")
        if kind in ("coverage.dropped", "coverage.degraded") and isinstance(data, dict):
            self._books.note_coverage(kind, data, state.media_offset_s, state.sent)
        datum = event_record(
            placed,
            state.context,
            chunk_seq=state.last_sent_seq,
            first_chunk_seq=state.first_seq,
            received_at=received,
        )
        self._outbox.event(self.session_id, datum)
        metrics.events_published(kind).inc()
        if state.waiting_latency:
            produced, state.waiting_latency = state.waiting_latency, []
            self._outbox.after_publish(lambda: _observe_latency(produced))
        if window is not None and (state.open_window_s is None or window > state.open_window_s):
            # A window's events can arrive in several messages, and a crash can fall between
            # their publications: the watermark passes a window only once a later one began.
            self._complete(state.open_window_s)
            state.open_window_s = progress.open_window_s = window
        if placed.reach_s is not None and placed.reach_s > progress.reach_s:
            progress.reach_s = placed.reach_s
            self._books.account(progress.reach_s)
        self.mark_dirty()

    # -- progress -------------------------------------------------------------------------

    def _complete(self, window_s: float | None) -> None:
        """Raise the watermark to ``window_s``, a window whose events are all published."""
        progress = self.progress
        mark = progress.watermark_s
        if window_s is None or (mark is not None and window_s <= mark):
            return
        progress.watermark_s = window_s
        self._trim_recent()  # the restart chunk moves only with the watermark
        self.mark_dirty()

    def _restart_index(self) -> int:
        """Index in the kept chunks of the chunk a new connection starts from."""
        options = self._options
        return restart_index(
            [chunk.media_start_s for chunk in self._recent],
            watermark_s=self.progress.watermark_s,
            grid_origin_s=self.progress.grid_origin_s,
            hop_s=options.hop_s,
            context_s=options.context_s,
        )

    def _trim_recent(self) -> None:
        index = self._restart_index()
        if index:
            del self._recent[:index]
        if self._recent:
            self.progress.restart_offset = self._recent[0].offset
            self.progress.restart_seq = self._recent[0].seq

    def _reanalysed(self, offset_s: float, state: _Round) -> None:
        self._books.reanalysed(offset_s, state.incarnation)

    def _finish(self) -> None:
        self._books.finish()
        self._log.info("session_closed", media_end_s=self.progress.media_end_s)

    def _fail(self, exc: ConnectionClosedError, cause: str, attempts: int) -> None:
        self._books.fail(exc, cause, attempts)
        while not self._queue.empty():  # chunks that will never be relayed
            item = self._queue.get_nowait()
            if isinstance(item, ChunkRef):
                self._books.account(item.media_end_s, rest_reason="session_error")

    def _shed(self, chunk: ChunkRef, age_s: float) -> None:
        self._recent.remove(chunk)
        self._books.shed(chunk, age_s)


def _observe_frame(trigger: ChunkRef | End, sending: float) -> None:
    """A live frame was written: its latency legs, from the chunk (or the end of the video
    session) that completed it; frames held for the segment minimum wait for that by policy."""
    sent = time.monotonic()
    if isinstance(trigger, ChunkRef):
        metrics.FRAME_SEND_LATENCY.observe(
            max(0.0, (datetime.now(UTC) - trigger.produced_at).total_seconds())
        )
    if trigger.consumed_at:
        metrics.FRAME_RELAY_LATENCY.observe(sent - trigger.consumed_at)
    metrics.FRAME_WS_SEND_LATENCY.observe(sent - sending)


def _observe_latency(produced: list[datetime]) -> None:
    now = datetime.now(UTC)
    for at in produced:
        metrics.CHUNK_LATENCY.observe(max(0.0, (now - at).total_seconds()))
