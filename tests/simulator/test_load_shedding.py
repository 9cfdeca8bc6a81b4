"""Backpressure: windows the model cannot keep up with are shed, reported and never billed."""

from __future__ import annotations

import itertools
from typing import Any

from sim_helpers import (
    CLIP_A,
    CLIP_RAMP,
    Driver,
    SimulatorFactory,
    clip_bytes,
    frames_of,
    segments,
)

from simulator.config import LoadConfig


def _partition(usage: dict[str, Any]) -> list[tuple[float, float, str]]:
    analysed = [(r["start"], r["end"], "analysed") for r in usage["analysed_ranges"]]
    dropped = [(r["start"], r["end"], r["reason"]) for r in usage["dropped_ranges"]]
    return sorted(analysed + dropped)


async def test_slow_model_sheds_windows_and_accounts_every_second(
    start_simulator: SimulatorFactory,
) -> None:
    driver = await start_simulator(
        load=LoadConfig(processing_ratio=0.3, queue_windows=1, max_lag_s=3600.0)
    )
    run = await driver.run(frames_of(CLIP_RAMP))  # 20 s of media sent at once

    usage = await driver.usage(run.session_id)
    dropped_events = [
        (r["start"], r["end"]) for d in run.data("coverage.dropped") for r in d["ranges"]
    ]
    dropped_usage = [(r["start"], r["end"]) for r in usage["dropped_ranges"]]
    # the 2.4 s first window lets the next ones pile up: [8, 11) and [11, 14) wait (6 s of
    # media, within the one window's 8 s the queue holds), [14, 17) and [17, 20) are shed
    assert dropped_events == [(14.0, 17.0), (17.0, 20.0)]
    assert dropped_events == dropped_usage
    assert {r["reason"] for r in usage["dropped_ranges"]} == {"backpressure"}
    # Analysed and dropped slices tile the media exactly, with no overlap and no hole.
    spans = _partition(usage)
    assert spans[0][0] == 0.0
    assert spans[-1][1] == 20.0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"] == 20000
    assert usage["windows_analysed"] + usage["windows_dropped"] == 5
    assert usage["pending_ms"] == 0
    assert run.close.code == 1000


async def test_a_long_frame_on_an_idle_model_is_analysed_whole(
    start_simulator: SimulatorFactory,
) -> None:
    # The default model (0.05 s per media second, a queue of two windows' media): one 20 s
    # frame readies five windows at once, 8 + 4 x 3 s of media, 0.85 s of model time. That
    # burst is not congestion: counted as five whole windows it used to shed [14, 20).
    driver = await start_simulator(load=LoadConfig(max_lag_s=3600.0))
    frames = segments(clip_bytes(CLIP_RAMP), 20.0)
    run = await driver.run(frames)

    usage = await driver.usage(run.session_id)
    assert len(frames) == 1
    assert run.data("coverage.dropped") == []
    assert usage["analysed_ranges"] == [
        {"start": 0.0, "end": 8.0}, {"start": 8.0, "end": 11.0}, {"start": 11.0, "end": 14.0},
        {"start": 14.0, "end": 17.0}, {"start": 17.0, "end": 20.0},
    ]  # fmt: skip
    assert (usage["windows_analysed"], usage["windows_dropped"], usage["dropped_ms"]) == (5, 0, 0)


async def test_windows_behind_live_media_are_shed_as_lag(
    start_simulator: SimulatorFactory,
) -> None:
    driver = await start_simulator(
        load=LoadConfig(processing_ratio=0.3, queue_windows=10, max_lag_s=1.0)
    )
    run = await driver.run(frames_of(CLIP_A))

    usage = await driver.usage(run.session_id)
    assert usage["dropped_ranges"]
    assert {r["reason"] for r in usage["dropped_ranges"]} == {"lag"}
    assert usage["analysed_ranges"][0] == {"start": 0.0, "end": 8.0}
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"] == 14200


async def test_usage_endpoint_reports_sessions_and_totals(driver: Driver) -> None:
    stream = driver.client().stream()
    await stream.connect()
    ready = await stream.wait_for_session_ready()
    for frame in frames_of(CLIP_A):
        await stream.send_video(frame)
    active = await driver.usage(ready.correlation_id, ended=False)
    await stream.request_close()
    _ = [event async for event in stream]
    ended = await driver.usage(ready.correlation_id)
    summary = await driver.usage()

    assert active["state"] == "active"
    assert active["frames_received"] == 4  # >= 3 s segments
    assert ended["state"] == "ended"
    assert ended["end_reason"] == "client_shutdown"
    assert ended["close_code"] == 1000
    assert ended["bytes_received"] == sum(len(f) for f in frames_of(CLIP_A))
    assert (ended["media_received_seconds"], ended["analysed_seconds"]) == (14.2, 14.2)
    assert summary["active_sessions"] == 0
    assert summary["totals"] == {
        "media_received_ms": 14200,
        "analysed_ms": 14200,
        "degraded_ms": 0,
        "dropped_ms": 0,
    }
    assert [s["session_id"] for s in summary["sessions"]] == [ready.correlation_id]
    missing = await driver.usage("no-such-session")
    assert missing == {"_status": 404, "error_id": "not_found", "message": "Unknown session."}
