"""Reading and chunking real generated media: counts, sequence, coverage, self-contained chunks."""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import pytest
from structlog.testing import capture_logs

from producers.chunker import Chunk, Chunker
from producers.probe import MediaInfo
from producers.reader import MediaPacket, MediaReader, PacketRun, ReaderOptions
from producers.sources import parse_source
from producers.synthetic import MediaSpec, write_media

MediaFactory = Callable[[str], Path]


def chunk_file(
    path: Path, *, max_part_bytes: int = 8 << 20, writer: bool = True, **options: object
) -> tuple[MediaInfo, list[Chunk]]:
    return chunk_with(path, max_part_bytes=max_part_bytes, writer=writer, **options)[:2]  # type: ignore[return-value]


def chunk_with(
    path: Path, *, max_part_bytes: int = 8 << 20, writer: bool = True, **options: object
) -> tuple[MediaInfo, list[Chunk], Chunker]:
    reader = MediaReader(parse_source(str(path)), ReaderOptions(**options), threading.Event())  # type: ignore[arg-type]
    info = reader.open()
    try:
        templates = [t for t in (reader.video_template, reader.audio_template) if t is not None]
        chunker = Chunker(
            templates,
            target_duration_s=2.0,
            max_part_bytes=max_part_bytes,
            fragment_writer=writer,
        )
        return info, list(chunker.chunks(reader.packets())), chunker
    finally:
        reader.close()


@dataclass
class Decoded:
    video_times: list[float]
    audio_samples: int
    audio_rate: int


def decode(data: bytes) -> Decoded:
    """Decode fMP4 bytes alone with PyAV (as a fresh Inter-1 session would receive them)."""
    with av.open(io.BytesIO(data)) as container:
        times = [float(f.time) for f in container.decode(video=0) if f.time is not None]
    samples, rate = 0, 0
    with av.open(io.BytesIO(data)) as container:
        if container.streams.audio:
            rate = container.streams.audio[0].codec_context.sample_rate
            samples = sum(f.samples for f in container.decode(audio=0))
    return Decoded(times, samples, rate)


def source_video_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return sorted(float(f.time) for f in container.decode(video=0) if f.time is not None)


def assert_tiled(chunks: list[Chunk], total_s: float, frame_s: float) -> None:
    """Sequence 0..n-1, ranges back to back from 0, durations summing to the media duration."""
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[0].media_start_s == 0.0
    for before, after in itertools.pairwise(chunks):
        assert after.media_start_s == pytest.approx(
            before.media_start_s + before.media_duration_s, abs=1e-9
        )
    assert sum(c.media_duration_s for c in chunks) == pytest.approx(total_s, abs=frame_s)


# name, expected (start, duration) per chunk, mime type, transcoded, audio transcoded
CASES = [
    (
        "h264_aac.mp4",
        [(0.0, 2.0), (2.0, 2.0)],
        'video/mp4; codecs="avc1.42c00b,mp4a.40.2"',
        False,
        False,
    ),
    (
        "h264_aac_gop12.mov",
        [(0.0, 2.4), (2.4, 1.6)],
        'video/mp4; codecs="avc1.42c00b,mp4a.40.2"',
        False,
        False,
    ),
    (
        "h264_opus.mkv",
        [(0.0, 2.0), (2.0, 2.0)],
        'video/mp4; codecs="avc1.42c00b,opus"',
        False,
        False,
    ),
    (
        "vp8_opus.webm",
        [(0.0, 2.0), (2.0, 2.0)],
        'video/mp4; codecs="avc1.64000b,opus"',
        True,
        False,
    ),
    (
        "vp9_opus.webm",
        [(0.0, 2.0), (2.0, 1.0)],
        'video/mp4; codecs="avc1.64000b,opus"',
        True,
        False,
    ),
    (
        "h264_aac.ts",
        [(0.0, 2.0), (2.0, 2.0)],
        'video/mp4; codecs="avc1.42c00b,mp4a.40.2"',
        False,
        True,
    ),
    (
        "h264_pcm.mov",
        [(0.0, 2.0), (2.0, 2.0)],
        'video/mp4; codecs="avc1.42c00b,mp4a.40.2"',
        False,
        True,
    ),
    (
        "h264_bframes.mp4",
        [(0.0, 2.0), (2.0, 2.0)],
        'video/mp4; codecs="avc1.64000b,mp4a.40.2"',
        False,
        False,
    ),
    ("h264_silent.mp4", [(0.0, 2.0), (2.0, 1.0)], 'video/mp4; codecs="avc1.42c00b"', False, False),
    ("hevc_aac.mp4", [(0.0, 2.0), (2.0, 2.0)], 'video/mp4; codecs="hvc1,mp4a.40.2"', False, False),
    ("av1_opus.mkv", [(0.0, 2.0), (2.0, 2.0)], 'video/mp4; codecs="av01,opus"', False, False),
]


