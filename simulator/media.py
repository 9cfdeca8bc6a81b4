"""Incremental demux + feature extraction of a client's WebM / fragmented-MP4 byte stream.

The WebSocket handler :meth:`MediaStream.feed` s binary frames into a blocking pipe; a
worker thread reads the pipe with PyAV (no seeking: the stream is live), reads audio
features from the compressed packets, decodes video cheaply (sampled, luma averaged over
blocks in integers; with ``decode="none"`` video features come from packets too) and
reports progress back to the event loop through
a callback: completed per-second :class:`FeatureBin` s, the media time received so far,
video gaps, media skipped by decode shedding, and the wall-clock arrival of the data.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from simulator.config import DecodeDepth
from simulator.exceptions import MalformedMediaError, NoUsableVideoError
from simulator.features import FeatureBin, VideoAnalyser, _Bins
from simulator.packet_features import PacketAudioAnalyser, PacketVideoAnalyser
from simulator.pipe import BytePipe
from simulator.segments import SegmentSpans
from simulator.shedding import DecodeShedder
from simulator.skips import SkipTracker

__all__ = ["MediaProgress", "MediaStream"]


@dataclass
class MediaProgress:
    """What the demuxer learned since its last report.

    Attributes:
        bins: newly completed one-second feature bins, in order.
        media_ms: media time received so far (end of the furthest packet), ms.
        gaps_ms: video gaps found so far (start, end) in ms, cumulative.
        arrival: monotonic time the newest demuxed bytes arrived on the socket.
        finished: the stream ended (EOF or error); no further reports follow.
        error: why the stream failed, when it did.
        has_video: whether the stream carries a video track (known once opened).
        skipped_ms: media ranges (ms, cumulative) not decoded because the decoder lagged.
        segments_ms: (frame index, media ms it carried) of frames newly complete.
        stream_skips_ms: media ranges (ms, cumulative) no track covers: stream skips.
    """

    bins: list[FeatureBin]
    media_ms: int
    gaps_ms: list[tuple[int, int]]
    arrival: float
    finished: bool = False
    error: Exception | None = None
    has_video: bool = True
    skipped_ms: list[tuple[int, int]] = field(default_factory=list)
    segments_ms: list[tuple[int, int]] = field(default_factory=list)
    stream_skips_ms: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Run:
    """The demux thread's state for one stream."""

    store: _Bins
    video: VideoAnalyser
    audio: PacketAudioAnalyser
    shedder: DecodeShedder
    media_s: float = 0.0
    emitted: int = 0
    has_video: bool = True
    has_audio: bool = False
    origin: float = 0.0
    packet_video: PacketVideoAnalyser | None = None
    segments: SegmentSpans = field(default_factory=SegmentSpans)
    last_frame: int = 0
    skips: SkipTracker = field(default_factory=lambda: SkipTracker(1000))


