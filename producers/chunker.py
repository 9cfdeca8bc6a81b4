"""Cut a session's packets into keyframe-aligned, self-contained fMP4 chunks.

A chunk starts at a video keyframe and closes at the first keyframe at least
``target_duration_s`` later. Its media range runs from its first keyframe to the next
chunk's first keyframe (the last chunk: to the end of its last frame), so the ranges of
a session tile its media time without gaps or overlaps. Audio packets go to the chunk
whose range holds their start time; a closed chunk waits briefly for late-interleaved
audio before it is emitted. A chunk bigger than the record limit is re-muxed with
size-capped fragments and split into parts (see :func:`chunks.boxes.split_parts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av

from chunks.boxes import split_parts, top_level_boxes
from producers.fmp4 import (
    FragmentWriter,
    Sample,
    TrackLayout,
    init_header,
    mux_chunk,
    mux_chunk_layout,
    sample,
)
from producers.reader import MediaPacket, PacketRun
from runtime.logs import get_logger

__all__ = ["Chunk", "Chunker"]

_log = get_logger("producers.chunker")

_EPSILON_S = 1e-6
# A keyframe this close to a full target duration counts as reaching it: RTSP timestamps
# (90 kHz RTP clocks mapped through RTCP) can land a tick (11 µs) early.
_CUT_TOLERANCE_S = 1e-3
_AUDIO_WAIT_S = 1.0  # how far video may run ahead before a closed chunk stops waiting for audio
# The fragment writer's output is compared with FFmpeg's muxer on a session's first
# chunks, on the first chunk of each new init header, and on every Nth chunk after.
_VERIFY_FIRST = 3
_VERIFY_EVERY = 64


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``parts`` concatenated are the fMP4 bytes; part 0 starts with the init header."""

    seq: int
    media_start_s: float
    media_duration_s: float
    keyframe_start: bool
    parts: tuple[bytes, ...]

    @property
    def byte_size(self) -> int:
        """Total payload bytes over all parts."""
        return sum(len(part) for part in self.parts)


@dataclass
class _Open:
    start_s: float
    keyframe_start: bool
    packets: list[Sample] = field(default_factory=list)
    end_s: float | None = None  # set when closed by the next chunk's keyframe
    video_end_s: float = 0.0