@pytest.mark.parametrize(("name", "expected", "mime", "transcoded", "audio_transcoded"), CASES)
def test_chunks_tile_media_and_decode_alone(  # noqa: PLR0917 - parametrized test arguments
    media: MediaFactory,
    name: str,
    expected: list[tuple[float, float]],
    mime: str,
    transcoded: bool,
    audio_transcoded: bool,
) -> None:
    path = media(name)
    info, chunks = chunk_file(path)

    assert (info.mime_type, info.transcoded, info.audio_transcoded) == (
        mime,
        transcoded,
        audio_transcoded,
    )
    assert (info.width, info.height, info.frame_rate) == (160, 120, 25.0)
    assert [(round(c.media_start_s, 6), round(c.media_duration_s, 6)) for c in chunks] == expected
    source_times = source_video_times(path)
    frame_s = 1 / 25
    assert_tiled(chunks, source_times[-1] - source_times[0] + frame_s, frame_s)
    total_frames = 0
    for chunk in chunks:
        assert len(chunk.parts) == 1
        assert chunk.keyframe_start
        assert chunk.parts[0][4:8] == b"ftyp"
        decoded = decode(chunk.parts[0])
        # Timestamps continue from the session start; every frame of the range is there.
        assert decoded.video_times[0] == pytest.approx(chunk.media_start_s, abs=1e-3)
        assert len(decoded.video_times) == round(chunk.media_duration_s / frame_s)
        total_frames += len(decoded.video_times)
        if name != "h264_silent.mp4":
            # Audio of the chunk's range travels with it (give or take AAC priming).
            audio_s = decoded.audio_samples / decoded.audio_rate
            assert audio_s == pytest.approx(chunk.media_duration_s, abs=0.1)
    assert total_frames == len(source_times)


# Where the fragment writer takes over from FFmpeg's muxer: stream copy of MP4-style
# bitstreams. Transcoded streams (vp8/vp9/mpeg4 -> H.264) and Annex B H.264 from
# MPEG-TS (FFmpeg rewrites those packets while muxing) stay with FFmpeg's muxer.
WRITER_OFF = {"vp8_opus.webm", "vp9_opus.webm", "h264_aac.ts", "mpeg4_mp3.avi"}


@pytest.mark.parametrize("name", [case[0] for case in CASES] + ["mpeg4_mp3.avi"])
def test_fragment_writer_writes_ffmpegs_bytes(media: MediaFactory, name: str) -> None:
    _, ours, chunker = chunk_with(media(name), loop=2)
    _, reference, plain = chunk_with(media(name), loop=2, writer=False)

    assert (chunker.writer_active, plain.writer_active) == (name not in WRITER_OFF, False)
    assert [c.parts for c in ours] == [c.parts for c in reference]


