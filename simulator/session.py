"""One accepted stream session: the protocol state machine around media, model and usage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from chunks.containers import sniff_container
from runtime.logs import get_logger
from simulator.analysis import analyse_window
from simulator.box_media import BoxMediaStream, open_media_stream
from simulator.config import KeyGrant, SimulatorConfig
from simulator.exceptions import MalformedMediaError, NoUsableVideoError
from simulator.faults import FaultPlan
from simulator.media import MediaProgress, MediaStream
from simulator.options import ConfigRejected, apply_config
from simulator.pcm import PcmStream
from simulator.protocol import AUDIO_MODEL, ERRORS, envelope, error_data
from simulator.tracker import EventTracker, SessionOptions
from simulator.usage import SessionUsage, utc_now
from simulator.windows import AnalysisQueue, Reserve, Window, WindowPlanner

__all__ = ["StreamSession"]

_MEDIA_STOP_TIMEOUT_S = 30.0


_UNKNOWN_VALUES: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "signal.detected",
        {"signal_type": "sim_new_signal", "start": 0.0, "probability": "low", "rationale": "x"},
    ),
    ("engagement.updated", {"state": "sim_new_state", "start": 0.0}),
)
"""Known event kinds with values no SDK knows (the ``unknown_value`` fault)."""


def _gone_reason(exc: ConnectionClosed) -> str:
    """Why the client is gone: it stopped answering pings, or it disconnected."""
    if exc.rcvd is None and exc.sent is not None and exc.sent.reason == "keepalive ping timeout":
        return "keepalive_timeout"
    return "client_disconnected"


@dataclass(frozen=True)
class _End:
    """How the session ends: ``graceful`` (drain), ``fatal`` (error + close), ``gone``."""

    kind: str
    reason: str
    code: str | None = None
    message: str | None = None
    segment: int | None = None
    close_code: int = 1000


class StreamSession:
    """Serves one session on an accepted connection until it ends, keeping ``usage`` exact."""

    def __init__(
        self,
        ws: ServerConnection,
        *,
        config: SimulatorConfig,
        usage: SessionUsage,
        grant: KeyGrant,
        faults: FaultPlan,
        reserve: Reserve | None = None,
    ) -> None:
        self._ws = ws
        self._config = config
        self._usage = usage
        self._grant = grant
        self._faults = faults
        self._log = get_logger("simulator.session", session_id=usage.session_id)
        self._options = SessionOptions(model=usage.model)
        self._tracker = EventTracker(usage.api_version, audio_only=usage.model == AUDIO_MODEL)
        self._planner = WindowPlanner(
            config.analysis.window_ms,
            config.analysis.hop_ms,
            gap_min_ms=config.analysis.video_gap_ms,
        )
        ratio = config.load.processing_ratio
        if faults.processing_ratio is not None:
            ratio = faults.processing_ratio
        self._queue = AnalysisQueue(
            ratio=ratio,
            queue_windows=config.load.queue_windows,
            max_lag_s=config.load.max_lag_s,
            emit=self._emit_window,
            drop=self._drop_window,
            reserve=reserve,
            window_ms=config.analysis.window_ms,
        )
        self._media: MediaStream | BoxMediaStream | PcmStream | None = None
        self._progress: asyncio.Queue[MediaProgress] = asyncio.Queue()
        self._media_done = asyncio.Event()
        self._end: asyncio.Future[_End] | None = None
        self._ending = False
        self._gate = asyncio.Event()
        self._gate.set()
        self._last_message = time.monotonic()
        self._fired: set[str] = set()
        self._media_failure: _End | None = None
        self._ending_fault: _End | None = None
        self._ready = False
        self._close_requested = False
        self._feedback = config.limits.feedback and grant.feedback

    async def run(self) -> None:
        """Serve the session; returns once the connection is closed and usage is final."""
        loop = asyncio.get_running_loop()
        self._end = loop.create_future()
        tasks = [
            asyncio.create_task(self._receive_loop(), name="sim-receive"),
            asyncio.create_task(self._media_loop(), name="sim-media"),
            asyncio.create_task(self._watchdog(), name="sim-watchdog"),
        ]
        end = _End("gone", "internal_error", "ih1001", close_code=1011)
        try:
            models = sorted(self._grant.models) if self._usage.api_version == "v2" else None
            if self._faults.ready_delay_s:
                await asyncio.sleep(self._faults.ready_delay_s)
            ready = self._config.limits.ready_data(models, feedback=self._feedback)
            await self._send("session.ready", ready)
            self._ready = True
            self._queue.start()
            await self._check_faults(0.0)
            end = await self._end
            self._ending = True
            await self._finish(end)
        except ConnectionClosed:
            end = _End("gone", "client_disconnected")
            await self._abandon("undelivered")
        except Exception:
            self._log.exception("session failed")
            end = _End("fatal", "internal_error", "ih1001", close_code=1011)
            with contextlib.suppress(Exception):
                await self._finish(end)
        finally:
            if self._media is not None:  # also on cancellation: never leave the thread blocked
                self._media.finish(abort=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._close_usage(end)

    # -- ending ---------------------------------------------------------------------------

    def _request_end(self, end: _End) -> None:
        if self._end is not None and not self._end.done():
            self._end.set_result(end)

    async def _finish(self, end: _End) -> None:
        if end.kind == "graceful":
            await self._graceful(end)
        elif end.kind == "fatal":
            with contextlib.suppress(ConnectionClosed):
                await self._send_error(end.code or "ih1001", end.message, end.segment)
            await self._abandon("session_failed")
            await self._ws.close(end.close_code, end.reason)
        elif end.kind == "drop":
            self._ws.transport.abort()
            await self._abandon("undelivered")
        else:
            await self._abandon("undelivered")

    async def _graceful(self, end: _End) -> None:
        limits = self._config.limits
        deadline = time.monotonic() + limits.max_drain_s
        if end.code is not None:
            await self._send_error(end.code, end.message)
        await self._send("session.closing", {"max_drain_seconds": math.ceil(limits.max_drain_s)})
        if self._media is not None:
            self._media.finish()
            try:
                await asyncio.wait_for(self._media_done.wait(), deadline - time.monotonic())
            except TimeoutError:
                self._media.finish(abort=True)
                await self._wait_media_done()
        if self._media_failure is not None:  # the stream turned out bad while draining
            await self._finish(self._media_failure)
            return
        await self._queue.drain(max(0.0, deadline - time.monotonic()))
        await self._queue.abandon("drain_timeout")
        for kind, data in self._tracker.finish(self._usage.media_received_ms):
            await self._send(kind, data)
        await self._send("session.ended", {"reason": end.reason})
        await self._ws.close(1000, end.reason)

    async def _abandon(self, reason: str) -> None:
        """Stop everything; media received but not delivered is accounted as dropped."""
        await self._queue.abandon(reason)
        if self._media is not None:
            self._media.finish(abort=True)
            await self._wait_media_done()
            await self._queue.abandon(reason)

    async def _wait_media_done(self) -> None:
        """Wait for the demuxer's final report (an aborted pipe ends it promptly)."""
        try:
            await asyncio.wait_for(self._media_done.wait(), _MEDIA_STOP_TIMEOUT_S)
        except TimeoutError:
            self._log.error("media worker did not stop", timeout_s=_MEDIA_STOP_TIMEOUT_S)

    def _close_usage(self, end: _End) -> None:
        usage = self._usage
        end = self._ending_fault or end
        usage.ended_at = utc_now()
        usage.end_reason = end.reason
        usage.close_code = 1006 if end.kind in ("drop", "gone") else end.close_code
        if self._ws.close_code is not None and end.kind != "drop":
            usage.close_code = self._ws.close_code
        self._log.info(
            "session ended",
            **{k: v for k, v in usage.to_json().items() if not k.endswith("_ranges")},
        )

    # -- inbound --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        try:
            while True:
                await self._gate.wait()
                message = await self._ws.recv()
                self._last_message = time.monotonic()
                if isinstance(message, bytes):
                    await self._on_media(message)
                else:
                    await self._on_text(message)
        except ConnectionClosed as exc:
            self._request_end(_End("gone", _gone_reason(exc)))

    async def _on_media(self, data: bytes) -> None:
        usage = self._usage
        segment = usage.frames_received
        usage.frames_received += 1
        usage.bytes_received += len(data)
        if not data:  # an empty frame carries no media (and is not an end of stream)
            return
        if not self._ready or self._close_requested:
            when = "after session.close" if self._ready else "before session.ready"
            message = f"Media frame sent {when}; it is not analysed."
            with contextlib.suppress(ConnectionClosed):
                await self._send_error("ih6006", message, segment)
            return
        if len(data) > self._config.limits.max_segment_size_bytes:
            limit = self._config.limits.max_segment_size_bytes
            message = f"Media frame of {len(data)} bytes exceeds the {limit}-byte limit."
            self._request_end(_End("fatal", "frame_too_large", "ih6002", message, segment, 1009))
            return
        if self._media is None:
            pcm = self._options.audio_format
            container = "pcm" if pcm is not None else sniff_container(data)
            if container is None:
                message = "The first media frame must carry a WebM or fragmented-MP4 init header."
                self._request_end(_End("fatal", "malformed_segment", "ih5004", message, 0, 1007))
                return
            loop = asyncio.get_running_loop()

            def report(progress: MediaProgress) -> None:
                loop.call_soon_threadsafe(self._progress.put_nowait, progress)

            self._media = open_media_stream(
                container,
                report,
                require_video=self._options.model != AUDIO_MODEL,
                video_sample_fps=self._config.analysis.video_sample_fps,
                video_gap_ms=self._config.analysis.video_gap_ms,
                decode=self._config.analysis.depth,
                shed_lag_s=self._config.load.max_lag_s,
                window_ms=self._config.analysis.window_ms,
                hop_ms=self._config.analysis.hop_ms,
                stream_skip_ms=self._config.analysis.stream_skip_ms,
                pcm_sample_rate=pcm["sample_rate"] if pcm is not None else None,
            )
        self._media.feed(data)

    async def _on_text(self, text: str) -> None:
        try:
            payload = json.loads(text)
        except ValueError:
            await self._send_error("ih6001", "Text frames must be JSON objects.")
            return
        if not isinstance(payload, dict):
            await self._send_error("ih6001", "Text frames must be JSON objects.")
            return
        kind = payload.get("type")
        if kind == "session.close":
            self._close_requested = True
            self._request_end(_End("graceful", "client_shutdown"))
            return
        if kind is not None:
            await self._send_error("ih6001", f"Unknown message type {kind!r}.")
            return
        try:
            self._options = apply_config(
                payload,
                self._options,
                api_version=self._usage.api_version,
                grant=self._grant,
                media_started=self._media is not None,
                feedback=self._feedback,
            )
        except ConfigRejected as exc:
            if exc.fatal:
                close_code = ERRORS[exc.code].close_code or 1008
                self._request_end(
                    _End("fatal", "bad_model", exc.code, exc.message, close_code=close_code)
                )
            else:
                await self._send_error(exc.code, exc.message)
            return
        self._usage.model = self._options.model
        self._tracker.audio_only = self._options.model == AUDIO_MODEL
        await self._send(
            "session.updated",
            {
                "include": self._options.include,
                "goal_dimensions": self._options.goal_dimensions,
                "model": self._options.model,
            }
            | ({"audio_format": self._options.audio_format} if self._options.audio_format else {}),
        )

    async def _watchdog(self) -> None:
        limits = self._config.limits
        started = time.monotonic()
        tick = min(1.0, limits.idle_timeout_s / 4, limits.max_duration_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self._ending or not self._gate.is_set():
                self._last_message = max(self._last_message, now - tick)
                continue
            if now - started >= limits.max_duration_s:
                self._request_end(_End("graceful", "max_duration", "ih6004"))
            elif now - self._last_message >= limits.idle_timeout_s:
                self._request_end(_End("graceful", "idle_timeout", "ih6003"))

    # -- media and model ------------------------------------------------------------------

    async def _media_loop(self) -> None:
        while True:
            progress = await self._progress.get()
            self._usage.media_received_ms = max(self._usage.media_received_ms, progress.media_ms)
            final = progress.media_ms if progress.finished else None
            for window in self._planner.add(
                progress.bins,
                progress.gaps_ms,
                progress.arrival,
                final,
                progress.skipped_ms,
                stream_skips_ms=progress.stream_skips_ms,
            ):
                await self._queue.submit(window)
            for index, duration_ms in progress.segments_ms:
                await self._check_segment(index, duration_ms)
            if progress.error is not None:
                self._on_media_error(progress.error)
            with contextlib.suppress(ConnectionClosed):
                await self._check_faults(progress.media_ms / 1000.0)
            if progress.finished:
                self._media_done.set()
                return

    async def _check_segment(self, index: int, duration_ms: int) -> None:
        """A non-fatal ``ih6005`` for a frame outside the segment-duration limits."""
        limits = self._config.limits
        seconds = duration_ms / 1000
        minimum = limits.enforce_min_segment_duration and self._usage.api_version == "v1"
        if minimum and seconds < limits.min_segment_duration_s:
            bound = f"below min_segment_duration_seconds ({limits.min_segment_duration_s:g} s)"
        elif limits.max_segment_duration_s is not None and seconds > limits.max_segment_duration_s:
            bound = f"above max_segment_duration_seconds ({limits.max_segment_duration_s:g} s)"
        else:
            return
        message = f"Media segment {index} carries {seconds:g} s of media, {bound}."
        with contextlib.suppress(ConnectionClosed):
            await self._send_error("ih6005", message, index)

    def _on_media_error(self, error: Exception) -> None:
        if isinstance(error, MalformedMediaError):
            end = _End("fatal", "malformed_segment", "ih5004", str(error), error.segment, 1007)
        elif isinstance(error, NoUsableVideoError):
            end = _End("fatal", "no_usable_video", "ih5001", str(error), None, 1007)
        else:
            self._log.error("media worker failed", error=repr(error))
            end = _End("fatal", "internal_error", "ih1001", None, None, 1011)
        self._media_failure = end
        self._request_end(end)

    async def _emit_window(self, window: Window) -> None:
        result = analyse_window(window.bins)
        events = self._tracker.window_events(window, result, self._options)
        try:
            for kind, data in events:
                await self._send(kind, data)
        except ConnectionClosed:
            self._usage.dropped(
                window.owned_start_ms, window.owned_end_ms, "undelivered", window.stream_skips_ms
            )
            return
        degraded = sum(b - a for a, b in window.degraded_ms) if not self._tracker.audio_only else 0
        if window.all_skipped:  # media the client never sent: nothing analysed, nothing billed
            self._usage.dropped(window.owned_start_ms, window.owned_end_ms, "stream_skip")
        else:
            self._usage.analysed_parts(window.media_parts_ms, window.stream_skips_ms, degraded)

    async def _drop_window(self, window: Window, reason: str) -> None:
        self._usage.dropped(
            window.owned_start_ms, window.owned_end_ms, reason, window.stream_skips_ms
        )
        if reason in ("backpressure", "lag", "drain_timeout"):
            ranges = [{"start": window.owned_start_ms / 1000, "end": window.owned_end_ms / 1000}]
            with contextlib.suppress(ConnectionClosed):
                await self._send("coverage.dropped", {"ranges": ranges})

    # -- faults ---------------------------------------------------------------------------

    async def _check_faults(self, media_s: float) -> None:
        """Fire the faults due at ``media_s``; while draining they act on the socket directly."""
        plan = self._faults
        if plan.stall_s is not None and media_s >= plan.stall_at_s and self._once("stall"):
            self._log.info("fault: stall", seconds=plan.stall_s)
            self._gate.clear()
            asyncio.get_running_loop().call_later(plan.stall_s, self._gate.set)
        unknown_at = plan.unknown_event_at_s
        if unknown_at is not None and media_s >= unknown_at and self._once("unknown_event"):
            await self._send("sim.unknown", {"note": "injected unknown event kind"})
        value_at = plan.unknown_value_at_s
        if value_at is not None and media_s >= value_at and self._once("unknown_value"):
            for kind, data in _UNKNOWN_VALUES:
                await self._send(kind, data)
        if plan.error_code is not None and media_s >= plan.error_at_s and self._once("error"):
            await self._send_error(plan.error_code, "Injected error (simulator fault).")
        if plan.close_code is not None and media_s >= plan.close_at_s and self._once("close"):
            code = plan.close_error_code or "ih1001"
            await self._fault_end(_End("fatal", "fault_close", code, None, None, plan.close_code))
        if plan.drop_at_s is not None and media_s >= plan.drop_at_s and self._once("drop"):
            await self._fault_end(_End("drop", "fault_drop"))

    async def _fault_end(self, end: _End) -> None:
        self._log.info("fault: end session", reason=end.reason)
        self._ending_fault = end
        if not self._ending:
            self._request_end(end)
            return
        if end.kind == "drop":  # mid-drain: cut the socket under the graceful path
            self._ws.transport.abort()
        else:
            await self._send_error(end.code or "ih1001", end.message)
            await self._ws.close(end.close_code, end.reason)

    def _once(self, name: str) -> bool:
        if name in self._fired:
            return False
        self._fired.add(name)
        return True

    # -- outbound -------------------------------------------------------------------------

    async def _send(self, kind: str, data: dict[str, Any]) -> None:
        await self._gate.wait()
        await self._ws.send(envelope(kind, data, self._usage.session_id))

    async def _send_error(self, code: str, message: str | None, segment: int | None = None) -> None:
        await self._send("error", error_data(code, message, segment))
