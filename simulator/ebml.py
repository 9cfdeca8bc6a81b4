"""Incremental WebM (EBML) reader: samples from element headers and block headers alone.

Elements are read as they arrive and never need their end: ``Segment`` and ``Cluster``
(also with unknown size, as live muxers write them) are entered, small elements the
reader needs (``Info``: ``TimecodeScale``; ``Tracks``: track number, type, default
duration, codec delay, pixel size; a cluster's ``Timecode``; a ``BlockGroup``) are
collected and parsed, and a ``SimpleBlock`` is read up to its 4-5 byte block header (track
number, relative timecode, keyframe flag) with its payload skipped, never copied. A
sample's time is cluster timecode + block timecode - the track's codec delay, as FFmpeg's
demuxer reports it; its duration is the ``BlockDuration`` or the track's default. A laced
block (several frames in one block) is one sample of their total duration.
"""

from __future__ import annotations

from dataclasses import dataclass

from chunks.ebml import CLUSTER_ID as _CLUSTER
from chunks.ebml import EBML_ID as _EBML
from chunks.ebml import SEGMENT_ID as _SEGMENT
from chunks.ebml import UNKNOWN_SIZE as _UNKNOWN
from chunks.ebml import read_vint
from chunks.exceptions import MalformedBoxError
from simulator.box_reader import HeaderError, IncrementalReader, Sample, TrackInfo

__all__ = ["WebmReader"]

_INFO, _TRACKS = 0x1549A966, 0x1654AE6B
_TIMECODE, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0xE7, 0xA3, 0xA0, 0xA1
_BLOCK_DURATION, _REFERENCE_BLOCK, _TIMECODE_SCALE = 0x9B, 0xFB, 0x2AD7B1
_TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE, _DEFAULT_DURATION = 0xAE, 0xD7, 0x83, 0x23E383
_CODEC_DELAY, _VIDEO, _PIXEL_WIDTH, _PIXEL_HEIGHT = 0x56AA, 0xE0, 0xB0, 0xBA
_CODEC_ID = 0x86
_OPUS_FRAME_US = (10_000, 20_000, 40_000, 60_000, 10_000, 20_000, 2_500, 5_000, 10_000, 20_000)
"""Opus frame length per TOC configuration group (RFC 6716 3.1): SILK, hybrid, CELT."""
_COLLECT = {_EBML, _INFO, _TRACKS, _TIMECODE, _BLOCK_GROUP}
_MAX_COLLECT = 16 * 1024 * 1024
_BLOCK_HEAD = 12
"""Bytes of a SimpleBlock read: track number (<= 8), timecode (2), flags (1), lace count."""
_KINDS = {1: "video", 2: "audio"}


class _EbmlError(HeaderError):
    """An element does not parse; becomes ``ih5004`` with the segment being read."""


@dataclass
class _Track:
    info: TrackInfo
    default_ns: int = 0
    opus: bool = False


def _opus_duration_us(payload: bytearray, start: int, stop: int) -> int:
    """Length of an Opus packet from its TOC byte(s), in microseconds (0 if unreadable)."""
    if start >= stop:
        return 0
    toc = payload[start]
    config = toc >> 3
    group = config // 4 if config < 12 else (4 + (config - 12) % 2 if config < 16 else 6)
    frame_us = _OPUS_FRAME_US[group if config >= 12 else config % 4]
    if config >= 16:
        frame_us = _OPUS_FRAME_US[6 + config % 4]
    code = toc & 3
    if code == 0:
        return frame_us
    if code in (1, 2):
        return 2 * frame_us
    return frame_us * (payload[start + 1] & 0x3F) if start + 1 < stop else 0


def _vint(buf: bytes | bytearray, at: int, *, marker: bool) -> tuple[int, int]:
    """(value, length) of the variable-length integer at ``at`` (``marker``: keep it: IDs);
    :func:`chunks.ebml.read_vint`, its error as this reader's."""
    try:
        return read_vint(buf, at, marker=marker)
    except MalformedBoxError as exc:
        raise _EbmlError(str(exc)) from None


