"""Every protocol error code, as the official SDK surfaces it."""

from __future__ import annotations

import asyncio

import pytest
from interhumanai import InterhumanError
from sim_helpers import (
    CLIP_A,
    CLIP_NO_VIDEO,
    Driver,
    SimulatorFactory,
    compact,
    frames_of,
    without_closing,
)
from websockets.exceptions import InvalidStatus

from simulator.config import LoadConfig, SessionLimits


async def test_bad_key_fails_the_upgrade_with_401(driver: Driver) -> None:
    stream = driver.client("not-a-key").stream()

    with pytest.raises(InterhumanError, match="HTTP 401") as caught:
        await stream.connect()

    assert isinstance(caught.value.__cause__, InvalidStatus)
    assert caught.value.__cause__.response.status_code == 401
    assert (await driver.usage())["sessions"] == []


async def test_key_without_stream_scope_gets_ih2003_and_4003(driver: Driver) -> None:
    stream = driver.client("sim-key-noscope").stream()
    await stream.connect()

    with pytest.raises(InterhumanError) as caught:
        await stream.wait_for_session_ready()

    assert str(caught.value) == (
        "Stream connection closed before the session became ready (code 4003, reason 'ih2003'). "
        "The server reported ih2003: The credential lacks the interhumanai.stream scope."
    )
    events = [event async for event in stream]
    assert [compact(e) for e in events] == [("error", "ih2003")]
    assert stream.close_info is not None
    assert stream.close_info.code == 4003


async def test_unknown_model_gets_ih4005_and_1008(driver: Driver) -> None:
    stream = driver.client().stream(api_version="v2", model="inter-9")
    await stream.connect()

    with pytest.raises(InterhumanError, match="The server reported ih4005"):
        await stream.wait_for_session_ready()

    assert (await stream.wait_closed()).code == 1008


async def test_unknown_model_in_config_is_fatal_ih4005(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_A), api_version="v2", configs=[{"model": "inter-9"}])

    assert [compact(e) for e in run.events] == [("session.ready",), ("error", "ih4005")]
    assert run.data("error") == [
        {
            "code": "ih4005",
            "message": "Unknown stream model 'inter-9'.",
            "link": "https://docs.interhuman.ai/errors#ih4005",
        }
    ]
    assert run.close.code == 1008


async def test_model_the_key_lacks_is_a_non_fatal_ih2003(driver: Driver) -> None:
    run = await driver.run(
        frames_of(CLIP_A),
        api_version="v2",
        key="sim-key-inter-2-only",
        configs=[{"model": "inter-2-audio"}],
    )

    assert without_closing(run)[:3] == [
        ("session.ready",),
        ("error", "ih2003"),
        ("engagement.updated", "engaged", 0.0),  # inter-2 analyses on; no engagement signal
    ]
    assert run.close.code == 1000
    assert (await driver.usage(run.session_id))["model"] == "inter-2"


async def test_invalid_config_gets_ih6001_and_the_session_stays_open(driver: Driver) -> None:
    async def late_model_change(stream: object) -> None:
        await stream.update_config(model="inter-2-audio")  # type: ignore[attr-defined]

    run = await driver.run(
        frames_of(CLIP_A),
        api_version="v2",
        configs=[{"include": ["everything"]}, {"goal_dimensions": ["charisma"]}],
        before_close=late_model_change,
    )

    errors = run.data("error")
    assert [e["code"] for e in errors] == ["ih6001", "ih6001", "ih6001"]
    assert [e["message"] for e in errors] == [
        "Unknown include value(s) ['everything']; supported: "
        "['conversation_quality_overall', 'conversation_quality_timeline'].",
        "Unknown goal_dimensions value(s) ['charisma']; supported: "
        "['clarity', 'authority', 'energy', 'rapport', 'learning'].",
        "The model can only change before the first media frame.",
    ]
    assert "session.updated" not in run.types
    assert run.types[-1] == "session.ended"
    assert run.close.code == 1000
    usage = await driver.usage(run.session_id)
    assert usage["analysed_ms"] == usage["media_received_ms"] == 14200


