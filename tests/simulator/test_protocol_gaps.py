"""Issue 8 protocol items through the official SDK: limits, order, vocabularies, keepalive."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from interhumanai import StreamClient, parse_stream_event
from pydantic import ValidationError
from sim_helpers import (
    ALL_OPTIONS,
    CLIP_A,
    CLIP_B,
    Driver,
    SimulatorFactory,
    clip_bytes,
    compact,
    frames_of,
)

from simulator.config import AnalysisConfig, DecodeDepth, SessionLimits
from simulator.protocol import SIGNALS_BY_VERSION


def _errors(run: Any) -> list[dict[str, Any]]:
    return run.data("error")


async def test_session_ready_advertises_min_segment_duration(driver: Driver) -> None:
    url = f"{driver.sim.url}/v1/stream/analyze"
    async with websockets.connect(
        url, additional_headers={"Authorization": "Bearer sim-key"}
    ) as ws:
        ready = json.loads(await ws.recv())

    assert ready["type"] == "session.ready"
    assert ready["data"]["min_segment_duration_seconds"] == 3.0
    assert ready["data"]["min_segment_size_bytes"] == 1


@pytest.mark.parametrize("decode", ["all", "none", "boxes"])
async def test_segment_duration_limits_give_non_fatal_errors(
    start_simulator: SimulatorFactory, decode: DecodeDepth
) -> None:
    limits = SessionLimits(
        max_drain_s=20.0,
        min_segment_duration_s=6.0,
        enforce_min_segment_duration=True,
        max_segment_duration_s=9.0,
    )
    driver = await start_simulator(limits=limits, analysis=AnalysisConfig(decode=decode))
    data = clip_bytes(CLIP_A)
    third = len(data) // 3
    frames = [data[:100], data[100:third], data[third:]]

    run = await driver.run(frames)

    assert _errors(run) == [
        {
            "code": "ih6005",
            "message": "Media segment 1 carries 5.1 s of media, below "
            "min_segment_duration_seconds (6 s).",
            "link": "https://docs.interhuman.ai/errors#ih6005",
            "segment": 1,
        },
        {
            "code": "ih6005",
            "message": "Media segment 2 carries 9.84 s of media, above "
            "max_segment_duration_seconds (9 s).",
            "link": "https://docs.interhuman.ai/errors#ih6005",
            "segment": 2,
        },
    ]
    assert run.close.code == 1000
    assert run.types[-1] == "session.ended"
    usage = await driver.usage(run.session_id)
    assert (usage["analysed_ms"], usage["dropped_ms"]) == (14200, 0)


async def test_empty_binary_frame_is_not_end_of_stream(driver: Driver) -> None:
    data = clip_bytes(CLIP_A)
    frames = [data[:20000], b"", data[20000:]]

    run = await driver.run(frames)

    assert "error" not in run.types
    assert run.close.code == 1000
    usage = await driver.usage(run.session_id)
    assert (usage["frames_received"], usage["analysed_ms"], usage["dropped_ms"]) == (3, 14200, 0)


@pytest.mark.parametrize(
    ("api_version", "expected"),
    [
        ("v1", {"confusion", "disengagement", "hesitation", "uncertainty"}),
        ("v2", {"confusion", "hesitation", "uncertainty"}),  # no (dis)engagement signal on v2
    ],
)
async def test_signal_vocabulary_per_endpoint(
    driver: Driver, api_version: str, expected: set[str]
) -> None:
    run = await driver.run([clip_bytes(CLIP_B)], api_version=api_version)

    kinds = {d["signal_type"] for d in run.data("signal.detected") + run.data("signal.ended")}
    assert kinds == expected
    assert kinds <= SIGNALS_BY_VERSION[api_version]


async def test_unknown_value_fault_makes_the_sdk_parser_raise(driver: Driver) -> None:
    url = f"{driver.sim.url}/v1/stream/analyze"
    headers = {"Authorization": "Bearer sim-fault:unknown_value@0"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        raw = [json.loads(await ws.recv()) for _ in range(3)]

    assert [(m["type"], m["data"]) for m in raw[1:]] == [
        (
            "signal.detected",
            {"signal_type": "sim_new_signal", "start": 0.0, "probability": "low", "rationale": "x"},
        ),
        ("engagement.updated", {"state": "sim_new_state", "start": 0.0}),
    ]
    for message in raw[1:]:
        with pytest.raises(ValidationError):
            parse_stream_event(message)
    assert parse_stream_event(raw[0]).type == "session.ready"


async def test_media_before_ready_and_after_close_is_rejected(driver: Driver) -> None:
    stream = driver.client("sim-fault:ready_delay=0.5").stream(api_version="v1")
    await stream.connect()
    await stream.send_video(b"early bytes")  # before session.ready: refused, not analysed
    await stream.wait_for_session_ready()
    await stream.send_video(clip_bytes(CLIP_A))
    await stream.request_close()
    await stream.send_video(b"late bytes")  # after session.close: refused
    events = [event async for event in stream]
    await stream.wait_closed()

    errors = [
        e.data.model_dump(mode="json", exclude_none=True) for e in events if e.type == "error"
    ]
    assert [(e["code"], e["segment"], e["message"]) for e in errors] == [
        ("ih6006", 0, "Media frame sent before session.ready; it is not analysed."),
        ("ih6006", 2, "Media frame sent after session.close; it is not analysed."),
    ]
    assert [compact(e) for e in events][-1] == ("session.ended", "client_shutdown")
    usage = await driver.usage(events[0].correlation_id)
    assert (usage["frames_received"], usage["analysed_ms"], usage["dropped_ms"]) == (3, 14200, 0)


async def test_feedback_off_key_advertises_no_goal_dimensions(driver: Driver) -> None:
    run = await driver.run([clip_bytes(CLIP_A)], key="sim-key-no-feedback", configs=[ALL_OPTIONS])

    options = run.data("session.ready")[0]["supported_session_config_options"]
    assert "goal_dimensions" not in options  # None: feedback is off
    assert [(e["code"], e["message"]) for e in _errors(run)] == [
        ("ih6001", "Feedback is off for this session: no goal_dimensions.")
    ]
    assert "feedback.generated" not in run.types
    assert run.close.code == 1000


async def test_feedback_off_by_config(start_simulator: SimulatorFactory) -> None:
    driver = await start_simulator(limits=SessionLimits(max_drain_s=20.0, feedback=False))
    run = await driver.run([clip_bytes(CLIP_A)], configs=[{"include": ALL_OPTIONS["include"]}])

    assert "goal_dimensions" not in run.data("session.ready")[0]["supported_session_config_options"]
    assert "feedback.generated" not in run.types
    assert run.types.count("conversation_quality.updated") == 4


async def test_client_that_stops_answering_pings_is_dropped(
    start_simulator: SimulatorFactory,
) -> None:
    limits = SessionLimits(max_drain_s=20.0, ping_interval_s=0.2, ping_timeout_s=0.3)
    driver = await start_simulator(limits=limits)
    stream: StreamClient = driver.client().stream(api_version="v1")
    await stream.connect()
    ready = await stream.wait_for_session_ready()
    await stream.send_video(clip_bytes(CLIP_A))
    await asyncio.sleep(0.3)  # let the media be analysed before the client goes silent
    stream._ws.transport.pause_reading()  # type: ignore[attr-defined]  # a frozen client

    usage = await driver.usage(ready.correlation_id)

    assert (usage["end_reason"], usage["close_code"]) == ("keepalive_timeout", 1006)
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"] == 14200
    stream._ws.transport.abort()  # type: ignore[attr-defined]


async def test_silent_drops_are_in_the_ledger_with_their_reason(driver: Driver) -> None:
    stream: StreamClient = driver.client().stream(api_version="v1")
    await stream.connect()
    ready = await stream.wait_for_session_ready()
    await stream.send_video(clip_bytes(CLIP_A)[:100])
    stream._ws.transport.abort()  # type: ignore[attr-defined]  # the client vanishes

    usage = await driver.usage(ready.correlation_id)
    ledger = await driver.usage()

    assert (usage["end_reason"], usage["close_code"], usage["frames_received"]) == (
        "client_disconnected", 1006, 1,
    )  # fmt: skip
    assert [s["end_reason"] for s in ledger["sessions"]] == ["client_disconnected"]
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"]


async def test_usage_agrees_with_the_events_received(driver: Driver) -> None:
    run = await driver.run([clip_bytes(CLIP_A)], configs=[ALL_OPTIONS])

    usage = await driver.usage(run.session_id)
    timeline = [t for q in run.data("conversation_quality.updated") for t in q["timeline"]]
    assert [(t["start"], t["end"]) for t in timeline] == [(0, 8), (3, 11), (6, 14), (9, 14.2)]
    assert "coverage.dropped" not in run.types
    # billed = analysed (degraded included); nothing dropped, so billed == media received.
    assert (usage["analysed_ms"], usage["degraded_ms"], usage["dropped_ms"]) == (14200, 0, 0)
    assert usage["windows_analysed"] == len(timeline)


@pytest.mark.parametrize(("api_version", "short"), [("v1", [(4, 2.992)]), ("v2", [])])
async def test_min_segment_duration_is_enforced_on_v1_by_default(
    driver: Driver, api_version: str, short: list[tuple[int, float]]
) -> None:
    # 16 KiB frames of CLIP_A: the last carries 2.992 s. The v1 docs: "Each segment must be
    # at least 3 seconds long"; the V2 docs advertise no minimum and advise 1-3 s frames.
    run = await driver.run(frames_of(CLIP_A, chunk_bytes=16384), api_version=api_version)

    assert [(e["code"], e["segment"]) for e in run.data("error")] == [
        ("ih6005", index) for index, _ in short
    ]
    assert [e["message"] for e in run.data("error")] == [
        f"Media segment {index} carries {seconds:g} s of media, below "
        "min_segment_duration_seconds (3 s)."
        for index, seconds in short
    ]
    usage = await driver.usage(run.session_id)
    assert (usage["analysed_ms"], usage["dropped_ms"]) == (14200, 0)  # still analysed


async def test_v2_session_ready_has_no_min_segment_duration(driver: Driver) -> None:
    url = f"{driver.sim.url}/v2/stream/analyze"
    async with websockets.connect(
        url, additional_headers={"Authorization": "Bearer sim-key"}
    ) as ws:
        ready = json.loads(await ws.recv())

    assert "min_segment_duration_seconds" not in ready["data"]
    assert ready["data"]["min_segment_size_bytes"] == 1
