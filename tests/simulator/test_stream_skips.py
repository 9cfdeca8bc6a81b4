"""Stream skips: media the client never sent is ``coverage.dropped``, not billed, at every depth.

The skip streams are fixture clips with whole fragments cut out of their bytes (MP4
``moof``+``mdat`` pairs, WebM ``Cluster`` s): every track's timestamps jump, as when a
client's recorder kept its clock through a stall. A cut that leaves audio covering the
hole is a video gap instead (``coverage.degraded``, billed).
"""

from __future__ import annotations

from typing import Any

import pytest
from sim_helpers import (
    ALL_OPTIONS,
    CLIP_A,
    CLIP_WEBM,
    SimulatorFactory,
    clip_bytes,
    cut_mp4_fragments,
    cut_webm_clusters,
    segments,
    without_closing,
)

from simulator.config import AnalysisConfig, DecodeDepth
from simulator.skips import SkipTracker, subtract

DEPTHS: tuple[DecodeDepth, ...] = ("all", "keyframes", "none", "boxes")
USAGE_KEYS = (
    "media_received_ms",
    "analysed_ms",
    "degraded_ms",
    "dropped_ms",
    "analysed_ranges",
    "dropped_ranges",
    "windows_analysed",
    "windows_dropped",
)

MP4_SKIP = range(6, 10)
"""CLIP_A's fragments 6-9: video 6.0-9.2 s, audio 5.832-9.032 s; no track covers 6.0-9.032."""
MP4_SKIP_USAGE: dict[str, Any] = {
    "media_received_ms": 14200,
    "analysed_ms": 11168,  # 14200 - 3032: billed
    "degraded_ms": 0,  # video resumes 168 ms after audio: too short to be a video gap
    "dropped_ms": 3032,
    "analysed_ranges": [
        {"start": 0.0, "end": 6.0},
        {"start": 9.032, "end": 11.0},
        {"start": 11.0, "end": 14.0},
        {"start": 14.0, "end": 14.2},
    ],
    "dropped_ranges": [
        {"start": 6.0, "end": 8.0, "reason": "stream_skip"},
        {"start": 8.0, "end": 9.032, "reason": "stream_skip"},
    ],
    "windows_analysed": 4,
    "windows_dropped": 0,
}
MP4_PACKET_EVENTS: list[tuple[Any, ...]] = [
    ("session.ready",),
    ("session.updated",),
    ("coverage.dropped", ((6.0, 8.0),)),
    ("signal.detected", "disagreement", "low", 0.0),
    ("signal.detected", "engagement", "low", 0.0),
    ("engagement.updated", "engaged", 0.0),
    ("conversation_quality.updated", 59.2, ((0.0, 8.0),)),
    ("feedback.generated",),
    ("coverage.dropped", ((8.0, 9.032),)),
    ("signal.ended", "disagreement", 3.0),
    ("signal.detected", "confidence", "low", 3.0),
    ("signal.updated", "engagement", "medium", 0.0),
    ("conversation_quality.updated", 61.7, ((3.0, 11.0),)),
    ("feedback.generated",),
    ("signal.detected", "disagreement", "low", 6.0),
    ("signal.updated", "confidence", "low", 3.0),
    ("signal.updated", "engagement", "medium", 0.0),
    ("conversation_quality.updated", 63.1, ((6.0, 14.0),)),
    ("feedback.generated",),
    ("signal.updated", "confidence", "low", 3.0),
    ("signal.updated", "disagreement", "low", 6.0),
    ("signal.updated", "engagement", "medium", 0.0),
    ("conversation_quality.updated", 63.2, ((9.0, 14.2),)),
    ("feedback.generated",),
    ("signal.ended", "confidence", 14.2),
    ("signal.ended", "disagreement", 14.2),
    ("signal.ended", "engagement", 14.2),
    ("session.ended", "client_shutdown"),
]
MP4_SKIP_EVENTS: dict[str, list[tuple[Any, ...]]] = {
    "all": [
        ("session.ready",),
        ("session.updated",),
        ("coverage.dropped", ((6.0, 8.0),)),
        ("signal.detected", "engagement", "low", 0.0),
        ("engagement.updated", "engaged", 0.0),
        ("conversation_quality.updated", 59.7, ((0.0, 8.0),)),
        ("feedback.generated",),
        ("coverage.dropped", ((8.0, 9.032),)),
        ("signal.detected", "confidence", "low", 3.0),
        ("signal.detected", "interest", "low", 3.0),
        ("signal.detected", "stress", "low", 3.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("conversation_quality.updated", 62.4, ((3.0, 11.0),)),
        ("feedback.generated",),
        ("signal.ended", "interest", 6.0),
        ("signal.updated", "confidence", "low", 3.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "stress", "low", 3.0),
        ("conversation_quality.updated", 63.8, ((6.0, 14.0),)),
        ("feedback.generated",),
        ("signal.updated", "confidence", "low", 3.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "stress", "low", 3.0),
        ("conversation_quality.updated", 63.9, ((9.0, 14.2),)),
        ("feedback.generated",),
        ("signal.ended", "confidence", 14.2),
        ("signal.ended", "engagement", 14.2),
        ("signal.ended", "stress", 14.2),
        ("session.ended", "client_shutdown"),
    ],
    "none": MP4_PACKET_EVENTS,
    "boxes": MP4_PACKET_EVENTS,
}
"""Exact events per depth (``keyframes`` is checked by its coverage events and usage)."""


def _usage(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in USAGE_KEYS}


def _coverage(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [e for e in events if e[0].startswith("coverage.")]


@pytest.mark.parametrize("depth", DEPTHS)
async def test_mp4_stream_skip_is_dropped_not_billed(
    start_simulator: SimulatorFactory, depth: DecodeDepth
) -> None:
    driver = await start_simulator(analysis=AnalysisConfig(decode=depth))
    data = cut_mp4_fragments(clip_bytes(CLIP_A), MP4_SKIP)

    run = await driver.run(segments(data), configs=[ALL_OPTIONS])

    events = without_closing(run)
    assert _coverage(events) == [
        ("coverage.dropped", ((6.0, 8.0),)),
        ("coverage.dropped", ((8.0, 9.032),)),
    ]
    if depth in MP4_SKIP_EVENTS:
        assert events == MP4_SKIP_EVENTS[depth]
    # Nothing is inferred from the missing seconds (their silence read as disengagement before).
    assert "disengagement" not in {e[1] for e in events if e[0].startswith("signal.")}
    usage = await driver.usage(run.session_id)
    assert _usage(usage) == MP4_SKIP_USAGE
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"]
    assert run.close.code == 1000


@pytest.mark.parametrize("depth", ["all", "boxes"])
async def test_window_wholly_inside_a_skip_sends_only_coverage_dropped(
    start_simulator: SimulatorFactory, depth: DecodeDepth
) -> None:
    driver = await start_simulator(analysis=AnalysisConfig(decode=depth))
    # Fragments 5-11 (video 5.1-12.1 s, audio 4.936-11.912 s): nothing covers 5.1-11.016 s.
    data = cut_mp4_fragments(clip_bytes(CLIP_A), range(5, 12))

    run = await driver.run(segments(data))

    events = without_closing(run)
    assert _coverage(events) == [
        ("coverage.dropped", ((5.1, 8.0),)),
        ("coverage.dropped", ((8.0, 11.0),)),  # the window at 3 s: no media, no other event
        ("coverage.dropped", ((11.0, 11.016),)),
    ]
    second = events.index(("coverage.dropped", ((8.0, 11.0),)))
    assert events[second + 1] == ("coverage.dropped", ((11.0, 11.016),))
    assert [e[3] for e in events if e[0] == "signal.detected"][-1] == 9.0  # after the skip
    assert _usage(await driver.usage(run.session_id)) == {
        "media_received_ms": 14200,
        "analysed_ms": 8284,
        "degraded_ms": 0,
        "dropped_ms": 5916,
        "analysed_ranges": [
            {"start": 0.0, "end": 5.1},
            {"start": 11.016, "end": 14.0},
            {"start": 14.0, "end": 14.2},
        ],
        "dropped_ranges": [
            {"start": 5.1, "end": 8.0, "reason": "stream_skip"},
            {"start": 8.0, "end": 11.0, "reason": "stream_skip"},
            {"start": 11.0, "end": 11.016, "reason": "stream_skip"},
        ],
        "windows_analysed": 3,
        "windows_dropped": 1,
    }


WEBM_PACKET_EVENTS: list[tuple[Any, ...]] = [
    ("session.ready",),
    ("coverage.dropped", ((3.0, 5.994),)),
    ("signal.detected", "confidence", "low", 0.0),
    ("signal.detected", "disagreement", "low", 0.0),
    ("signal.detected", "engagement", "medium", 0.0),
    ("signal.detected", "stress", "low", 0.0),
    ("engagement.updated", "engaged", 0.0),
    ("signal.ended", "confidence", 3.0),
    ("signal.ended", "disagreement", 3.0),
    ("signal.updated", "engagement", "low", 0.0),
    ("signal.updated", "stress", "low", 0.0),
    ("signal.ended", "engagement", 9.001),
    ("signal.ended", "stress", 9.001),
    ("session.ended", "client_shutdown"),
]


@pytest.mark.parametrize("depth", DEPTHS)
async def test_webm_stream_skip_is_dropped_not_billed(
    start_simulator: SimulatorFactory, depth: DecodeDepth
) -> None:
    driver = await start_simulator(analysis=AnalysisConfig(decode=depth))
    # Clusters 3-5 of the 9 s WebM: no track covers 3.0-5.994 s.
    data = cut_webm_clusters(clip_bytes(CLIP_WEBM), range(3, 6))

    run = await driver.run(segments(data))

    events = without_closing(run)
    assert _coverage(events) == [("coverage.dropped", ((3.0, 5.994),))]
    if depth in ("none", "boxes"):
        assert events == WEBM_PACKET_EVENTS
    assert _usage(await driver.usage(run.session_id)) == {
        "media_received_ms": 9001,
        "analysed_ms": 6007,
        "degraded_ms": 0,
        "dropped_ms": 2994,
        "analysed_ranges": [
            {"start": 0.0, "end": 3.0},
            {"start": 5.994, "end": 8.0},
            {"start": 8.0, "end": 9.001},
        ],
        "dropped_ranges": [{"start": 3.0, "end": 5.994, "reason": "stream_skip"}],
        "windows_analysed": 2,
        "windows_dropped": 0,
    }


@pytest.mark.parametrize("depth", ["all", "boxes"])
async def test_a_cut_that_audio_still_covers_is_a_video_gap(
    start_simulator: SimulatorFactory, depth: DecodeDepth
) -> None:
    driver = await start_simulator(analysis=AnalysisConfig(decode=depth))
    # Fragments 1-2 hold video 1.2-3.2 s; CLIP_A's audio for 0-3.912 s comes in fragment 3.
    data = cut_mp4_fragments(clip_bytes(CLIP_A), range(1, 3))

    run = await driver.run(segments(data))

    assert _coverage(without_closing(run)) == [("coverage.degraded", ((1.1, 3.2),))]
    usage = await driver.usage(run.session_id)
    assert (usage["analysed_ms"], usage["degraded_ms"], usage["dropped_ms"]) == (14200, 2100, 0)


def test_skip_tracker_narrows_a_hole_a_lagging_track_fills() -> None:
    tracker = SkipTracker(1000)
    tracker.add(0, 1000)  # video
    tracker.add(1000, 2000)
    assert tracker.add(6000, 7000)  # video jumps: a hole 2000-6000 so far
    assert tracker.ranges() == [(2000, 6000)]
    tracker.add(1900, 4500)  # audio, written after the video: the hole is 4500-6000
    assert tracker.ranges() == [(4500, 6000)]
    tracker.add(4500, 5200)  # what is left (800 ms) is too short to be a skip
    assert tracker.ranges() == []


def test_subtract_keeps_the_pieces_longer_than_the_minimum() -> None:
    assert subtract([(0, 10_000)], [(2000, 3000), (9500, 12_000)]) == [(0, 2000), (3000, 9500)]
    assert subtract([(0, 10_000)], [(2000, 9500)], 1000) == [(0, 2000)]
