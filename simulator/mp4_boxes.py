"""Incremental fragmented-MP4 box reader: samples from ``moov`` / ``moof`` headers alone.

Top-level boxes are read as they arrive: ``moov`` and ``moof`` (small) are collected and
parsed, everything else (``mdat`` payloads above all) is skipped without copying. From
``moov``: each ``trak``'s id (``tkhd``, with the video width/height), timescale
(``mdhd``) and handler (``hdlr``: ``vide`` / ``soun``), and the per-track sample
defaults (``mvex``/``trex``). From each ``moof``/``traf``: ``tfhd`` (defaults, base data
offset), ``tfdt`` (decode time) and ``trun`` (per-sample duration, size, flags,
composition offset), giving each sample's presentation time (decode time + composition
offset, as FFmpeg's demuxer reports it), size, keyframe flag and where its bytes end.
Edit lists are not applied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from simulator.box_reader import HeaderError, IncrementalReader, Sample, TrackInfo

__all__ = ["Mp4BoxReader"]

_MAX_HEADER_BOX = 16 * 1024 * 1024
"""Largest ``moov`` / ``moof`` accepted (they are collected in memory)."""
_NON_SYNC = 0x00010000 | 0x01000000
"""Sample flags meaning "not a keyframe" (is-non-sync, or depends on other samples)."""
_HANDLERS = {b"vide": "video", b"soun": "audio"}
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class _BoxError(HeaderError):
    """A box does not parse; becomes ``ih5004`` with the segment being read."""


@dataclass
class _Track:
    info: TrackInfo
    duration: int = 0
    size: int = 0
    flags: int = 0
    next_dts: int = 0


def _u32(buf: bytes | bytearray, at: int) -> int:
    if at + 4 > len(buf):
        raise _BoxError("box shorter than its fields")
    value: int = _U32.unpack_from(buf, at)[0]
    return value


def _u64(buf: bytes | bytearray, at: int) -> int:
    if at + 8 > len(buf):
        raise _BoxError("box shorter than its fields")
    value: int = _U64.unpack_from(buf, at)[0]
    return value


def _children(buf: bytearray, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in ``buf[start:end]``."""
    out: list[tuple[bytes, int, int]] = []
    while start < end:
        if end - start < 8:
            raise _BoxError(f"truncated box header at +{start}")
        size, kind = _u32(buf, start), bytes(buf[start + 4 : start + 8])
        header = 8
        if size == 1:
            size, header = _u64(buf, start + 8), 16
        if size < header or start + size > end:
            raise _BoxError(f"box {kind!r} of {size} bytes overruns its parent")
        out.append((kind, start + header, start + size))
        start += size
    return out


