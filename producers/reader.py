"""Read one source as a stream of packets on the session's media timeline.

The reader opens the source, lets :mod:`producers.probe` choose stream copy or transcoding
per stream, and yields :class:`MediaPacket` objects whose
timestamps start at 0 at the session's first video keyframe and stay continuous across
``--loop`` plays. ``--realtime`` paces a file to the wall clock. Runs in a worker thread.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import av

from producers.exceptions import (
    NoVideoStreamError,
    SourceError,
    SourceUnavailableError,
    TruncatedMediaError,
)
from producers.fmp4 import Sample
from producers.probe import MediaInfo, StreamPlan, media_info, pick_audio, plan_streams
from producers.sources import SourceSpec, classify_os_error, open_source
from producers.transcode import AudioTranscoder, VideoTranscoder
from runtime.logs import get_logger

if TYPE_CHECKING:
    from producers.relay import FfmpegRelay

__all__ = ["MediaPacket", "MediaReader", "ReaderOptions"]

_log = get_logger("producers.reader")

_EXACT_DURATION_FORMATS = ("mov", "mp4", "matroska", "webm")
_TRUNCATION_TOLERANCE_S = 0.5
_PACE_SLICE_S = 0.2
_MAX_EARLY_AUDIO = 2000
# Audio may start this much before the first video keyframe (AAC priming, interleaving).
_AUDIO_LEAD_S = 0.1
# A live network source whose peer drops the connection after sending media has ended
# (FFmpeg's RTMP server, for one, closes the socket instead of signalling the end).
_DISCONNECT_ERRNOS = frozenset({errno.EIO, errno.ECONNRESET, errno.EPIPE})


@dataclass(frozen=True)
class ReaderOptions:
    """How to read: pacing, looping (``loop`` plays in total, 0 = forever), transcoding."""

    realtime: bool = False
    loop: int = 1
    transcode: bool = False
    chunk_duration_s: float = 2.0
    timeout_s: float = 15.0


@dataclass
class _PlayState:
    """Where one pass over the input stands."""

    session_start_s: float
    video_index: int
    time_bases: dict[int, float]  # stream index -> seconds per tick
    origin: float | None = None  # source time of the pass's first video keyframe
    video_end: float | None = None  # session time where the pass's video ends
    early_audio: list[av.Packet[Any]] = field(default_factory=list)
    shifts: dict[int, int] = field(default_factory=dict)
    run_time_bases: tuple[float, float] = (0.0, 0.0)  # video, audio (PacketRun)

    def offset_s(self) -> float:
        """Seconds to add to a source time to get the session time."""
        assert self.origin is not None
        return self.session_start_s - self.origin

    def shift(self, index: int) -> int:
        """:meth:`offset_s` in ticks of stream ``index``."""
        ticks = self.shifts.get(index)
        if ticks is None:
            ticks = self.shifts[index] = round(self.offset_s() / self.time_bases[index])
        return ticks


@dataclass(slots=True)
class MediaPacket:
    """A packet ready to mux: ``packet`` times are session times in its own time base."""

    kind: Literal["video", "audio"]
    packet: av.Packet[Any]
    pts_s: float
    end_s: float
    keyframe: bool


@dataclass(slots=True)
class PacketRun:
    """Stream-copied packets in demux order, rebased, from one video keyframe to the next.

    A file read as fast as it goes is handed to the chunker a GOP at a time (see
    :meth:`MediaReader.packets`): per packet, the reader only rebases, drops what the MP4
    muxer cannot take (no timestamp, empty, decode time not advancing) and appends.
    ``packets`` holds :data:`~producers.fmp4.Sample` s, ``(0, video packet, ...)`` /
    ``(1, audio packet, ...)`` with the fields the fragment writer needs; ``keyframe`` says it
    starts with a video keyframe at ``start_s`` (only the first run of a play may not);
    ``video_end_s`` is where its latest video frame ends and ``video_min_s`` where its
    earliest one starts (None without video); ``time_bases`` are the packets' seconds per
    tick (video, audio).
    """

    keyframe: bool
    start_s: float
    packets: list[Sample]
    video_end_s: float | None
    video_min_s: float | None
    time_bases: tuple[float, float]


class MediaReader:
    """Iterates one source's packets (copy or transcoded) on the session timeline."""

    def __init__(self, spec: SourceSpec, options: ReaderOptions, stop: threading.Event) -> None:
        self.spec = spec
        self.options = options
        self._stop = stop
        self._input: av.container.InputContainer | None = None
        self._plan: StreamPlan | None = None
        self._video_in: av.VideoStream | None = None
        self._audio_in: av.AudioStream | None = None
        self._vt: VideoTranscoder | None = None
        self._at: AudioTranscoder | None = None
        self.video_template: av.VideoStream | None = None
        self.audio_template: av.AudioStream | None = None
        self.info: MediaInfo | None = None
        self._fps = 25.0
        self._relay: FfmpegRelay | None = None
        # Last decode time per kind (video, audio) handed out in runs, across plays.
        self._run_dts: list[int | None] = [None, None]

    def open(self) -> MediaInfo:
        """Open and probe the source; raises a :class:`SourceError` when it cannot be used."""
        if not self.spec.is_file:
            # Imported here: a file never needs the relay (subprocess, ctypes, ...).
            from producers.relay import FfmpegRelay, needs_relay

            if needs_relay(self.spec.target):
                self._relay = FfmpegRelay(
                    self.spec.target,
                    self.spec.display,
                    timeout_s=self.options.timeout_s,
                    stop=self._stop,
                )
        container = open_source(self.spec, timeout_s=self.options.timeout_s, relay=self._relay)
        self._input = container
        try:
            plan = plan_streams(
                container,
                self.spec.display,
                transcode=self.options.transcode,
                chunk_duration_s=self.options.chunk_duration_s,
            )
        except BaseException:
            self.close()
            raise
        self._plan = plan
        self._video_in, self._audio_in = plan.video_in, plan.audio_in
        self._vt, self._at = plan.video_encoder, plan.audio_encoder
        self.video_template, self.audio_template = plan.video_template, plan.audio_template
        self._fps = plan.fps
        duration = None
        if self.spec.is_file and container.duration and self.options.loop > 0:
            duration = container.duration / 1_000_000 * self.options.loop
        self.info = media_info(plan, duration)
        return self.info

    @property
    def bit_rate(self) -> int | None:
        """The source's bit rate (bits per second) as its container states it; None if unknown."""
        return (self._input.bit_rate or None) if self._input is not None else None

    # -- reading ---------------------------------------------------------------------------

    def packets(self) -> Generator[MediaPacket | PacketRun, None, None]:
        """All packets of all plays, then the encoders' tails. Stops early on the stop event.

        A stream-copied file read as fast as it goes (not live, not ``--realtime``) comes
        as :class:`PacketRun` batches after its first video keyframe; everything else
        packet by packet.
        """
        if self._input is None or self.info is None:
            raise RuntimeError("MediaReader.open() must succeed before packets()")
        session_start_s = 0.0
        wall_start = time.monotonic()
        play = 0
        while not self._stop.is_set():
            if play > 0:
                self._reopen()
            play_end = yield from self._play(session_start_s, wall_start)
            play += 1
            if play_end is None or not self.spec.is_file:
                break
            session_start_s = play_end
            if 0 < self.options.loop <= play:
                break
        yield from self._flush_encoders()

    def _reopen(self) -> None:
        assert self._input is not None
        self._input.close()
        self._input = open_source(self.spec, timeout_s=self.options.timeout_s)
        self._video_in = self._input.streams.video[0]
        if self._audio_in is not None:
            self._audio_in = pick_audio(self._input, self.spec.display)

    def _play(
        self, session_start_s: float, wall_start: float
    ) -> Generator[MediaPacket | PacketRun, None, float | None]:
        """One pass over the input. Returns the session time where the video ended."""
        container = self._input
        video, audio = self._video_in, self._audio_in
        assert container is not None
        assert video is not None
        streams = [s for s in (video, audio) if s is not None]
        state = _PlayState(
            session_start_s,
            video_index=video.index,
            time_bases={s.index: float(s.time_base or 0) for s in streams},
        )
        try:
            demuxed = container.demux(streams)
            yield from self._first(demuxed, state, wall_start)
            if not self._stop.is_set():
                yield from self._rest(demuxed, state, wall_start)
            if self._stop.is_set():
                return state.video_end
        except av.error.FFmpegError as exc:
            if self._disconnected(exc, state):
                return state.video_end
            raise self._read_error(exc) from exc
        if self._relay is not None and (failure := self._relay.failure()) is not None:
            raise failure
        if state.origin is None:
            raise NoVideoStreamError(self.spec.display, "no decodable video frames")
        self._check_complete(container, state.origin, session_start_s, state.video_end)
        return state.video_end

    def _first(
        self, demuxed: Iterator[av.Packet[Any]], state: _PlayState, wall_start: float
    ) -> Iterator[MediaPacket]:
        """The packets up to and including the first video keyframe (held audio too)."""
        for packet in demuxed:
            if self._stop.is_set():
                return
            if packet.pts is None or packet.size == 0:
                continue
            for media in self._route(packet, state, wall_start):
                # Decode times must advance for the muxer, also across plays.
                kind = 0 if media.kind == "video" else 1
                last, dts = self._run_dts[kind], media.packet.dts
                if dts is not None:
                    if last is not None and dts <= last:
                        continue
                    self._run_dts[kind] = dts
                yield media
            if state.origin is not None:
                return

    def _rest(
        self, demuxed: Iterator[av.Packet[Any]], state: _PlayState, wall_start: float
    ) -> Iterator[MediaPacket | PacketRun]:
        """The packets after the first video keyframe (the hot loop).

        Stream-copied packets are rebased inline, with the same arithmetic as
        :meth:`_video` and :meth:`_audio` (which transcoded streams still go through):
        a nested generator per packet costs more than the rebasing itself.
        """
        stop = self._stop.is_set
        video_index = state.video_index
        copy_video, copy_audio = self._vt is None, self._at is None
        frame_s = 1.0 / self._fps
        offset_s = state.offset_s()
        video_tb = state.time_bases[video_index]
        video_shift = state.shift(video_index)
        audio_tb, audio_shift = 0.0, 0
        if self._audio_in is not None:
            audio_tb = state.time_bases[self._audio_in.index]
            audio_shift = state.shift(self._audio_in.index)
        pace = self.options.realtime
        if copy_video and copy_audio and not pace and not self.spec.live:
            yield from self._runs(demuxed, state)
            return
        for packet in demuxed:
            pts = packet.pts
            if pts is None or packet.size == 0:
                continue
            if packet.stream_index == video_index:
                if stop():  # checked once per video frame
                    return
                if not copy_video:
                    yield from self._route(packet, state, wall_start)
                    continue
                if video_shift or packet.dts is None:
                    pts += video_shift
                    packet.pts = pts
                    dts = packet.dts
                    packet.dts = pts if dts is None else dts + video_shift
                start = pts * video_tb
                duration = packet.duration
                end = start + (duration * video_tb if duration else frame_s)
                video_end = state.video_end or 0.0
                state.video_end = end if end > video_end else video_end
                if pace:
                    self._pace(start, wall_start)
                yield MediaPacket("video", packet, start, end, packet.is_keyframe)
            elif not copy_audio:
                yield from self._audio(packet, state)
            elif pts * audio_tb + offset_s >= -_AUDIO_LEAD_S:  # else: before the first keyframe
                if audio_shift or packet.dts is None:
                    pts += audio_shift
                    packet.pts = pts
                    dts = packet.dts
                    packet.dts = pts if dts is None else dts + audio_shift
                start = pts * audio_tb
                duration = packet.duration
                end = start + duration * audio_tb if duration else start
                yield MediaPacket("audio", packet, start, end, True)

    def _runs(  # noqa: PLR0912, PLR0915 - the hot loop stays in one frame: a call per packet costs more than its work
        self, demuxed: Iterator[av.Packet[Any]], state: _PlayState
    ) -> Iterator[PacketRun]:
        """:meth:`_rest` for stream copy read flat out: a :class:`PacketRun` per GOP.

        The hot loop of a file ingest: one pass over the packets with as few Python
        operations per packet as it takes (locals only, no object per packet).
        """
        stop = self._stop.is_set
        video_index = state.video_index
        video_shift = state.shift(video_index)
        frame_ticks = max(1, round(1.0 / self._fps / state.time_bases[video_index]))
        audio_shift, audio_tb = 0, 0.0
        audio_floor = 0.0
        if self._audio_in is not None:
            audio_tb = state.time_bases[self._audio_in.index]
            audio_shift = state.shift(self._audio_in.index)
            # Audio starting before this (source ticks) is from before the first keyframe.
            audio_floor = (-_AUDIO_LEAD_S - state.offset_s()) / audio_tb
        state.run_time_bases = (state.time_bases[video_index], audio_tb)
        last_video, last_audio = self._run_dts
        run: list[Sample] = []
        append = run.append
        keyframe_pts: int | None = None
        video_end: int | None = None
        video_min: int | None = None
        for packet in demuxed:
            pts = packet.pts
            size = packet.size
            if pts is None or not size:
                continue
            if packet.stream_index == video_index:
                dts = packet.dts
                if video_shift or dts is None:
                    pts += video_shift
                    packet.pts = pts
                    dts = pts if dts is None else dts + video_shift
                    packet.dts = dts
                if last_video is not None and dts <= last_video:
                    continue
                last_video = dts
                keyframe = packet.is_keyframe
                if keyframe:
                    if run:
                        yield self._run(state, run, keyframe_pts, video_end, video_min)
                        run = []
                        append = run.append
                        video_end = video_min = None
                    keyframe_pts = pts
                    if stop():  # checked once per GOP: a GOP is read in microseconds
                        break
                duration = packet.duration
                end = pts + (duration or frame_ticks)
                if video_end is None or end > video_end:
                    video_end = end
                if video_min is None or pts < video_min:
                    video_min = pts
                append((0, packet, dts, pts, duration, size, keyframe))
            elif pts >= audio_floor:
                dts = packet.dts
                if audio_shift or dts is None:
                    pts += audio_shift
                    packet.pts = pts
                    dts = pts if dts is None else dts + audio_shift
                    packet.dts = dts
                if last_audio is not None and dts <= last_audio:
                    continue
                last_audio = dts
                append((1, packet, dts, pts, packet.duration, size, packet.is_keyframe))
        self._run_dts[:] = [last_video, last_audio]
        if run:
            yield self._run(state, run, keyframe_pts, video_end, video_min)

    @staticmethod
    def _run(
        state: _PlayState,
        packets: list[Sample],
        keyframe_pts: int | None,
        video_end: int | None,
        video_min: int | None,
    ) -> PacketRun:
        tb = state.time_bases[state.video_index]
        end_s = None if video_end is None else video_end * tb
        if end_s is not None and (state.video_end is None or end_s > state.video_end):
            state.video_end = end_s
        return PacketRun(
            keyframe_pts is not None,
            (keyframe_pts or 0) * tb,
            packets,
            end_s,
            None if video_min is None else video_min * tb,
            state.run_time_bases,
        )

    def _read_error(self, exc: av.error.FFmpegError) -> SourceError:
        """Classify a demux failure; a failed relay explains it best (e.g. a dropped stream)."""
        if self._relay is not None and (failure := self._relay.failure()) is not None:
            return failure
        if isinstance(exc, av.error.InvalidDataError):
            return TruncatedMediaError(self.spec.display, f"corrupt data ({exc.strerror})")
        if isinstance(exc, av.error.ExitError):
            return SourceUnavailableError(
                self.spec.display, f"no data for {self.options.timeout_s:g} s"
            )
        if isinstance(exc, OSError):
            return classify_os_error(self.spec, exc)
        return SourceError(self.spec.display, f"read failed ({exc.strerror})")

    def _disconnected(self, exc: av.error.FFmpegError, state: _PlayState) -> bool:
        """A live network peer closing the connection after media is the stream's end."""
        if self.spec.is_file or self.spec.kind in ("device", "stdin") or state.origin is None:
            return False
        if not isinstance(exc, OSError) or exc.errno not in _DISCONNECT_ERRNOS:
            return False
        self._log_disconnect(exc)
        return True

    def _log_disconnect(self, exc: OSError) -> None:
        _log.warning("source_disconnected", source=self.spec.display, error=exc.strerror)

    def _route(
        self, packet: av.Packet[Any], state: _PlayState, wall_start: float
    ) -> Iterator[MediaPacket]:
        """Rebase one demuxed packet onto the session timeline (or hold/drop it)."""
        if packet.stream_index != state.video_index:
            if state.origin is None:
                if len(state.early_audio) < _MAX_EARLY_AUDIO:
                    state.early_audio.append(packet)
                return
            yield from self._audio(packet, state)
            return
        if state.origin is None:
            if not packet.is_keyframe:
                return  # a live stream joined mid-GOP: wait for the first keyframe
            assert packet.pts is not None
            state.origin = packet.pts * state.time_bases[packet.stream_index]
            for held in state.early_audio:
                yield from self._audio(held, state)
            state.early_audio.clear()
        for media in self._video(packet, state):
            state.video_end = max(state.video_end or 0.0, media.end_s)
            self._pace(media.pts_s, wall_start)
            yield media

    def _check_complete(
        self,
        container: av.container.InputContainer,
        origin: float,
        session_start_s: float,
        video_end: float | None,
    ) -> None:
        """Files whose header states the duration must deliver (nearly) all of it."""
        if not self.spec.is_file or not container.duration or video_end is None:
            return
        if not any(name in _EXACT_DURATION_FORMATS for name in container.format.name.split(",")):
            return
        declared = container.duration / 1_000_000 - max(
            0.0, origin - (container.start_time or 0) / 1_000_000
        )
        got = video_end - session_start_s
        if got < declared - _TRUNCATION_TOLERANCE_S:
            raise TruncatedMediaError(
                self.spec.display, f"truncated: media ends at {got:.2f} s of {declared:.2f} s"
            )

    def _video(self, packet: av.Packet[Any], state: _PlayState) -> Iterator[MediaPacket]:
        frame_s = 1.0 / self._fps
        offset_s = state.offset_s()
        if self._vt is None:
            tb = state.time_bases[packet.stream_index]
            shift = state.shift(packet.stream_index)
            assert packet.pts is not None
            packet.pts += shift
            packet.dts = packet.pts if packet.dts is None else packet.dts + shift
            start = packet.pts * tb
            length = packet.duration * tb if packet.duration else frame_s
            yield MediaPacket("video", packet, start, start + length, packet.is_keyframe)
            return
        for frame in packet.decode():
            if not isinstance(frame, av.VideoFrame) or frame.pts is None or frame.time_base is None:
                continue
            when = float(frame.pts * frame.time_base) + offset_s
            for out in self._vt.encode(frame, when):
                yield self._encoded("video", out, frame_s)

    def _audio(self, packet: av.Packet[Any], state: _PlayState) -> Iterator[MediaPacket]:
        tb = state.time_bases[packet.stream_index]
        assert packet.pts is not None
        start = packet.pts * tb + state.offset_s()
        if start < -_AUDIO_LEAD_S:
            return  # well before the first video keyframe
        if self._at is None:
            shift = state.shift(packet.stream_index)
            packet.pts += shift
            packet.dts = packet.pts if packet.dts is None else packet.dts + shift
            start = packet.pts * tb
            length = packet.duration * tb if packet.duration else 0.0
            yield MediaPacket("audio", packet, start, start + length, True)
            return
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            return  # a damaged audio packet is skipped, not fatal
        for frame in frames:
            if not isinstance(frame, av.AudioFrame):
                continue
            for out in self._at.encode(frame, start):
                yield self._encoded("audio", out, 0.0)

    def _encoded(
        self, kind: Literal["video", "audio"], packet: av.Packet[Any], default_s: float
    ) -> MediaPacket:
        tb = packet.time_base or Fraction(1, 90000)
        assert packet.pts is not None
        start = float(packet.pts * tb)
        length = float(packet.duration * tb) if packet.duration else default_s
        return MediaPacket(kind, packet, start, start + length, packet.is_keyframe)

    def _flush_encoders(self) -> Iterator[MediaPacket]:
        if self._vt is not None:
            for out in self._vt.flush():
                yield self._encoded("video", out, 1.0 / self._fps)
        if self._at is not None:
            for out in self._at.encode(None, 0.0):
                yield self._encoded("audio", out, 0.0)

    def _pace(self, media_s: float, wall_start: float) -> None:
        if not self.options.realtime:
            return
        while not self._stop.is_set():
            wait = wall_start + media_s - time.monotonic()
            if wait <= 0:
                return
            self._stop.wait(min(wait, _PACE_SLICE_S))

    def close(self) -> None:
        """Release the input and reap the relay, if any (safe to call twice, any thread)."""
        if self._input is not None:
            self._input.close()
            self._input = None
        if self._relay is not None:
            self._relay.close()