def test_fragment_writer_learns_each_init_header() -> None:
    # Chunk 3 of clip_gap (its stream skip) starts with another composition offset, so
    # FFmpeg writes another edit list there: the writer takes that init header from
    # FFmpeg for that chunk and its own for the others.
    clip = Path(__file__).parents[1] / "fixtures" / "media" / "clip_gap.mp4"
    _, ours, chunker = chunk_with(clip)
    _, reference, _ = chunk_with(clip, writer=False)

    assert chunker.writer_active
    inits = [c.parts[0][: c.parts[0].index(b"moof") - 4] for c in reference]
    assert [inits.index(init) for init in inits] == [0, 0, 0, 3, 0, 0]
    assert [c.parts for c in ours] == [c.parts for c in reference]


def test_stream_copy_keeps_every_audio_packet(media: MediaFactory) -> None:
    path = media("h264_aac.mp4")
    _, chunks = chunk_file(path)
    with av.open(str(path)) as container:
        source = [p.size for p in container.demux(audio=0) if p.size]
    published: list[int] = []
    for chunk in chunks:
        with av.open(io.BytesIO(chunk.parts[0])) as container:
            published += [p.size for p in container.demux(audio=0) if p.size]
    assert published == source


def test_loop_keeps_media_time_continuous(media: MediaFactory) -> None:
    info, chunks = chunk_file(media("h264_aac.mp4"), loop=3)

    assert info.duration_s == 12.0
    assert [(c.seq, c.media_start_s, c.media_duration_s) for c in chunks] == [
        (seq, seq * 2.0, 2.0) for seq in range(6)
    ]
    for chunk in chunks:
        decoded = decode(chunk.parts[0])
        assert decoded.video_times[0] == pytest.approx(chunk.media_start_s, abs=1e-3)
        assert len(decoded.video_times) == 50


def test_transcode_on_request(media: MediaFactory) -> None:
    info, chunks = chunk_file(media("h264_aac_gop12.mov"), transcode=True)

    assert (info.transcoded, info.audio_transcoded, info.video_codec, info.audio_codec) == (
        True,
        True,
        "h264",
        "aac",
    )
    # The encoder's GOP is the chunk duration, so chunks are exactly 2 s now.
    assert [(c.media_start_s, c.media_duration_s) for c in chunks] == [(0.0, 2.0), (2.0, 2.0)]
    assert [len(decode(c.parts[0]).video_times) for c in chunks] == [50, 50]


def test_transcode_of_mpeg4_avi(media: MediaFactory) -> None:
    path = media("mpeg4_mp3.avi")
    info, chunks = chunk_file(path)

    assert (info.video_codec, info.audio_codec, info.transcoded, info.audio_transcoded) == (
        "h264",
        "mp3",
        True,
        False,
    )
    source_times = source_video_times(path)
    assert_tiled(chunks, source_times[-1] - source_times[0] + 0.04, 0.04)
    assert sum(len(decode(c.parts[0]).video_times) for c in chunks) == len(source_times)