def _elements(buf: bytearray, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, payload start, payload end) of the elements in ``buf[start:end]``."""
    out = []
    while start < end:
        ident, a = _vint(buf, start, marker=True)
        size, b = _vint(buf, start + a, marker=False)
        begin = start + a + b
        if size == _UNKNOWN or begin + size > end:
            raise _EbmlError(f"element {ident:#x} overruns its parent")
        out.append((ident, begin, begin + size))
        start = begin + size
    return out


def _uint(buf: bytearray, start: int, end: int) -> int:
    return int.from_bytes(buf[start:end], "big")


class WebmReader(IncrementalReader):
    """Feed WebM bytes; get back the samples whose bytes have arrived."""

    container = "WebM"

    def __init__(self) -> None:
        super().__init__(1)
        self._state = "id"
        self._id = 0
        self._size = 0
        self._scale_ns = 1_000_000
        self._by_number: dict[int, _Track] = {}
        self._cluster_tc: int | None = None
        self._seen_header = False

    def _advance(self) -> None:
        cursor, buf = self._cursor, self._cursor.buffer
        state = self._state
        if state == "id":
            length = 9 - buf[0].bit_length() if buf[0] else 9
            if length > 4:
                raise _EbmlError(f"invalid element id byte {buf[0]:#04x}")
            self._id = buf[0]
            self._state = "id+" if length > 1 else "size"
            cursor.want(length - 1 if length > 1 else 1)
        elif state == "id+":
            self._id = (self._id << (8 * len(buf))) | int.from_bytes(buf, "big")
            self._state = "size"
            cursor.want(1)
        elif state == "size":
            if buf[0] == 0:
                raise _EbmlError(f"invalid size of element {self._id:#x}")
            length = 9 - buf[0].bit_length()
            self._size = buf[0]
            if length > 1:
                self._state = "size+"
                cursor.want(length - 1)
            else:
                self._open(bytearray(buf))
        elif state == "size+":
            self._open(bytearray([self._size]) + buf)
        else:
            self._collected(bytearray(buf))

    def _open(self, raw: bytearray) -> None:
        size, _ = _vint(raw, 0, marker=False)
        ident, cursor = self._id, self._cursor
        if not self._seen_header and ident != _EBML:
            raise _EbmlError(f"stream does not start with an EBML header (element {ident:#x})")
        self._seen_header = True
        if ident in (_SEGMENT, _CLUSTER):  # entered: their children follow
            if ident == _CLUSTER:
                if self.tracks is None:
                    raise _EbmlError("cluster before the track list (Tracks)")
                self._cluster_tc = None
            self._next()
            return
        if size == _UNKNOWN:
            raise _EbmlError(f"element {ident:#x} without a size")
        self._size = size
        if ident == _SIMPLE_BLOCK or (ident in _COLLECT and size):
            if ident != _SIMPLE_BLOCK and size > _MAX_COLLECT:
                raise _EbmlError(f"element {ident:#x} of {size} bytes is too large")
            self._state = "body"
            cursor.want(min(size, _BLOCK_HEAD) if ident == _SIMPLE_BLOCK else size)
            return
        cursor.skip(size)
        self._next()

    def _next(self) -> None:
        self._state = "id"
        self._cursor.want(1)

    def _collected(self, buf: bytearray) -> None:
        ident = self._id
        if ident == _SIMPLE_BLOCK:
            end = self._cursor.offset + self._size - len(buf)
            self._block(buf, (0, len(buf)), self._size, end=end, duration=None, simple=True)
            self._cursor.skip(self._size - len(buf))
        elif ident == _BLOCK_GROUP:
            self._block_group(buf)
        elif ident == _TIMECODE:
            self._cluster_tc = _uint(buf, 0, len(buf))
        elif ident == _INFO:
            for found, a, b in _elements(buf, 0, len(buf)):
                if found == _TIMECODE_SCALE:
                    self._scale_ns = _uint(buf, a, b) or 1_000_000
        elif ident == _TRACKS:
            self._tracks(buf)
        self._next()

    def _tracks(self, buf: bytearray) -> None:
        if self.tracks is not None:
            raise _EbmlError("a second track list (Tracks)")
        scale = self._scale_ns
        for found, a, b in _elements(buf, 0, len(buf)):
            if found != _TRACK_ENTRY:
                continue
            fields = {i: (x, y) for i, x, y in _elements(buf, a, b)}
            number = _uint(buf, *fields.get(_TRACK_NUMBER, (a, a)))
            kind = _KINDS.get(_uint(buf, *fields.get(_TRACK_TYPE, (a, a))))
            if kind is None:
                continue
            width = height = 0
            if _VIDEO in fields:
                video = {i: (x, y) for i, x, y in _elements(buf, *fields[_VIDEO])}
                width = _uint(buf, *video.get(_PIXEL_WIDTH, (a, a)))
                height = _uint(buf, *video.get(_PIXEL_HEIGHT, (a, a)))
            delay_ns = _uint(buf, *fields.get(_CODEC_DELAY, (a, a)))
            delay = (2 * delay_ns + scale) // (2 * scale)  # nearest tick, halves up
            info = TrackInfo(kind, scale, 1_000_000_000, width, height, delay)
            default_ns = _uint(buf, *fields.get(_DEFAULT_DURATION, (a, a)))
            opus = bytes(buf[slice(*fields.get(_CODEC_ID, (a, a)))]) == b"A_OPUS"
            self._by_number[number] = _Track(info, default_ns, opus)
        self.tracks = [t.info for t in self._by_number.values()]

    def _block_group(self, buf: bytearray) -> None:
        block, duration, keyframe = None, None, True
        for found, a, b in _elements(buf, 0, len(buf)):
            if found == _BLOCK:
                block = (a, b)
            elif found == _BLOCK_DURATION:
                duration = _uint(buf, a, b)
            elif found == _REFERENCE_BLOCK:
                keyframe = False
        if block is None:
            raise _EbmlError("block group without a block")
        end = self._cursor.offset
        size = block[1] - block[0]
        self._block(buf, block, size, end=end, duration=duration, keyframe=keyframe)

    def _block(
        self,
        buf: bytearray,
        span: tuple[int, int],
        size: int,
        *,
        end: int,
        duration: int | None,
        simple: bool = False,
        keyframe: bool = False,
    ) -> None:
        """Queue the sample of the block header at ``buf[span]`` (``size``: block bytes)."""
        start, stop = span
        number, length = _vint(buf, start, marker=False)
        at = start + length
        if at + 3 > stop:
            raise _EbmlError("block shorter than its header")
        if self._cluster_tc is None:
            raise _EbmlError("block before its cluster's timecode")
        track = self._by_number.get(number)
        if track is None:
            return  # a track that is not analysed
        relative = int.from_bytes(buf[at : at + 2], "big", signed=True)
        flags, header = buf[at + 2], length + 3
        laces = 1
        if flags & 0x06:
            if at + 3 >= stop:
                raise _EbmlError("laced block without a lace count")
            laces = buf[at + 3] + 1
        info = track.info
        if duration is None:
            duration = track.default_ns * laces // self._scale_ns
            if not duration and track.opus and laces == 1:  # FFmpeg parses the TOC
                micros = _opus_duration_us(buf, at + 3, stop)
                duration = (2000 * micros + self._scale_ns) // (2 * self._scale_ns)
        pts = self._cluster_tc + relative - info.delay_ticks
        is_key = bool(flags & 0x80) if simple else keyframe
        self._pending.append(Sample(info, pts, pts, duration, size - header, is_key, end))
