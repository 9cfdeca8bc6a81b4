"""Decode shedding: media of windows that will be shed is demuxed but not decoded."""

from __future__ import annotations

import itertools
import time

from sim_helpers import CLIP_A, SimulatorFactory, frames_of

from simulator.config import LoadConfig
from simulator.features import FeatureBin
from simulator.shedding import DecodeShedder
from simulator.windows import AnalysisQueue, Window, WindowPlanner


def test_shedder_decides_per_owned_slice_and_resumes_video_at_a_keyframe() -> None:
    shedder = DecodeShedder(8.0)
    decisions = [
        shedder.decide(0.1, 0.0, video_keyframe=True),  # slice [0, 8): decode
        shedder.decide(7.9, 5.0, video_keyframe=False),  # within the lag: keep decoding
        shedder.decide(8.1, 6.0, video_keyframe=None),  # past it: the slice is lost, skip
        shedder.decide(2.0, 7.5, video_keyframe=True),  # same slice: keep skipping
        shedder.decide(4.1, 8.0, video_keyframe=True),  # slice [8, 11) starts > 8 / 2 s behind
        shedder.decide(4.0, 11.0, video_keyframe=None),  # slice [11, 14): room again
        shedder.decide(4.0, 11.04, video_keyframe=False),  # video waits for a keyframe
        shedder.decide(4.0, 12.0, video_keyframe=True),
        shedder.decide(7.9, 12.04, video_keyframe=False),
    ]

    assert decisions == [
        "decode", "decode", "skip", "skip", "skip", "decode", "hold", "decode", "decode",
    ]  # fmt: skip
    assert shedder.episodes == 1
    assert (shedder.start_lag_s, DecodeShedder(1.0).start_lag_s) == (4.0, 0.5)
    assert [shedder.slice_of(t) for t in (0.0, 7.99, 8.0, 10.99, 11.0, 14.5)] == [0, 0, 1, 1, 2, 3]


def test_skipped_ranges_merge_and_stay_inside_the_current_slice() -> None:
    shedder = DecodeShedder(1.0)
    assert shedder.decide(5.0, 8.5, video_keyframe=True) == "skip"  # slice [8, 11)
    for start, end in [(8.5, 8.54), (8.48, 8.544), (8.54, 8.58), (7.9, 8.0), (10.98, 11.04)]:
        shedder.record(start, end)
    assert shedder.decide(5.0, 13.0, video_keyframe=True) == "skip"  # slice [11, 14)
    shedder.record(10.9, 11.2)

    assert shedder.ranges == [(8.48, 8.58), (10.98, 11.2)]
    assert shedder.ranges_ms() == [(8480, 8580), (10980, 11200)]


def test_planner_marks_windows_owning_skipped_media() -> None:
    planner = WindowPlanner(8000, 3000)
    bins = [FeatureBin(i) for i in range(20)]

    windows = planner.add(bins, [], 0.0, 20000, [(9980, 10080), (16500, 16600)])

    assert [(w.owned_start_ms, w.owned_end_ms, w.skipped) for w in windows] == [
        (0, 8000, False),
        (8000, 11000, True),
        (11000, 14000, False),
        (14000, 17000, True),
        (17000, 20000, False),
    ]


async def test_queue_sheds_skipped_windows_as_lag_and_analyses_the_rest() -> None:
    emitted: list[int] = []
    dropped: list[tuple[int, str]] = []

    async def emit(window: Window) -> None:
        emitted.append(window.index)

    async def drop(window: Window, reason: str) -> None:
        dropped.append((window.index, reason))

    queue = AnalysisQueue(ratio=0.0, queue_windows=2, max_lag_s=3600.0, emit=emit, drop=drop)
    queue.start()
    planner = WindowPlanner(8000, 3000)
    bins = [FeatureBin(i) for i in range(14)]
    for window in planner.add(bins, [], time.monotonic(), 14000, [(9000, 9500)]):
        await queue.submit(window)
    await queue.drain(5.0)
    await queue.abandon("done")

    assert emitted == [0, 2]
    assert dropped == [(1, "lag")]


async def test_session_behind_live_media_decodes_nothing_and_accounts_all_as_dropped(
    start_simulator: SimulatorFactory,
) -> None:
    driver = await start_simulator(load=LoadConfig(processing_ratio=0.0, max_lag_s=0.0))
    run = await driver.run(frames_of(CLIP_A))

    usage = await driver.usage(run.session_id)
    assert usage["dropped_ranges"] == [
        {"start": 0.0, "end": 8.0, "reason": "lag"},
        {"start": 8.0, "end": 11.0, "reason": "lag"},
        {"start": 11.0, "end": 14.0, "reason": "lag"},
        {"start": 14.0, "end": 14.2, "reason": "lag"},
    ]
    assert [r for d in run.data("coverage.dropped") for r in d["ranges"]] == [
        {"start": 0.0, "end": 8.0},
        {"start": 8.0, "end": 11.0},
        {"start": 11.0, "end": 14.0},
        {"start": 14.0, "end": 14.2},
    ]
    assert (usage["analysed_ms"], usage["dropped_ms"], usage["media_received_ms"]) == (
        0, 14200, 14200,
    )  # fmt: skip
    assert not [t for t in run.types if t.startswith(("signal.", "engagement"))]
    assert run.close.code == 1000
    spans = [(r["start"], r["end"]) for r in usage["dropped_ranges"]]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