def test_long_gop_is_split_into_record_sized_parts(media: MediaFactory) -> None:
    limit = 64 * 1024
    _, chunks = chunk_file(media("h264_longgop.mp4"), max_part_bytes=limit)

    # GOP 4 s: one chunk per GOP, the second one shorter (6 s of media).
    assert [(c.seq, c.media_start_s, c.media_duration_s) for c in chunks] == [
        (0, 0.0, 4.0),
        (1, 4.0, 2.0),
    ]
    _, whole = chunk_file(media("h264_longgop.mp4"))
    assert [len(c.parts) for c in whole] == [1, 1]
    for chunk, unsplit in zip(chunks, whole, strict=True):
        assert len(chunk.parts) >= -(-unsplit.byte_size // limit) > 1
        assert all(len(part) <= limit for part in chunk.parts)
        assert chunk.parts[0][4:8] == b"ftyp"
        assert all(part[4:8] == b"moof" for part in chunk.parts[1:])
        # Part 0 alone starts a decodable stream; all parts together give the whole GOP.
        first = decode(chunk.parts[0]).video_times
        assert first[0] == pytest.approx(chunk.media_start_s, abs=1e-3)
        joined = decode(b"".join(chunk.parts)).video_times
        assert len(joined) == round(chunk.media_duration_s * 25)
        assert joined == decode(unsplit.parts[0]).video_times


def test_open_gop_source_is_reported(tmp_path: Path) -> None:
    path = write_media(
        tmp_path / "open_gop.mp4",
        MediaSpec(
            duration_s=4.0,
            gop=25,
            video_codec="libx265",
            video_options=(("x265-params", "keyint=25:min-keyint=25:scenecut=0:log-level=none"),),
        ),
    )
    with capture_logs() as logs:
        _, chunks = chunk_file(path)

    assert [(c.media_start_s, c.media_duration_s) for c in chunks] == [(0.0, 2.0), (2.0, 2.0)]
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["open_gop"]


def read_items(path: Path, **options: object) -> tuple[list[MediaPacket | PacketRun], Chunker]:
    """The reader's items for ``path`` (runs for a stream-copied file) and a chunker."""
    reader = MediaReader(parse_source(str(path)), ReaderOptions(**options), threading.Event())  # type: ignore[arg-type]
    reader.open()
    try:
        items = list(reader.packets())
        templates = [t for t in (reader.video_template, reader.audio_template) if t is not None]
    finally:
        reader.close()
    return items, Chunker(templates, target_duration_s=2.0, max_part_bytes=8 << 20)


def one_by_one(items: list[MediaPacket | PacketRun]) -> list[MediaPacket]:
    """The same packets as a live source hands them over: one :class:`MediaPacket` each."""
    out: list[MediaPacket] = []
    for item in items:
        if isinstance(item, MediaPacket):
            out.append(item)
            continue
        for index, packet, *_ in item.packets:
            assert packet.pts is not None
            start = packet.pts * item.time_bases[index]
            end = start + (packet.duration or 0) * item.time_bases[index]
            kind: Literal["video", "audio"] = "video" if index == 0 else "audio"
            out.append(MediaPacket(kind, packet, start, end, packet.is_keyframe))
    return out


@pytest.mark.parametrize("name", ["h264_aac.mp4", "h264_aac_gop12.mov", "h264_bframes.mp4"])
def test_gop_runs_cut_like_single_packets(media: MediaFactory, name: str) -> None:
    items, chunker = read_items(media(name), loop=2)
    single, single_chunker = read_items(media(name), loop=2)

    assert sum(isinstance(item, PacketRun) for item in items) > 2
    by_runs = list(chunker.chunks(items))
    by_packet = list(single_chunker.chunks(one_by_one(single)))
    assert [c.parts for c in by_runs] == [c.parts for c in by_packet]
    assert [(c.seq, c.media_start_s, c.media_duration_s) for c in by_runs] == [
        (c.seq, c.media_start_s, c.media_duration_s) for c in by_packet
    ]


@pytest.mark.parametrize("runs", [True, False], ids=["gop-runs", "single-packets"])
def test_keyframe_a_clock_tick_early_still_cuts(media: MediaFactory, runs: bool) -> None:
    # RTSP timestamps (90 kHz RTP mapped through RTCP) can put a keyframe one tick early.
    read, chunker = read_items(media("h264_aac.mp4"))
    items: list[MediaPacket | PacketRun] = [*read] if runs else [*one_by_one(read)]
    [keyframe] = [
        item
        for item in items
        if (isinstance(item, PacketRun) and item.keyframe and item.start_s == 2.0)
        or (
            isinstance(item, MediaPacket)
            and item.kind == "video"
            and item.keyframe
            and item.pts_s == 2.0
        )
    ]
    if isinstance(keyframe, PacketRun):
        keyframe.start_s -= 1 / 90000
    else:
        keyframe.pts_s -= 1 / 90000

    chunks = list(chunker.chunks(items))

    assert [(c.seq, round(c.media_start_s, 3), round(c.media_duration_s, 3)) for c in chunks] == [
        (0, 0.0, 2.0),
        (1, 2.0, 2.0),
    ]