async def test_model_option_on_v1_is_invalid_config(driver: Driver) -> None:
    stream = driver.client().stream()
    await stream.connect()
    await stream.wait_for_session_ready()
    await stream._send_json({"model": "inter-2"})  # the SDK itself refuses this on v1
    await stream.request_close()
    events = [compact(e) async for e in stream]

    assert events == [
        ("session.ready",),
        ("error", "ih6001"),
        ("session.closing",),
        ("session.ended", "client_shutdown"),
    ]


async def test_oversize_frame_gets_ih6002(start_simulator: SimulatorFactory) -> None:
    # 4096-byte frames are under 3 s: no ih6005 may race the fatal ih6002 here.
    limits = SessionLimits(max_segment_size_bytes=8192, enforce_min_segment_duration=False)
    driver = await start_simulator(limits=limits)
    run = await driver.run([*frames_of(CLIP_A, chunk_bytes=4096)[:2], b"\0" * 8193])

    assert [compact(e) for e in run.events] == [("session.ready",), ("error", "ih6002")]
    assert run.data("error")[0]["segment"] == 2
    assert run.data("error")[0]["message"] == (
        "Media frame of 8193 bytes exceeds the 8192-byte limit."
    )
    assert run.close.code == 1009


async def test_garbage_gets_ih5004_malformed_segment(driver: Driver) -> None:
    run = await driver.run([b"this is not a media container" * 100])

    assert [compact(e) for e in run.events] == [("session.ready",), ("error", "ih5004")]
    assert run.data("error")[0] == {
        "code": "ih5004",
        "message": "The first media frame must carry a WebM or fragmented-MP4 init header.",
        "link": "https://docs.interhuman.ai/errors#ih5004",
        "segment": 0,
    }
    assert run.close.code == 1007


async def test_corrupt_stream_after_a_valid_header_gets_ih5004(driver: Driver) -> None:
    header = frames_of(CLIP_A, chunk_bytes=1024)[0][:40]  # ftyp box and a cut-off moov
    run = await driver.run([header, b"\xff" * 4096])

    assert without_closing(run) == [("session.ready",), ("error", "ih5004")]
    assert run.close.code == 1007


async def test_stream_without_video_gets_ih5001(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_NO_VIDEO))

    assert without_closing(run) == [("session.ready",), ("error", "ih5001")]
    assert run.data("error")[0]["message"] == "The stream carries no video track."
    assert run.close.code == 1007


async def test_idle_session_gets_ih6003(start_simulator: SimulatorFactory) -> None:
    driver = await start_simulator(limits=SessionLimits(idle_timeout_s=1.0))
    run = await driver.run([], close=False)

    assert run.data("session.ready")[0]["session_idle_timeout_seconds"] == 1
    assert [compact(e) for e in run.events] == [
        ("session.ready",),
        ("error", "ih6003"),
        ("session.closing",),
        ("session.ended", "idle_timeout"),
    ]
    assert run.close.code == 1000


async def test_session_reaching_max_duration_gets_ih6004(start_simulator: SimulatorFactory) -> None:
    driver = await start_simulator(limits=SessionLimits(max_duration_s=1.0))
    run = await driver.run(frames_of(CLIP_A), close=False)

    assert run.data("session.ready")[0]["session_max_duration_seconds"] == 1
    assert run.types[-1] == "session.ended"
    assert run.data("session.ended") == [{"reason": "max_duration"}]
    assert [compact(e) for e in run.events if e.type == "error"] == [("error", "ih6004")]
    assert run.close.code == 1000
    usage = await driver.usage(run.session_id)
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"] == 14200


async def test_full_simulator_refuses_with_ih1003_and_1013(
    start_simulator: SimulatorFactory,
) -> None:
    driver = await start_simulator(load=LoadConfig(processing_ratio=0.0, capacity=1))
    first = driver.client().stream()
    await first.connect()
    first_ready = await first.wait_for_session_ready()
    second = driver.client().stream()
    await second.connect()

    with pytest.raises(InterhumanError) as caught:
        await second.wait_for_session_ready()

    assert str(caught.value).endswith(
        "The server reported ih1003: No analysis backend is available; retry later."
    )
    assert (await second.wait_closed()).code == 1013
    await first.request_close()
    assert (await asyncio.wait_for(first.wait_closed(), 30)).code == 1000
    await driver.usage(first_ready.correlation_id)  # the server has finished the first session
    third = driver.client().stream()
    await third.connect()
    await third.wait_for_session_ready()  # capacity is free again
    await third.close()
