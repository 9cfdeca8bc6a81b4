"""Fragmented-MP4 muxing of one chunk (box walking and part splitting: :mod:`chunks.boxes`).

Each chunk is a self-contained fMP4 (``ftyp`` + ``moov`` init header, then
``moof``/``mdat`` fragments cut at video keyframes). ``frag_discont`` + ``delay_moov`` make
the fragments carry the packets' own decode times, so media time stays continuous from
the session's start across chunks.

Two ways to write one: :func:`mux_chunk` opens FFmpeg's mov muxer (through PyAV) for the
chunk, and :class:`FragmentWriter` writes the same bytes without it, from the init
header FFmpeg wrote for the session's first chunk. A muxer per chunk costs a setup and
a trailer, and FFmpeg's muxing costs a call, a packet reference and a trip through the
interleaving queue per packet; PyAV offers neither a fragment flush on a long-lived
muxer nor a batched mux, so on stream copy the writer lays the fragments out itself
(per chunk: a few ``struct`` packs and one ``join`` of the packet buffers). It follows
FFmpeg's layout rules (``libavformat/movenc.c``: fragments at video keyframes, ``tfhd``
defaults from the first samples, ``trun`` fields only where a sample differs, the
``mfra`` index at the end), and :mod:`producers.chunker` checks it against
:func:`mux_chunk` on each session's first chunks (falling back to FFmpeg on any
difference).
"""

from __future__ import annotations

import io
import itertools
import math
import operator
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from chunks.boxes import top_level_boxes

__all__ = [
    "MOVFLAGS",
    "FragmentWriter",
    "Sample",
    "TrackLayout",
    "mux_chunk",
    "mux_chunk_layout",
    "sample",
]

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_discont+delay_moov"

# Sample flags (ISO/IEC 14496-12 8.8.3.1) as FFmpeg writes them.
_SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame / audio frame)
_NON_SYNC = 0x01010000  # depends on others, non-sync sample
# tfhd: default-base-is-moof + default sample duration, size and flags.
_TFHD_FLAGS = 0x020038
_TRUN_DATA_OFFSET = 0x001
_TRUN_FIRST_FLAGS = 0x004
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRUN_FLAGS = 0x400
_TRUN_CTS = 0x800

Sample = tuple[int, "av.Packet[Any]", int, int, int | None, int, bool]
"""One packet of a chunk with the fields the fragment writer lays out:
``(template index, packet, dts, pts, duration, size, is_keyframe)``. The reader fills
them in the pass that reads them anyway, so the writer reads no packet attribute."""

_FIELDS = operator.attrgetter("dts", "pts", "duration", "size", "is_keyframe")


def sample(index: int, packet: av.Packet[Any]) -> Sample:
    """A :data:`Sample` of ``packet`` (which must have its decode time set)."""
    dts, pts, duration, size, keyframe = _FIELDS(packet)
    assert dts is not None
    assert pts is not None
    return (index, packet, dts, pts, duration, size, keyframe)


def mux_chunk(
    templates: Sequence[av.stream.Stream],
    packets: Sequence[Sample],
    *,
    frag_size_bytes: int | None = None,
) -> bytes:
    """Mux ``packets`` (:data:`Sample` s: template index, packet, ...) into one fMP4 byte string.

    ``frag_size_bytes`` additionally cuts fragments before they exceed that many bytes
    (used to split an oversize GOP into record-sized pieces).
    """
    return mux_chunk_layout(templates, packets, frag_size_bytes=frag_size_bytes)[0]


def mux_chunk_layout(
    templates: Sequence[av.stream.Stream],
    packets: Sequence[Sample],
    *,
    frag_size_bytes: int | None = None,
) -> tuple[bytes, list[int]]:
    """:func:`mux_chunk`, and the timescale FFmpeg chose for each track."""
    buffer = io.BytesIO()
    options = {"movflags": MOVFLAGS, "strict": "experimental"}
    if frag_size_bytes is not None:
        options["frag_size"] = str(frag_size_bytes)
    with av.open(buffer, "w", format="mp4", options=options) as out:
        streams = [out.add_stream_from_template(t, opaque=True) for t in templates]
        for item in packets:  # FFmpeg rescales each packet's times to its output stream
            packet = item[1]
            packet.stream = streams[item[0]]
            out.mux_one(packet)
        timescales = [s.time_base.denominator if s.time_base else 0 for s in streams]
    return buffer.getvalue(), timescales


