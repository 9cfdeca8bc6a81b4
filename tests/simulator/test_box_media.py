"""``decode="boxes"``: features from container box headers, equal to ``decode="none"``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sim_helpers import (
    ALL_OPTIONS,
    CLIP_A,
    CLIP_B,
    CLIP_B_PACKET_EVENTS,
    CLIP_WEBM,
    FIXTURE_CLIPS,
    Driver,
    SimulatorFactory,
    clip_bytes,
    compact,
    frames_of,
    without_closing,
)

from chunks.containers import sniff_container
from simulator.box_media import BoxMediaStream
from simulator.box_reader import Sample, TrackInfo
from simulator.config import AnalysisConfig, SessionLimits
from simulator.ebml import WebmReader
from simulator.exceptions import MalformedMediaError
from simulator.media import MediaProgress, MediaStream
from simulator.mp4_boxes import Mp4BoxReader

MP4_VIDEO = TrackInfo("video", 1, 10240, 160, 120)
MP4_AUDIO = TrackInfo("audio", 1, 16000)
WEBM_VIDEO = TrackInfo("video", 1_000_000, 1_000_000_000, 160, 120)
WEBM_AUDIO = TrackInfo("audio", 1_000_000, 1_000_000_000, delay_ticks=7)


@pytest.fixture
async def boxes(start_simulator: SimulatorFactory) -> Driver:
    """A simulator reading box headers only."""
    return await start_simulator(analysis=AnalysisConfig(decode="boxes"))


@pytest.fixture
async def packets(start_simulator: SimulatorFactory) -> Driver:
    """A simulator that demuxes with PyAV and decodes nothing."""
    return await start_simulator(analysis=AnalysisConfig(decode="none"))


def _feed(reader: Mp4BoxReader | WebmReader, data: bytes, step: int) -> list[Sample]:
    out: list[Sample] = []
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step], i // step)
    return out


def _summary(samples: list[Sample]) -> tuple[int, int, int, int]:
    video = [s for s in samples if s.track.kind == "video"]
    return len(samples), len(video), sum(s.size for s in samples), sum(s.keyframe for s in video)


def test_mp4_reader_reads_tracks_and_samples_from_box_headers() -> None:
    reader = Mp4BoxReader()
    samples = reader.feed(clip_bytes(CLIP_A), 0)

    assert reader.tracks == [MP4_VIDEO, MP4_AUDIO]
    assert samples[:4] == [
        Sample(MP4_VIDEO, 2048, 0, 1024, 807, True, 2240),  # pts = tfdt + composition offset
        Sample(MP4_VIDEO, 3072, 1024, 1024, 169, False, 2409),
        Sample(MP4_VIDEO, 5120, 2048, 1024, 83, False, 2492),
        Sample(MP4_VIDEO, 4096, 3072, 1024, 15, False, 2507),
    ]
    assert _summary(samples) == (360, 140, 74355, 16)  # PyAV demuxes the same 360 packets
    assert _feed(Mp4BoxReader(), clip_bytes(CLIP_A), 1) == samples
    assert _feed(Mp4BoxReader(), clip_bytes(CLIP_A), 7) == samples


def test_webm_reader_reads_tracks_and_blocks_from_element_headers() -> None:
    reader = WebmReader()
    samples = reader.feed(clip_bytes(CLIP_WEBM), 0)

    assert reader.tracks == [WEBM_VIDEO, WEBM_AUDIO]
    assert samples[:3] == [
        Sample(WEBM_AUDIO, -7, -7, 20, 319, True, 915),  # codec delay 6.5 ms -> 7 ticks
        Sample(WEBM_VIDEO, 0, 0, 100, 210, True, 1132),
        Sample(WEBM_AUDIO, 14, 14, 20, 152, True, 1291),  # Opus: duration from the TOC byte
    ]
    assert _summary(samples) == (541, 90, 72961, 9)
    assert _feed(WebmReader(), clip_bytes(CLIP_WEBM), 1) == samples
    assert _feed(WebmReader(), clip_bytes(CLIP_WEBM), 7) == samples


def test_samples_count_only_once_their_bytes_have_arrived() -> None:
    data = clip_bytes(CLIP_A)
    reader = Mp4BoxReader()

    assert reader.feed(data[:2239], 0) == []  # the first moof is read, its mdat is not whole
    assert reader.feed(data[2239:2240], 1) == [Sample(MP4_VIDEO, 2048, 0, 1024, 807, True, 2240)]


def _reports(stream: type[MediaStream | BoxMediaStream], data: bytes, step: int) -> Any:
    reports: list[MediaProgress] = []
    done = threading.Event()

    def report(progress: MediaProgress) -> None:
        reports.append(progress)
        if progress.finished:
            done.set()

    kwargs: dict[str, Any] = {"decode": "none"} if stream is MediaStream else {}
    container = sniff_container(data)
    assert container is not None
    media = stream(
        container, report, require_video=False, video_sample_fps=4.0, video_gap_ms=1000, **kwargs
    )
    for i in range(0, len(data), step):
        media.feed(data[i : i + step])
    media.finish()
    assert done.wait(30)
    last = reports[-1]
    return [b for r in reports for b in r.bins], last.media_ms, last.gaps_ms, last.has_video


@pytest.mark.parametrize("name", sorted(FIXTURE_CLIPS))
def test_box_features_equal_demuxed_packet_features_on_every_fixture(name: str) -> None:
    data = clip_bytes(FIXTURE_CLIPS[name])
    demuxed = _reports(MediaStream, data, 16384)

    assert _reports(BoxMediaStream, data, 7) == demuxed
    assert _reports(BoxMediaStream, data, 16384) == demuxed
    assert _reports(BoxMediaStream, data, len(data)) == demuxed


async def test_exact_events_and_usage_from_box_headers(boxes: Driver, packets: Driver) -> None:
    run = await boxes.run(frames_of(CLIP_B), configs=[ALL_OPTIONS])
    reference = await packets.run(frames_of(CLIP_B), configs=[ALL_OPTIONS])

    assert without_closing(run) == CLIP_B_PACKET_EVENTS
    stable = [item for item in run.comparable() if item[0] != "session.closing"]
    assert stable == [item for item in reference.comparable() if item[0] != "session.closing"]
    assert run.close.code == 1000
    usage = await boxes.usage(run.session_id)
    assert (usage["media_received_ms"], usage["analysed_ms"], usage["dropped_ms"]) == (
        14200, 14200, 0,
    )  # fmt: skip
    assert (usage["windows_analysed"], usage["frames_received"]) == (4, 4)


async def test_webm_events_from_element_headers(boxes: Driver, packets: Driver) -> None:
    run = await boxes.run(frames_of(CLIP_WEBM), configs=[ALL_OPTIONS])
    reference = await packets.run(frames_of(CLIP_WEBM), configs=[ALL_OPTIONS])

    assert without_closing(run) == [
        ("session.ready",),
        ("session.updated",),
        ("signal.detected", "disagreement", "low", 0.0),
        ("signal.detected", "engagement", "low", 0.0),
        ("signal.detected", "stress", "low", 0.0),
        ("engagement.updated", "engaged", 0.0),
        ("conversation_quality.updated", 65.6, ((0.0, 8.0),)),
        ("feedback.generated",),
        ("signal.ended", "disagreement", 3.0),
        ("signal.ended", "stress", 3.0),
        ("signal.detected", "hesitation", "medium", 3.0),
        ("signal.detected", "uncertainty", "low", 3.0),
        ("signal.updated", "engagement", "low", 0.0),
        ("conversation_quality.updated", 64.7, ((3.0, 9.001),)),
        ("feedback.generated",),
        ("signal.ended", "engagement", 9.001),
        ("signal.ended", "hesitation", 9.001),
        ("signal.ended", "uncertainty", 9.001),
        ("session.ended", "client_shutdown"),
    ]
    stable = [item for item in run.comparable() if item[0] != "session.closing"]
    assert stable == [item for item in reference.comparable() if item[0] != "session.closing"]
    usage = await boxes.usage(run.session_id)
    assert (usage["media_received_ms"], usage["analysed_ms"], usage["windows_analysed"]) == (
        9001, 9001, 2,
    )  # fmt: skip


async def test_headers_split_at_awkward_offsets(start_simulator: SimulatorFactory) -> None:
    # Tiny frames are the point here: the 3 s segment minimum (ih6005) is not.
    boxes = await start_simulator(
        analysis=AnalysisConfig(decode="boxes"),
        limits=SessionLimits(max_drain_s=20.0, enforce_min_segment_duration=False),
    )
    data = clip_bytes(CLIP_B)
    # The first frame must carry the 8-byte box header of ftyp (the init-header check);
    # then 1-byte frames to the moov box's header, and 7-byte frames through the moov.
    ones = [data[i : i + 1] for i in range(8, 40)]
    sevens = [data[i : min(i + 7, 1500)] for i in range(40, 1500, 7)]
    frames = [data[:8], *ones, *sevens, data[1500:1501], data[1501:]]

    run = await boxes.run(frames, configs=[ALL_OPTIONS])

    assert without_closing(run) == CLIP_B_PACKET_EVENTS
    usage = await boxes.usage(run.session_id)
    assert (usage["media_received_ms"], usage["analysed_ms"], usage["frames_received"]) == (
        14200, 14200, 244,
    )  # fmt: skip


async def test_malformed_box_gets_ih5004_naming_the_box(boxes: Driver) -> None:
    data = bytearray(clip_bytes(CLIP_A))
    data[1325 + 8 : 1325 + 12] = (0x7FFFFFFF).to_bytes(4, "big")  # first trun's sample count
    frames = [bytes(data[:1000]), bytes(data[1000:2000]), bytes(data[2000:])]

    run = await boxes.run(frames)

    assert without_closing(run) == [("session.ready",), ("error", "ih5004")]
    assert run.data("error")[0] == {
        "code": "ih5004",
        "message": "Malformed media segment: trun lists 2147483647 samples but its box is 96 "
        "bytes (fragmented MP4, byte 1425)",
        "link": "https://docs.interhuman.ai/errors#ih5004",
        "segment": 1,
    }
    assert run.close.code == 1007


async def test_malformed_webm_element_gets_ih5004(boxes: Driver) -> None:
    data = clip_bytes(CLIP_WEBM)
    run = await boxes.run([data[:580], b"\x00" * 64])  # a cluster id replaced by zeros

    assert compact(run.events[-1]) == ("error", "ih5004")
    assert run.data("error")[0]["message"] == (
        "Malformed media segment: invalid element id byte 0x00 (WebM, byte 581)"
    )
    assert run.data("error")[0]["segment"] == 1
    assert run.close.code == 1007


def test_truncated_header_is_malformed() -> None:
    header = clip_bytes(CLIP_A)[:40]  # ftyp and a cut-off moov, then garbage

    with pytest.raises(MalformedMediaError) as caught:
        Mp4BoxReader().feed(header + b"\xff" * 4096, 0)

    assert str(caught.value) == (
        "Malformed media segment: box b'\\xff\\xff\\xff\\xff' of 4294967295 bytes overruns its "
        "parent (fragmented MP4, byte 1241)"
    )
