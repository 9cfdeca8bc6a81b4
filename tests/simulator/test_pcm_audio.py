"""Raw PCM audio on v2 (``inter-2-audio`` + ``audio_format``, the SDK's ``send_audio``).

The PCM is built from integers (square waves and silence), never synthesised in floating
point nor encoded, so the bytes, and the exact events and usage below, are the same on
every machine.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
import websockets
from interhumanai import RawAudioFormat, StreamClient
from sim_helpers import ALL_OPTIONS, Driver, SessionRun, without_closing

from simulator.pcm import pcm_level_cb

INCLUDE = ALL_OPTIONS["include"]
PAUSING = [(2000, 8000), (1000, 0), (2000, 3000), (1000, 0), (1500, 8000), (500, 0), (2000, 12000),
           (2000, 0)]  # fmt: skip
"""(ms, amplitude) runs: speech at changing levels with pauses, 12 s."""
STEADY = [(9000, 8000)]
"""Continuous speech at -12.2 dBFS, 9 s."""


def square_wave(ms: int, amplitude: int, rate: int) -> bytes:
    """``ms`` of a 400 Hz square wave of ``amplitude`` (0: silence) as pcm_s16le."""
    count = rate * ms // 1000
    half = rate // 800
    samples = [amplitude if (i // half) % 2 == 0 else -amplitude for i in range(count)]
    return struct.pack(f"<{count}h", *samples)


def speech(pattern: list[tuple[int, int]], rate: int) -> bytes:
    """The runs of ``pattern`` one after the other."""
    return b"".join(square_wave(ms, amplitude, rate) for ms, amplitude in pattern)


async def run_pcm(
    driver: Driver,
    pcm: bytes,
    rate: int,
    frame_bytes: int = 3001,
    config: dict[str, Any] | None = None,
) -> SessionRun:
    """One v2 ``inter-2-audio`` session sending ``pcm`` with ``send_audio`` in odd-sized frames."""
    stream: StreamClient = driver.client().stream(api_version="v2", model="inter-2-audio")
    await stream.connect()
    await stream.wait_for_session_ready()
    await stream.update_config(include=INCLUDE, audio_format=RawAudioFormat(sample_rate=rate))
    for start in range(0, len(pcm), frame_bytes):
        await stream.send_audio(pcm[start : start + frame_bytes])
    if config is not None:
        await stream.update_config(**config)
    await stream.request_close()
    return await driver.collect(stream, [])


def test_level_in_centibels_from_the_integer_sum_of_squares() -> None:
    assert pcm_level_cb(800 * 32767**2, 800) == 0  # full scale
    assert pcm_level_cb(800 * 8000**2, 800) == -122  # 20 log10(8000 / 32768) = -12.25 dB
    assert pcm_level_cb(800 * 3000**2, 800) == -208
    assert pcm_level_cb(800, 800) == -900  # amplitude 1: -90.3 dB, the floor
    assert pcm_level_cb(0, 800) == -900


PAUSING_EVENTS: list[tuple[Any, ...]] = [
    ("session.ready",),
    ("session.updated",),
    ("signal.detected", "hesitation", "low", 0.0),
    ("signal.detected", "uncertainty", "medium", 0.0),
    ("engagement.updated", "neutral", 0.0),
    ("conversation_quality.updated", 40.6, ((0.0, 8.0),)),
    ("signal.updated", "hesitation", "low", 0.0),
    ("signal.updated", "uncertainty", "low", 0.0),
    ("conversation_quality.updated", 40.8, ((3.0, 11.0),)),
    ("signal.updated", "hesitation", "low", 0.0),
    ("signal.updated", "uncertainty", "medium", 0.0),
    ("conversation_quality.updated", 40.0, ((6.0, 12.0),)),
    ("signal.ended", "hesitation", 12.0),
    ("signal.ended", "uncertainty", 12.0),
    ("session.ended", "client_shutdown"),
]
STEADY_EVENTS: list[tuple[Any, ...]] = [
    ("session.ready",),
    ("session.updated",),
    ("signal.detected", "confidence", "high", 0.0),
    ("engagement.updated", "neutral", 0.0),
    ("conversation_quality.updated", 86.3, ((0.0, 8.0),)),
    ("conversation_quality.updated", 86.3, ((3.0, 9.0),)),
    ("signal.ended", "confidence", 9.0),
    ("session.ended", "client_shutdown"),
]


@pytest.mark.parametrize("rate", [16000, 24000])
async def test_pcm_session_is_analysed_from_its_samples(driver: Driver, rate: int) -> None:
    run = await run_pcm(driver, speech(PAUSING, rate), rate)

    assert without_closing(run) == PAUSING_EVENTS  # the same at both rates
    assert run.close.code == 1000
    usage = await driver.usage(run.session_id)
    assert (usage["model"], usage["bytes_received"], usage["media_received_ms"]) == (
        "inter-2-audio", 2 * rate * 12, 12000,
    )  # fmt: skip
    assert (usage["analysed_ms"], usage["dropped_ms"]) == (12000, 0)
    assert usage["analysed_ranges"] == [
        {"start": 0.0, "end": 8.0},
        {"start": 8.0, "end": 11.0},
        {"start": 11.0, "end": 12.0},
    ]


async def test_different_pcm_gives_different_events(driver: Driver) -> None:
    run = await run_pcm(driver, speech(STEADY, 16000), 16000, frame_bytes=32000)

    assert without_closing(run) == STEADY_EVENTS
    usage = await driver.usage(run.session_id)
    assert (usage["media_received_ms"], usage["analysed_ms"]) == (9000, 9000)


async def test_audio_format_is_fixed_once_audio_was_accepted(driver: Driver) -> None:
    late = {"audio_format": RawAudioFormat(sample_rate=24000)}
    run = await run_pcm(driver, speech(STEADY, 16000), 16000, config=late)

    assert run.data("error") == [
        {
            "code": "ih6001",
            "message": "The audio format is fixed once the first media frame was accepted.",
            "link": "https://docs.interhuman.ai/errors#ih6001",
        }
    ]
    assert [e for e in without_closing(run) if e[0] != "error"] == STEADY_EVENTS  # still 16 kHz


@pytest.mark.parametrize(
    ("path", "audio_format", "message"),
    [
        (
            "/v2/stream/analyze?model=inter-2-audio",
            {"encoding": "pcm_s16le", "sample_rate": 44100, "channels": 1},
            "Unsupported sample_rate 44100; supported: [16000, 24000].",
        ),
        (
            "/v2/stream/analyze?model=inter-2-audio",
            {"encoding": "pcm_f32le", "sample_rate": 16000, "channels": 1},
            "Raw audio must be signed 16-bit little-endian mono PCM (pcm_s16le, 1).",
        ),
        (
            "/v2/stream/analyze",
            {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1},
            "Raw PCM audio needs model 'inter-2-audio'.",
        ),
    ],
)
async def test_invalid_audio_format_is_a_non_fatal_ih6001(
    driver: Driver, path: str, audio_format: dict[str, Any], message: str
) -> None:
    headers = {"Authorization": "Bearer sim-key"}
    async with websockets.connect(driver.sim.url + path, additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "session.ready"
        await ws.send(json.dumps({"audio_format": audio_format}))
        reply = json.loads(await ws.recv())
        await ws.send(json.dumps({"include": []}))
        still_open = json.loads(await ws.recv())

    assert (reply["type"], reply["data"]["code"], reply["data"]["message"]) == (
        "error", "ih6001", message,
    )  # fmt: skip
    assert still_open["type"] == "session.updated"