@dataclass(frozen=True)
class Prepared:
    """A chunk's samples, read and ready to lay out (see :meth:`FragmentWriter.prepare`)."""

    key: tuple[int | None, ...]
    samples: list[_Samples | None]


@dataclass(frozen=True)
class TrackLayout:
    """One output track: its id (1-based, template order), timescale, and kind."""

    track_id: int
    timescale: int
    video: bool


def init_header(payload: bytes) -> bytes:
    """The bytes of a muxed chunk before its first fragment (``ftyp`` + ``moov``)."""
    for kind, offset, _ in top_level_boxes(payload):
        if kind == b"moof":
            return payload[:offset]
    return payload


_FLAG_OF = (_NON_SYNC, _SYNC)  # by is_keyframe
_TRACK = operator.itemgetter(0)


class _Samples:
    """One track's samples in one chunk, in the track's timescale."""

    __slots__ = ("cts", "dts", "durations", "keys", "packets", "pts", "sizes")

    def __init__(self, samples: list[Sample], scale: Fraction | None) -> None:
        # Columns of the samples' fields: no packet attribute is read here.
        _, packets, dts, pts, durations, sizes, keys = map(list, zip(*samples, strict=True))
        self.packets: list[av.Packet[Any]] = packets
        if None in durations:
            durations = [d or 0 for d in durations]
        if scale is not None:  # FFmpeg's av_rescale_q: to nearest, halves away from zero
            dts = [_rescale(v, scale) for v in dts]
            pts = [_rescale(v, scale) for v in pts]
            durations = [_rescale(v, scale) for v in durations]
        self.dts: list[int] = dts
        self.pts: list[int] = pts
        self.durations: list[int] = durations
        self.cts: list[int] = list(map(operator.sub, pts, dts))
        self.sizes: list[int] = sizes
        self.keys: list[bool] = keys