class Chunker:
    """Turns a :class:`MediaPacket` stream into :class:`Chunk` objects (synchronous, one
    stream per instance)."""

    def __init__(
        self,
        templates: Sequence[av.stream.Stream],
        *,
        target_duration_s: float,
        max_part_bytes: int,
        fragment_writer: bool = True,
    ) -> None:
        self._templates = templates
        self._has_audio = len(templates) > 1
        self._target_s = target_duration_s
        self._max_part_bytes = max_part_bytes
        self._seq = 0
        self._last_dts: list[int | None] = [None, None]
        self.open_gop = False
        self._current: _Open | None = None
        self._closed: _Open | None = None
        self._early: list[Sample] = []
        self._writer: FragmentWriter | None = None
        self._writer_off = not fragment_writer or len(templates) > 2 or templates[0].type != "video"

    @property
    def writer_active(self) -> bool:
        """Whether chunks come from :class:`FragmentWriter` (it matched FFmpeg's muxer)."""
        return self._writer is not None

    def chunks(self, packets: Iterable[MediaPacket | PacketRun]) -> Iterator[Chunk]:
        """Consume ``packets`` and yield chunks as soon as each is complete."""
        self._current, self._closed, self._early = None, None, []
        last_dts = self._last_dts  # per kind (video, audio); the MP4 muxer needs it to advance
        for media in packets:
            if type(media) is PacketRun:  # a GOP at once (the reader dropped what must go)
                emitted = self._on_run(media)
                if emitted:
                    yield from emitted
                continue
            assert isinstance(media, MediaPacket)
            dts = media.packet.dts  # a kind's packets share one time base for the session
            if dts is None:
                continue
            if media.kind == "video":
                last = last_dts[0]
                if last is not None and dts <= last:
                    continue
                last_dts[0] = dts
                emitted = self._on_video(media)
            else:
                last = last_dts[1]
                if last is not None and dts <= last:
                    continue
                last_dts[1] = dts
                current = self._current
                if self._closed is None and current is not None:  # the common case
                    current.packets.append(sample(1, media.packet))
                    continue
                emitted = self._on_audio(media)
            if emitted:
                yield from emitted
        if self._closed is not None:
            yield self._emit(self._closed)
        current = self._current
        if current is not None and any(item[0] == 0 for item in current.packets):
            current.end_s = current.video_end_s
            yield self._emit(current)

    def _on_video(self, media: MediaPacket) -> tuple[Chunk, ...]:
        """Add a video packet; returns the chunks it completes (usually none)."""
        emitted: tuple[Chunk, ...] = ()
        current = self._current
        if current is None:
            current = self._current = _Open(media.pts_s, media.keyframe, packets=self._early)
        elif media.keyframe and media.pts_s - current.start_s >= self._target_s - _CUT_TOLERANCE_S:
            if self._closed is not None:
                emitted = (self._emit(self._closed),)
            current.end_s = media.pts_s
            self._closed, current = current, _Open(media.pts_s, True)
            self._current = current
        elif media.pts_s < current.start_s - _EPSILON_S and not self.open_gop:
            # A frame shown before the chunk's keyframe: an open GOP (e.g. x265 defaults).
            # Its leading frames decode only after the previous chunk; coverage is unchanged.
            self.open_gop = True
            _log.warning("open_gop", hint="use --transcode for strictly self-contained chunks")
        current.packets.append(sample(0, media.packet))
        current.video_end_s = max(current.video_end_s, media.end_s)
        closed = self._closed
        if closed is not None:
            assert closed.end_s is not None
            if not self._has_audio or media.pts_s - closed.end_s > _AUDIO_WAIT_S:
                self._closed = None
                emitted = (*emitted, self._emit(closed))
        return emitted

    def _on_run(self, run: PacketRun) -> tuple[Chunk, ...]:
        """Add a GOP's packets; the same rules as :meth:`_on_video` and :meth:`_on_audio`."""
        emitted: tuple[Chunk, ...] = ()
        current = self._current
        if current is None:
            current = self._current = _Open(run.start_s, run.keyframe, packets=self._early)
        elif run.keyframe and run.start_s - current.start_s >= self._target_s - _CUT_TOLERANCE_S:
            if self._closed is not None:
                emitted = (self._emit(self._closed),)
            current.end_s = run.start_s
            self._closed, current = current, _Open(run.start_s, True)
            self._current = current
        if run.video_end_s is not None:
            current.video_end_s = max(current.video_end_s, run.video_end_s)
        video_min = run.video_min_s
        if video_min is not None and video_min < current.start_s - _EPSILON_S and not self.open_gop:
            self.open_gop = True
            _log.warning("open_gop", hint="use --transcode for strictly self-contained chunks")
        closed = self._closed
        if closed is None:  # the common case: the whole GOP joins the open chunk
            current.packets.extend(run.packets)
            return emitted
        assert closed.end_s is not None
        video_tb, audio_tb = run.time_bases
        packets = run.packets
        for position, item in enumerate(packets):
            pts = item[3]
            if item[0] == 1:
                if pts * audio_tb < closed.end_s:
                    closed.packets.append(item)
                    continue
                rest = position  # this audio packet and the rest join the open chunk
            else:
                current.packets.append(item)
                if self._has_audio and pts * video_tb - closed.end_s <= _AUDIO_WAIT_S:
                    continue
                rest = position + 1
            self._closed = None
            current.packets.extend(packets[rest:])
            return (*emitted, self._emit(closed))
        return emitted

    def _on_audio(self, media: MediaPacket) -> tuple[Chunk, ...]:
        """Add an audio packet; returns the chunk it completes, if any."""
        emitted: tuple[Chunk, ...] = ()
        closed = self._closed
        if closed is not None:
            assert closed.end_s is not None
            if media.pts_s < closed.end_s:
                closed.packets.append(sample(1, media.packet))
                return emitted
            self._closed = None
            emitted = (self._emit(closed),)
        if self._current is not None:
            self._current.packets.append(sample(1, media.packet))
        else:
            self._early.append(sample(1, media.packet))  # audio before the first video packet
        return emitted

    def _emit(self, chunk: _Open) -> Chunk:
        assert chunk.end_s is not None
        payload = self._mux(chunk.packets)
        parts: list[bytes] = [payload]
        if len(payload) > self._max_part_bytes:
            init_size = sum(
                size for kind, _, size in top_level_boxes(payload) if kind not in {b"moof", b"mdat"}
            )
            room = max(1024, int((self._max_part_bytes - init_size) * 0.9))
            payload = mux_chunk(self._templates, chunk.packets, frag_size_bytes=room)
            parts = split_parts(payload, self._max_part_bytes)
        result = Chunk(
            seq=self._seq,
            media_start_s=chunk.start_s,
            media_duration_s=max(0.0, chunk.end_s - chunk.start_s),
            keyframe_start=chunk.keyframe_start,
            parts=tuple(parts),
        )
        self._seq += 1
        return result

    def _mux(self, packets: list[Sample]) -> bytes:
        """The chunk's fMP4: from the fragment writer once it has matched FFmpeg's muxer."""
        if self._writer_off:
            return mux_chunk(self._templates, packets)
        writer = self._writer
        verify = self._seq < _VERIFY_FIRST or self._seq % _VERIFY_EVERY == 0
        prepared = None
        if writer is not None:
            try:
                prepared = writer.prepare(packets)
            except ValueError:  # a layout it does not write (e.g. no video): FFmpeg's muxer
                return mux_chunk(self._templates, packets)
            if not verify:
                payload = writer.finish(prepared)
                if payload is not None:
                    return payload
        # The samples' time bases, read before FFmpeg rescales their packets to its own.
        time_bases = _time_bases(packets, len(self._templates))
        reference, timescales = mux_chunk_layout(self._templates, packets)
        try:
            if writer is None:
                writer = FragmentWriter(
                    [
                        TrackLayout(number + 1, scale, number == 0)
                        for number, scale in enumerate(timescales)
                    ]
                )
                prepared = None
            if prepared is None:
                prepared = writer.prepare(packets, time_bases)
            writer.learn(prepared, init_header(reference))
            ours = writer.finish(prepared)
        except ValueError:
            ours = None
        if ours == reference:
            self._writer = writer
        else:
            self._writer, self._writer_off = None, True
            _log.info("fragment_writer_off", seq=self._seq, hint="chunks muxed by FFmpeg")
        return reference


def _time_bases(packets: list[Sample], tracks: int) -> list[Fraction | None]:
    """Each track's time base, from its first packet (None for a track without one)."""
    found: list[Fraction | None] = [None] * tracks
    for item in packets:
        if found[item[0]] is None:
            found[item[0]] = item[1].time_base
            if None not in found:
                break
    return found