class MediaStream:
    """One session's media: feed bytes in, get :class:`MediaProgress` reports out.

    Args:
        container: PyAV format name from :func:`sniff_container`.
        report: called from the worker thread with each progress report; it must hand the
            report to the event loop itself (``loop.call_soon_threadsafe``).
        require_video: fail with ``NoUsableVideoError`` when there is no video track.
        decode: ``all`` frames, ``keyframes`` only, or ``none`` (packet features).
        shed_lag_s: stop decoding (demux only) while the decoder is this far behind the
            arrival of the media; None never sheds decode work.
        window_ms, hop_ms: the analysis windows (decode shedding works in owned slices).
        stream_skip_ms: a hole this long in every track is a stream skip.
    """

    def __init__(
        self,
        container: str,
        report: Callable[[MediaProgress], None],
        *,
        require_video: bool,
        video_sample_fps: float,
        video_gap_ms: int,
        decode: DecodeDepth = "all",
        shed_lag_s: float | None = None,
        window_ms: int = 8000,
        hop_ms: int = 3000,
        stream_skip_ms: int = 1000,
    ) -> None:
        self._container = container
        self._skip_ms = stream_skip_ms
        self._decode = decode
        self._shed_lag_s = shed_lag_s
        self._window_ms = window_ms
        self._hop_ms = hop_ms
        self._report = report
        self._require_video = require_video
        self._sample_fps = video_sample_fps
        self._gap_ms = video_gap_ms
        self._pipe = BytePipe()
        self._thread: threading.Thread | None = None

    @property
    def bytes_received(self) -> int:
        """Bytes fed so far."""
        return self._pipe.received

    def feed(self, data: bytes) -> None:
        """Append one binary frame; starts the worker thread on the first call."""
        self._pipe.put(data)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-demux", daemon=True)
            self._thread.start()

    def finish(self, *, abort: bool = False) -> None:
        """No more bytes will come; ``abort`` also discards what was not demuxed yet."""
        self._pipe.finish(abort=abort)

    @property
    def started(self) -> bool:
        """Whether any media was fed (and a worker thread runs or ran)."""
        return self._thread is not None

    def _run(self) -> None:
        store = _Bins()
        audio = PacketAudioAnalyser(store)
        lag = self._shed_lag_s if self._shed_lag_s is not None else math.inf
        shedder = DecodeShedder(lag, window_s=self._window_ms / 1000, hop_s=self._hop_ms / 1000)
        run = _Run(store, VideoAnalyser(store, self._sample_fps, self._gap_ms), audio, shedder)
        run.skips = SkipTracker(self._skip_ms)
        try:
            self._demux(run)
        except (MalformedMediaError, NoUsableVideoError) as exc:
            self._emit(run, final=True, error=exc)
            return
        except av.FFmpegError as exc:
            segment, _ = self._pipe.position_info()
            error = MalformedMediaError(f"Malformed media segment: {exc}", segment)
            self._emit(run, final=True, error=error)
            return
        except Exception as exc:  # reported to the loop, which answers ih1001
            self._emit(run, final=True, error=exc)
            return
        run.video.close(run.media_s)
        self._emit(run, final=True, error=None)

    def _demux(self, run: _Run) -> None:
        options = {"probesize": "32768", "analyzeduration": "0"}
        try:
            container = av.open(self._pipe, mode="r", format=self._container, options=options)
        except av.FFmpegError as exc:
            segment, _ = self._pipe.position_info()
            raise MalformedMediaError(f"Malformed media segment: {exc}", segment) from exc
        with container:
            video_stream = next(iter(container.streams.video), None)
            audio_stream = next(iter(container.streams.audio), None)
            run.has_video = video_stream is not None
            run.has_audio = audio_stream is not None
            streams = [s for s in (video_stream, audio_stream) if s is not None]
            if not streams:
                segment, _ = self._pipe.position_info()
                raise MalformedMediaError("The stream carries no audio or video track.", segment)
            if video_stream is None and self._require_video:
                raise NoUsableVideoError("The stream carries no video track.")
            self._prepare(run, video_stream, streams)
            run.origin = self._origin(streams)
            last_report = 0.0
            # Reports are throttled to one per 50 ms of packets; a frame's packets come in
            # one burst, so without this its last ones would wait for the next frame.
            self._pipe.on_wait = lambda: self._emit(run, final=False, error=None)
            for packet in container.demux(streams):
                timing = self._timing(run, packet)
                if self._decode != "none" and self._shed(run, packet, timing, streams):
                    continue
                if packet.stream.type == "audio":
                    if timing is not None:
                        run.audio.packet(packet.size, timing[0], timing[1] - timing[0])
                elif self._decode == "none":
                    if timing is not None and run.packet_video is not None:
                        run.packet_video.packet(packet.size, timing[0], packet.is_keyframe)
                else:
                    for frame in packet.decode():
                        self._frame(run, frame)
                now = time.monotonic()
                if now - last_report > 0.05:
                    last_report = now
                    self._emit(run, final=False, error=None)

    def _prepare(self, run: _Run, video_stream: Any, streams: list[Any]) -> None:
        """Set up decoders (cheap settings) or, without decoding, the packet analysers."""
        if self._decode == "none":
            if video_stream is not None:
                codec = video_stream.codec_context
                run.packet_video = PacketVideoAnalyser(run.store, codec.width, codec.height)
            return
        if video_stream is not None:  # audio is never decoded: its features come from packets
            # Features need coarse luma only: skip the deblocking filter (~25% cheaper),
            # and optionally decode keyframes alone (several times cheaper).
            video_stream.codec_context.thread_count = 1
            video_stream.codec_context.options = {"skip_loop_filter": "all"}
            if self._decode == "keyframes":
                video_stream.codec_context.skip_frame = "NONKEY"

    def _timing(self, run: _Run, packet: Any) -> tuple[float, float] | None:
        """(start, end) media seconds of a packet (None for flush packets); tracks video."""
        if packet.pts is None or packet.time_base is None:
            return None
        start = float(packet.pts * packet.time_base) - run.origin
        end = float((packet.pts + (packet.duration or 0)) * packet.time_base) - run.origin
        run.media_s = max(run.media_s, end)
        run.last_frame = run.segments.add(self._pipe.frame_ends, packet.pos, start, end)
        if run.skips.add(round(start * 1000), round(end * 1000)):
            run.video.restart()  # no motion is measured across media the client never sent
        if packet.stream.type == "video":
            run.video.packet(start)
            if self._decode != "all":  # few or no frames get decoded: packets pace bins
                run.video.frame_end(end)
        return start, end

    def _shed(
        self, run: _Run, packet: Any, timing: tuple[float, float] | None, streams: list[Any]
    ) -> bool:
        """True when the packet must not be analysed (the decoder lags live media)."""
        if timing is None:
            return run.shedder.skipping
        was_skipping = run.shedder.skipping
        _, arrival = self._pipe.position_info()
        is_video = packet.stream.type == "video"
        keyframe = bool(packet.is_keyframe) if is_video else None
        start, end = timing
        decision = run.shedder.decide(time.monotonic() - arrival, start, video_keyframe=keyframe)
        if decision == "decode":
            return False
        if decision == "hold":  # video waiting for a keyframe: still paces the bins
            run.video.frame_end(end)
            return True
        if not was_skipping:  # drop frames in flight and restart cleanly at a keyframe
            for stream in streams:
                if stream.type == "video":
                    stream.codec_context.flush_buffers()
            run.video.restart()
        run.shedder.record(start, end)
        if is_video:
            run.video.frame_end(end)
        else:
            run.audio.skip_to(end)
        return True

    @staticmethod
    def _origin(streams: list[Any]) -> float:
        starts = [
            float(s.start_time * s.time_base)
            for s in streams
            if s.start_time is not None and s.time_base is not None
        ]
        return min(starts) if starts else 0.0

    def _frame(self, run: _Run, frame: Any) -> None:
        if frame.time is None:
            return
        t = float(frame.time) - run.origin
        duration = float(frame.duration * frame.time_base) if frame.duration else 0.0
        video = run.video
        video.frame_end(t + duration)
        if video.wants_sample(t):
            video.add_sample(_luma_plane(frame), t)

    def _emit(self, run: _Run, *, final: bool, error: Exception | None) -> None:
        media_ms = round(run.media_s * 1000)
        if final:
            complete = math.ceil(media_ms / 1000)
        else:
            ends = [run.video.end_s] if run.has_video else []
            if run.has_audio:
                ends.append(run.audio.end_s)
            complete = math.floor(min(ends)) if ends else 0
        store = run.store.bins
        bins = [store.get(i) or FeatureBin(i) for i in range(run.emitted, max(complete, 0))]
        for cell in bins:
            store.pop(cell.index, None)
        run.emitted = max(run.emitted, complete)
        gaps = [(round(a * 1000), round(b * 1000)) for a, b in run.video.gaps]
        _, arrival = self._pipe.position_info()
        self._report(
            MediaProgress(
                bins=bins,
                media_ms=media_ms,
                gaps_ms=gaps,
                arrival=arrival,
                finished=final,
                error=error,
                has_video=run.has_video,
                skipped_ms=run.shedder.ranges_ms(),
                segments_ms=run.segments.complete(None if final else run.last_frame),
                stream_skips_ms=run.skips.ranges(),
            )
        )


def _luma_plane(frame: Any) -> npt.NDArray[np.uint8]:
    """The decoded frame's 8-bit luma plane, read in place (no scaler: exact everywhere)."""
    fmt = frame.format
    name: str = fmt.name
    planar_luma = name.startswith(("yuv", "gray", "nv12", "nv21")) and not fmt.is_rgb
    if planar_luma and fmt.components[0].bits == 8:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return rows[:, : plane.width]
    # Other pixel formats (high bit depth, RGB) go through swscale, which may round
    # differently on other CPUs; the generated and usual inputs are 8-bit YUV.
    gray: npt.NDArray[np.uint8] = frame.reformat(format="gray").to_ndarray()
    return gray