def _child(buf: bytearray, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, a, b in _children(buf, start, end):
        if found == kind:
            return a, b
    return None


class Mp4BoxReader(IncrementalReader):
    """Feed fragmented-MP4 bytes; get back the samples whose bytes have arrived."""

    container = "fragmented MP4"

    def __init__(self) -> None:
        super().__init__(8)
        self._state = "header"
        self._box_start = 0
        self._box_type = b""
        self._size = 0
        self._tracks: dict[int, _Track] = {}

    def _advance(self) -> None:
        cursor, buf = self._cursor, self._cursor.buffer
        if self._state == "header":
            self._box_start = cursor.offset - 8
            self._size, self._box_type = _u32(buf, 0), bytes(buf[4:8])
            if not all(32 <= c < 127 for c in self._box_type):
                raise _BoxError(f"not an MP4 box header (type {self._box_type!r})")
            if self._size == 1:
                self._state = "large"
                cursor.want(8)
                return
            self._open(8)
        elif self._state == "large":
            self._size = _u64(buf, 0)
            self._open(16)
        else:
            self._parse(self._box_type, bytearray(buf))
            self._state = "header"
            cursor.want(8)

    def _open(self, header: int) -> None:
        kind, cursor = self._box_type, self._cursor
        if self._size == 0:  # extends to the end of the stream: only media data may
            if kind != b"mdat":
                raise _BoxError(f"box {kind!r} without a size")
            self._state = "header"
            cursor.skip(1 << 62)
            return
        if self._size < header:
            raise _BoxError(f"box {kind!r} declares {self._size} bytes, less than its header")
        body = self._size - header
        if kind in (b"moov", b"moof"):
            if body > _MAX_HEADER_BOX:
                raise _BoxError(f"box {kind!r} of {self._size} bytes is too large")
            if kind == b"moof" and self.tracks is None:
                raise _BoxError("movie fragment before the movie header (moov)")
            if body:
                self._state = "body"
                cursor.want(body)
                return
            self._parse(kind, bytearray())
        self._state = "header"
        cursor.skip(body)
        cursor.want(8)

    def _parse(self, kind: bytes, body: bytearray) -> None:
        if kind == b"moov":
            self._parse_moov(body)
        elif kind == b"moof":
            samples: list[Sample] = []
            data_end = self._box_start
            for found, a, b in _children(body, 0, len(body)):
                if found == b"traf":
                    data_end = self._parse_traf(body, a, b, data_end, samples)
            samples.sort(key=lambda s: s.end_offset)  # stable: keeps each track's order
            self._pending.extend(samples)

    def _parse_moov(self, body: bytearray) -> None:
        if self.tracks is not None:
            raise _BoxError("a second movie header (moov)")
        for kind, a, b in _children(body, 0, len(body)):
            if kind == b"trak":
                self._parse_trak(body, a, b)
            elif kind == b"mvex":
                for found, c, _ in _children(body, a, b):
                    track = self._tracks.get(_u32(body, c + 4)) if found == b"trex" else None
                    if track is not None:
                        track.duration, track.size = _u32(body, c + 12), _u32(body, c + 16)
                        track.flags = _u32(body, c + 20)
        self.tracks = [t.info for t in self._tracks.values()]

    def _parse_trak(self, body: bytearray, start: int, end: int) -> None:
        tkhd, mdia = _child(body, start, end, b"tkhd"), _child(body, start, end, b"mdia")
        if tkhd is None or mdia is None:
            raise _BoxError("track (trak) without tkhd or mdia")
        mdhd, hdlr = _child(body, *mdia, b"mdhd"), _child(body, *mdia, b"hdlr")
        if mdhd is None or hdlr is None:
            raise _BoxError("track media (mdia) without mdhd or hdlr")
        kind = _HANDLERS.get(bytes(body[hdlr[0] + 8 : hdlr[0] + 12]))
        if kind is None:
            return  # subtitles, timed metadata...: not analysed
        wide = body[tkhd[0]] == 1
        track_id = _u32(body, tkhd[0] + (20 if wide else 12))
        timescale = _u32(body, mdhd[0] + (20 if body[mdhd[0]] == 1 else 12))
        if timescale == 0:
            raise _BoxError(f"track {track_id} has timescale 0")
        width = _u32(body, tkhd[1] - 8) >> 16 if kind == "video" else 0
        height = _u32(body, tkhd[1] - 4) >> 16 if kind == "video" else 0
        self._tracks[track_id] = _Track(TrackInfo(kind, 1, timescale, width, height))

    def _parse_traf(
        self, body: bytearray, start: int, end: int, data_end: int, out: list[Sample]
    ) -> int:
        """Add the fragment's samples of one track; returns where its sample data ends."""
        tfhd = _child(body, start, end, b"tfhd")
        if tfhd is None:
            raise _BoxError("track fragment (traf) without tfhd")
        at, flags = tfhd[0], _u32(body, tfhd[0]) & 0xFFFFFF
        track = self._tracks.get(_u32(body, at + 4))
        if track is None:
            return data_end  # a track that is not analysed (or not declared: ignored too)
        at += 8
        base = self._box_start if flags & 0x020000 else data_end
        if flags & 0x01:
            base, at = _u64(body, at), at + 8
        at += 4 if flags & 0x02 else 0
        duration, size, sample_flags = track.duration, track.size, track.flags
        if flags & 0x08:
            duration, at = _u32(body, at), at + 4
        if flags & 0x10:
            size, at = _u32(body, at), at + 4
        if flags & 0x20:
            sample_flags = _u32(body, at)
        tfdt = _child(body, start, end, b"tfdt")
        if tfdt is not None:
            wide = body[tfdt[0]] == 1
            track.next_dts = _u64(body, tfdt[0] + 4) if wide else _u32(body, tfdt[0] + 4)
        for kind, a, b in _children(body, start, end):
            if kind == b"trun":
                defaults = (duration, size, sample_flags)
                data_end = self._parse_trun(
                    body, (a, b), track, base=base, defaults=defaults, out=out
                )
        return data_end

    def _parse_trun(
        self,
        body: bytearray,
        span: tuple[int, int],
        track: _Track,
        *,
        base: int,
        defaults: tuple[int, int, int],
        out: list[Sample],
    ) -> int:
        """Add the samples of one ``trun`` at ``body[span]``; returns where their data ends."""
        start, end = span
        version, flags = body[start], _u32(body, start) & 0xFFFFFF
        count, at = _u32(body, start + 4), start + 8
        offset = base
        if flags & 0x01:
            offset, at = base + struct.unpack_from(">i", body, at)[0], at + 4
        first_flags = None
        if flags & 0x04:
            first_flags, at = _u32(body, at), at + 4
        fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
        if at + 4 * len(fields) * count > end:
            raise _BoxError(f"trun lists {count} samples but its box is {end - start} bytes")
        info, dts = track.info, track.next_dts
        for i in range(count):
            duration, size, sample_flags = defaults
            if first_flags is not None and i == 0:
                sample_flags = first_flags
            cts = 0
            for bit in fields:
                value = _u32(body, at)
                at += 4
                if bit == 0x100:
                    duration = value
                elif bit == 0x200:
                    size = value
                elif bit == 0x400:
                    sample_flags = value
                else:
                    cts = value - (1 << 32) if version and value >> 31 else value
            offset += size
            keyframe = not sample_flags & _NON_SYNC
            out.append(Sample(info, dts + cts, dts, duration, size, keyframe, offset))
            dts += duration
        track.next_dts = dts
        return offset