def _rescale(value: int, scale: Fraction) -> int:
    product = value * scale.numerator
    den = scale.denominator
    if product >= 0:
        return (2 * product + den) // (2 * den)
    return -((-2 * product + den) // (2 * den))


class FragmentWriter:
    """Writes a chunk's fMP4 bytes as FFmpeg's mov muxer (:func:`mux_chunk`) does.

    ``tracks`` lists the output tracks in template order (the video first). The init
    headers come from FFmpeg (:meth:`learn`): one per first-composition-offset layout, in
    practice one per session.
    """

    def __init__(self, tracks: Sequence[TrackLayout]) -> None:
        if not tracks or not tracks[0].video or any(t.video for t in tracks[1:]):
            raise ValueError("FragmentWriter needs the video track first and only one")
        self._tracks = tuple(tracks)
        self._inits: dict[tuple[int | None, ...], bytes] = {}
        self._scales: list[tuple[Fraction | None, Fraction | None]] = [
            (None, None) for _ in tracks
        ]  # (packet time base, its scale to the track timescale)
        # Comparing decode times across tracks exactly: ticks of a common timescale.
        common = 1
        for track in tracks:
            common = common * track.timescale // math.gcd(common, track.timescale)
        self._to_common = [common // t.timescale for t in tracks]

    def prepare(
        self, packets: Sequence[Sample], time_bases: Sequence[Fraction | None] | None = None
    ) -> Prepared:
        """Group a chunk's samples by track. ``time_bases`` are the samples' time bases per
        track (default: their packets' own, which FFmpeg changes when it muxes them)."""
        if len(self._tracks) == 2:  # video + audio: split in C, no loop over the packets
            tracks = list(map(_TRACK, packets))
            per_track = [
                list(itertools.compress(packets, map(operator.not_, tracks))),
                list(itertools.compress(packets, tracks)),
            ]
        else:
            per_track = [[] for _ in self._tracks]
            for item in packets:
                per_track[item[0]].append(item)
        samples = [
            _Samples(group, self._scale(index, group, time_bases)) if group else None
            for index, group in enumerate(per_track)
        ]
        if samples[0] is None:
            raise ValueError("a chunk without video packets")
        # FFmpeg's moov depends on the chunk only through each track's first composition
        # offset (its edit list): chunks alike in that share one init header.
        key = tuple(track.cts[0] if track is not None else None for track in samples)
        return Prepared(key, samples)

    def learn(self, prepared: Prepared, init: bytes) -> None:
        """Use ``init`` (FFmpeg's init header for that chunk) for chunks that start alike."""
        self._inits[prepared.key] = init

    def write(self, packets: Sequence[Sample]) -> bytes | None:
        """The chunk's bytes (init header, fragments, ``mfra`` index), or None when no init
        header for a chunk starting like this one was learnt yet (see :meth:`learn`)."""
        return self.finish(self.prepare(packets))

    def finish(self, prepared: Prepared) -> bytes | None:
        """:meth:`write` for a prepared chunk."""
        init = self._inits.get(prepared.key)
        if init is None:
            return None
        samples = prepared.samples
        video = samples[0]
        assert video is not None
        # FFmpeg's interleaving writes packets in decode-time order (video first on a tie)
        # and cuts a fragment before each video keyframe after the first video sample.
        cuts = list(itertools.compress(range(1, len(video.keys)), video.keys[1:]))
        bounds = [[0, *cuts, len(video.keys)]]
        cut_times = [video.dts[i] * self._to_common[0] for i in cuts]
        for index in range(1, len(samples)):
            track = samples[index]
            if track is None:
                bounds.append([])
                continue
            scale = self._to_common[index]
            edges = [0]
            position = 0
            times = track.dts
            for cut in cut_times:
                while position < len(times) and times[position] * scale < cut:
                    position += 1
                edges.append(position)
            edges.append(len(times))
            bounds.append(edges)
        return self._layout(init, samples, bounds, len(cuts) + 1)

    def _scale(
        self, index: int, group: list[Sample], time_bases: Sequence[Fraction | None] | None
    ) -> Fraction | None:
        time_base = group[0][1].time_base if time_bases is None else time_bases[index]
        cached, scale = self._scales[index]
        if cached != time_base:
            assert time_base is not None
            ratio = time_base * self._tracks[index].timescale
            scale = None if ratio == 1 else ratio
            self._scales[index] = (time_base, scale)
        return scale

    def _layout(
        self,
        init: bytes,
        samples: list[_Samples | None],
        bounds: list[list[int]],
        fragments: int,
    ) -> bytes:
        out = [init]
        position = len(init)
        count = len(samples)
        begin: list[int | None] = [None] * count  # next tfdt per track
        start_dts = [0] * count  # FFmpeg's start_dts: first dts - first pts (edit list)
        ctts = [False] * count  # a composition offset seen: every later trun carries them
        tfra: list[list[tuple[int, int]]] = [[] for _ in samples]
        for number in range(fragments):
            trafs: list[tuple[int, _Samples, int, int, int, list[int]]] = []
            data: list[Any] = []
            data_size = 0
            for index, track in enumerate(samples):
                if track is None:
                    continue
                first, last = bounds[index][number], bounds[index][number + 1]
                if first == last:
                    continue
                dts = track.dts
                tfdt = begin[index]
                if tfdt is None:  # the track's first fragment: tfdt is its first pts
                    tfdt = track.pts[first]
                    start_dts[index] = dts[first] - tfdt
                    head = dts[first]
                else:  # continues where the previous fragment's durations ended
                    head = dts[first - 1] + track.durations[first - 1]
                end = dts[last - 1] + track.durations[last - 1]
                durations = list(map(operator.sub, dts[first + 1 : last], dts[first : last - 1]))
                durations.append(end - dts[last - 1])
                durations[0] = (dts[first + 1] if last - first > 1 else end) - head
                begin[index] = tfdt + end - head
                if not ctts[index]:
                    ctts[index] = any(track.cts[first:last])
                trafs.append((index, track, first, last, tfdt, durations))
                tfra[index].append((max(0, start_dts[index] + tfdt + track.cts[first]), position))
                data += track.packets[first:last]
                data_size += sum(track.sizes[first:last])
            moof = self._moof(number + 1, trafs, ctts)
            out.append(moof)
            out.append(struct.pack(">I4s", data_size + 8, b"mdat"))
            out += data  # the packets' buffers: joined once, at the end
            position += len(moof) + 8 + data_size
        out.append(self._mfra(tfra))
        return b"".join(out)

    def _moof(
        self,
        sequence: int,
        trafs: list[tuple[int, _Samples, int, int, int, list[int]]],
        ctts: list[bool],
    ) -> bytes:
        bodies: list[tuple[bytes, bytes, int]] = []  # traf up to the data offset, rest
        data_offset = 0
        for index, track, first, last, tfdt, durations in trafs:
            video = self._tracks[index].video
            sizes = track.sizes[first:last]
            flags = list(map(_FLAG_OF.__getitem__, track.keys[first:last]))
            count = last - first
            # FFmpeg takes the default flags from the second sample (the first is a keyframe).
            default_flags = flags[1] if count > 1 else (_NON_SYNC if video else _SYNC)
            default_duration, default_size = durations[0], sizes[0]
            trun_flags = _TRUN_DATA_OFFSET
            columns: list[list[int]] = []
            if durations.count(default_duration) != count:
                trun_flags |= _TRUN_DURATION
                columns.append(durations)
            if sizes.count(default_size) != count:
                trun_flags |= _TRUN_SIZE
                columns.append(sizes)
            first_flags: list[int] = []
            if flags[1:].count(default_flags) != count - 1:
                trun_flags |= _TRUN_FLAGS
                columns.append(flags)
            elif flags[0] != default_flags:
                trun_flags |= _TRUN_FIRST_FLAGS
                first_flags = [flags[0]]
            if ctts[index]:
                trun_flags |= _TRUN_CTS
                columns.append([c & 0xFFFFFFFF for c in track.cts[first:last]])
            if len(columns) == 1:
                entries = columns[0]
            else:
                entries = list(itertools.chain.from_iterable(zip(*columns, strict=True)))
            trun_size = 20 + 4 * (len(first_flags) + len(entries))
            before = struct.pack(
                ">I4s" + "I4sIIIII" + "I4sIq" + "I4sII",
                8 + 28 + 20 + trun_size,
                b"traf",
                28,
                b"tfhd",
                _TFHD_FLAGS,
                self._tracks[index].track_id,
                default_duration,
                default_size,
                default_flags,
                20,
                b"tfdt",
                0x01000000,
                tfdt,
                trun_size,
                b"trun",
                trun_flags,
                count,
            )
            after = struct.pack(f">{len(first_flags) + len(entries)}I", *first_flags, *entries)
            bodies.append((before, after, data_offset))
            data_offset += sum(sizes)
        moof_size = 8 + 16 + sum(len(b) + 4 + len(a) for b, a, _ in bodies)
        parts = [struct.pack(">I4sI4sII", moof_size, b"moof", 16, b"mfhd", 0, sequence)]
        for before, after, offset in bodies:
            parts += (before, struct.pack(">I", moof_size + 8 + offset), after)
        return b"".join(parts)

    def _mfra(self, tfra: list[list[tuple[int, int]]]) -> bytes:
        boxes = []
        for index, entries in enumerate(tfra):
            if not entries:
                continue
            body = b"".join(struct.pack(">qQBBB", t, o, 1, 1, 1) for t, o in entries)
            boxes.append(
                struct.pack(
                    ">I4sIIII",
                    24 + len(body),
                    b"tfra",
                    0x01000000,
                    self._tracks[index].track_id,
                    0,
                    len(entries),
                )
                + body
            )
        size = 8 + sum(len(b) for b in boxes) + 16
        return b"".join(
            [
                struct.pack(">I4s", size, b"mfra"),
                *boxes,
                struct.pack(">I4sII", 16, b"mfro", 0, size),
            ]
        )
