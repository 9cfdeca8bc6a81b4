"""``decode="boxes"``: features from container box headers, on the event loop, no demuxer.

:class:`BoxMediaStream` has :class:`~simulator.media.MediaStream`'s interface but no
thread and no PyAV: each binary frame is parsed where it arrives, by the incremental
fragmented-MP4 (``mp4_boxes.py``) or WebM (``ebml.py``) reader, and every sample whose
bytes have arrived feeds the same integer analysers as ``decode="none"``
(:class:`PacketAudioAnalyser`, :class:`PacketVideoAnalyser`, and
:class:`VideoAnalyser` for video gaps), with the same timestamps FFmpeg's demuxer
reports. The window model downstream is unchanged, so every event kind still works; on
the fixture clips the events equal ``decode="none"`` exactly. Nothing is decoded, so
there is no decode shedding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from simulator.box_reader import Sample, TrackInfo
from simulator.config import DecodeDepth
from simulator.ebml import WebmReader
from simulator.exceptions import MalformedMediaError, NoUsableVideoError
from simulator.features import FeatureBin, VideoAnalyser, _Bins
from simulator.media import MediaProgress, MediaStream
from simulator.mp4_boxes import Mp4BoxReader
from simulator.packet_features import PacketAudioAnalyser, PacketVideoAnalyser
from simulator.pcm import PcmStream
from simulator.segments import SegmentSpans
from simulator.skips import SkipTracker

__all__ = ["BoxMediaStream", "open_media_stream"]

PROBE_BYTES = 32768
"""Track starts seen within this many stream bytes set the time origin (the demuxer's probe)."""
PROBE_S = 5.0
"""... and within this much media of any track (FFmpeg's default analysis duration)."""


class BoxMediaStream:
    """One session's media read from box headers: feed bytes in, progress reports out.

    Args:
        container: ``mp4`` or ``matroska`` (from :func:`~chunks.containers.sniff_container`).
        report: called (on the event loop, from :meth:`feed` / :meth:`finish`) with each
            :class:`MediaProgress`.
        require_video: fail with ``NoUsableVideoError`` when there is no video track.
        video_sample_fps, video_gap_ms: as for ``MediaStream`` (gaps are found the same way).
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
        stream_skip_ms: int = 1000,
    ) -> None:
        self._reader = Mp4BoxReader() if container == "mp4" else WebmReader()
        self._skips = SkipTracker(stream_skip_ms)
        self._segments = SegmentSpans()
        self._frame_ends: list[int] = []
        self._report = report
        self._require_video = require_video
        self._store = _Bins()
        self._video = VideoAnalyser(self._store, video_sample_fps, video_gap_ms)
        self._audio = PacketAudioAnalyser(self._store)
        self._packet_video: PacketVideoAnalyser | None = None
        self._origin: float | None = None
        self._held: list[Sample] = []
        self._has_video = self._has_audio = False
        self._video_dts_s = 0.0
        self._media_s = 0.0
        self._emitted = 0
        self._frames = 0
        self._received = 0
        self._arrival = time.monotonic()
        self._done = False

    @property
    def bytes_received(self) -> int:
        """Bytes fed so far."""
        return self._received

    @property
    def started(self) -> bool:
        """Whether any media was fed."""
        return self._frames > 0

    def feed(self, data: bytes) -> None:
        """Parse one binary frame now and report what it completed."""
        if self._done:
            return
        segment, self._frames = self._frames, self._frames + 1
        self._received += len(data)
        self._frame_ends.append(self._received)
        self._arrival = time.monotonic()
        try:
            samples = self._reader.feed(data, segment)
            if self._packet_video is None and self._reader.tracks is not None:
                self._open(self._reader.tracks, segment)
            if samples:
                self._hold(samples)
        except (MalformedMediaError, NoUsableVideoError) as exc:
            self._finish(exc)
            return
        self._emit(final=False, error=None)

    def finish(self, *, abort: bool = False) -> None:
        """No more bytes will come: report the final bins (``abort`` changes nothing here)."""
        if self._done:
            return
        if self._held:
            self._hold([], final=True)
        self._video.close(self._media_s)
        self._finish(None)

    def _finish(self, error: Exception | None) -> None:
        self._done = True
        self._emit(final=True, error=error)

    def _open(self, tracks: list[TrackInfo], segment: int) -> None:
        video = next((t for t in tracks if t.kind == "video"), None)
        self._has_video = video is not None
        self._has_audio = any(t.kind == "audio" for t in tracks)
        if not tracks:
            raise MalformedMediaError("The stream carries no audio or video track.", segment)
        if video is None and self._require_video:
            raise NoUsableVideoError("The stream carries no video track.")
        width, height = (video.width, video.height) if video is not None else (0, 0)
        self._packet_video = PacketVideoAnalyser(self._store, width, height)

    def _hold(self, samples: list[Sample], *, final: bool = False) -> None:
        """Analyse samples once the time origin is known (see :func:`_probe_origin`)."""
        if self._origin is None:
            held = self._held
            held.extend(samples)
            origin = _probe_origin(held, len(self._reader.tracks or ()), final=final)
            if origin is None:
                return
            self._origin, samples, self._held = origin, held, []
        self._analyse(samples)

    def _analyse(self, samples: list[Sample]) -> None:
        origin = self._origin if self._origin is not None else 0.0
        video, audio = self._video, self._audio
        packet_video = self._packet_video
        for sample in samples:
            info = sample.track
            start = sample.pts * info.num / info.den - origin
            end = (sample.pts + sample.duration) * info.num / info.den - origin
            self._media_s = max(self._media_s, end)
            self._skips.add(round(start * 1000), round(end * 1000))
            self._segments.add(self._frame_ends, sample.end_offset - sample.size, start, end)
            if info.kind == "audio":
                audio.packet(sample.size, start, end - start)
                continue
            video.packet(start)
            video.frame_end(end)
            self._video_dts_s = max(self._video_dts_s, sample.dts * info.num / info.den - origin)
            if packet_video is not None:
                packet_video.packet(sample.size, start, sample.keyframe)

    def _emit(self, *, final: bool, error: Exception | None) -> None:
        media_ms = round(self._media_s * 1000)
        if final:
            complete = math.ceil(media_ms / 1000)
        else:
            # Reordered video (B-frames) may still land before the newest presentation end.
            ends = [min(self._video.end_s, self._video_dts_s)] if self._has_video else []
            if self._has_audio:
                ends.append(self._audio.end_s)
            complete = math.floor(min(ends)) if ends else 0
        segments = self._segments.complete(None if final else self._segments.latest)
        if complete <= self._emitted and not final and not segments:
            return
        store = self._store.bins
        indices = range(self._emitted, max(complete, 0))
        bins = [store.pop(i) if i in store else FeatureBin(i) for i in indices]
        self._emitted = max(self._emitted, complete)
        gaps = [(round(a * 1000), round(b * 1000)) for a, b in self._video.gaps]
        self._report(
            MediaProgress(
                bins=bins,
                media_ms=media_ms,
                gaps_ms=gaps,
                arrival=self._arrival,
                finished=final,
                error=error,
                has_video=self._has_video or self._packet_video is None,
                stream_skips_ms=self._skips.ranges(),
                segments_ms=segments,
            )
        )


def _probe_origin(samples: list[Sample], tracks: int, *, final: bool) -> float | None:
    """Where presentation starts: the earliest track start (first time + codec delay).

    As FFmpeg's stream start times after probing (``decode="none"`` opens the demuxer with
    ``probesize=32768``), a track counts only if it starts before the probe ends: within
    the first :data:`PROBE_BYTES` of the stream and :data:`PROBE_S` of any track's media.
    None while that cannot be told yet.
    """
    starts: dict[TrackInfo, float] = {}
    first_dts: dict[TrackInfo, int] = {}
    for sample in samples:
        info = sample.track
        begin = first_dts.setdefault(info, sample.dts)
        span = (sample.dts - begin) * info.num / info.den
        if starts and (sample.end_offset > PROBE_BYTES or span >= PROBE_S):
            break
        if info not in starts:
            starts[info] = (sample.pts + info.delay_ticks) * info.num / info.den
            if len(starts) == tracks:
                break
    else:
        if not final:
            return None
    return min(starts.values()) if starts else 0.0


def open_media_stream(
    container: str,
    report: Callable[[MediaProgress], None],
    *,
    require_video: bool,
    video_sample_fps: float,
    video_gap_ms: int,
    decode: DecodeDepth,
    shed_lag_s: float | None,
    window_ms: int,
    hop_ms: int,
    stream_skip_ms: int = 1000,
    pcm_sample_rate: int | None = None,
) -> MediaStream | BoxMediaStream | PcmStream:
    """The media reader: raw PCM (``container="pcm"``), box headers or PyAV in a thread."""
    if container == "pcm":
        return PcmStream(report, sample_rate=pcm_sample_rate or 16000)
    if decode == "boxes":
        return BoxMediaStream(
            container,
            report,
            require_video=require_video,
            video_sample_fps=video_sample_fps,
            video_gap_ms=video_gap_ms,
            stream_skip_ms=stream_skip_ms,
        )
    return MediaStream(
        container,
        report,
        require_video=require_video,
        video_sample_fps=video_sample_fps,
        video_gap_ms=video_gap_ms,
        decode=decode,
        shed_lag_s=shed_lag_s,
        window_ms=window_ms,
        hop_ms=hop_ms,
        stream_skip_ms=stream_skip_ms,
    )
