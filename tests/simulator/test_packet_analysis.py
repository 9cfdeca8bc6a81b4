"""``decode="none"``: analysis from compressed packets alone, still deterministic and exact."""

from __future__ import annotations

from typing import Any

import pytest
from sim_helpers import (
    ALL_OPTIONS,
    CLIP_A,
    CLIP_B,
    CLIP_B_PACKET_EVENTS,
    CLIP_GAP,
    CLIP_NO_VIDEO,
    CLIP_RAMP,
    CLIP_WEBM,
    Driver,
    SimulatorFactory,
    clip_bytes,
    compact,
    frames_of,
    segments,
    without_closing,
)

from runtime.errors import ConfigError
from simulator.config import AnalysisConfig, LoadConfig
from simulator.features import _Bins
from simulator.packet_features import (
    PacketAudioAnalyser,
    PacketVideoAnalyser,
    _level_thresholds,
    packet_level_cb,
)


@pytest.fixture
async def packets(start_simulator: SimulatorFactory) -> Driver:
    """A simulator that decodes nothing."""
    return await start_simulator(analysis=AnalysisConfig(decode="none"))


def _signals(run: Any) -> list[tuple[Any, ...]]:
    return [compact(e) for e in run.events if e.type.startswith(("signal.", "engagement"))]


async def test_exact_event_sequence_of_a_clip_without_decoding(packets: Driver) -> None:
    run = await packets.run(frames_of(CLIP_B), configs=[ALL_OPTIONS])

    assert without_closing(run) == CLIP_B_PACKET_EVENTS
    assert run.close.code == 1000
    assert run.data("signal.detected")[0]["rationale"] == (
        "voice activity 32%, 4 pause(s), motion energy 0.48, level -40 dBFS, brightness change 0.33"
    )
    assert run.data("feedback.generated")[0] == {
        "feedback": "Clarity is at 16/100: speak in fuller phrases with fewer pauses."
    }
    usage = await packets.usage(run.session_id)
    assert (usage["media_received_ms"], usage["analysed_ms"], usage["dropped_ms"]) == (
        14200, 14200, 0,
    )  # fmt: skip
    assert usage["windows_analysed"] == 4


async def test_same_clip_gives_identical_events_without_decoding(packets: Driver) -> None:
    first = await packets.run(frames_of(CLIP_A), configs=[ALL_OPTIONS])
    second = await packets.run(segments(clip_bytes(CLIP_A), 5.0), configs=[ALL_OPTIONS])

    def stable(run: Any) -> list[Any]:
        return [item for item in run.comparable() if item[0] != "session.closing"]

    assert first.session_id != second.session_id
    assert stable(first) == stable(second)
    assert len(stable(first)) == 19


async def test_different_clips_give_different_events_without_decoding(packets: Driver) -> None:
    a = await packets.run(frames_of(CLIP_A))
    b = await packets.run(frames_of(CLIP_B))

    assert _signals(a) == [
        ("signal.detected", "disagreement", "low", 0.0),
        ("signal.detected", "engagement", "medium", 0.0),
        ("engagement.updated", "engaged", 0.0),
        ("signal.ended", "disagreement", 3.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.ended", "engagement", 14.2),
    ]
    assert _signals(b) == [
        e for e in CLIP_B_PACKET_EVENTS if e[0].startswith(("signal.", "engagement"))
    ]


async def test_video_gap_from_packet_timestamps_is_degraded(packets: Driver) -> None:
    run = await packets.run(frames_of(CLIP_GAP))

    assert [compact(e) for e in run.events if e.type == "coverage.degraded"] == [
        ("coverage.degraded", ((6.1, 8.0),)),
        ("coverage.degraded", ((8.0, 9.2),)),
    ]
    usage = await packets.usage(run.session_id)
    assert (usage["analysed_ms"], usage["degraded_ms"], usage["dropped_ms"]) == (14200, 3100, 0)


async def test_audio_only_and_webm_streams_without_decoding(packets: Driver) -> None:
    audio = await packets.run(
        frames_of(CLIP_NO_VIDEO), api_version="v2", model="inter-2-audio", configs=[ALL_OPTIONS]
    )
    webm = await packets.run(frames_of(CLIP_WEBM))

    assert without_closing(audio) == [
        ("session.ready",),
        ("session.updated",),
        ("engagement.updated", "neutral", 0.0),
        ("conversation_quality.updated", 47.2, ((0.0, 6.064),)),
        ("feedback.generated",),
        ("session.ended", "client_shutdown"),
    ]
    usage = await packets.usage(webm.session_id)
    assert (usage["analysed_ms"], usage["media_received_ms"], usage["windows_analysed"]) == (
        usage["media_received_ms"], 9001, 2,
    )  # fmt: skip


async def test_backpressure_still_sheds_without_decoding(start_simulator: SimulatorFactory) -> None:
    driver = await start_simulator(
        analysis=AnalysisConfig(decode="none"),
        load=LoadConfig(processing_ratio=0.3, queue_windows=1, max_lag_s=3600.0),
    )
    run = await driver.run(frames_of(CLIP_RAMP))  # 20 s at once: 5 windows

    usage = await driver.usage(run.session_id)
    dropped = [(r["start"], r["end"]) for d in run.data("coverage.dropped") for r in d["ranges"]]
    assert dropped == [(r["start"], r["end"]) for r in usage["dropped_ranges"]]
    # the first window (8 s) keeps the model 2.4 s; [8, 11) and [11, 14) wait (6 s of
    # media, within the one window's 8 s the queue holds); [14, 17) and [17, 20) are shed
    assert dropped == [(14.0, 17.0), (17.0, 20.0)]
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"] == 20000


def test_packet_level_proxy_follows_bit_rate_in_whole_centibels() -> None:
    assert packet_level_cb(384, 0.064) == -120  # 48 kbit/s reads -12.0 dBFS
    assert packet_level_cb(4, 0.064) == -516  # -51.645 dB rounds to -51.6
    assert packet_level_cb(48, 0.064) == -301  # -30.062
    assert packet_level_cb(0, 0.064) == -900
    assert packet_level_cb(384, 0.0) == -900
    assert packet_level_cb(10_000_000, 0.064) == 0


def test_packet_level_thresholds_are_exact_decimal_values() -> None:
    """The table is computed in software decimal arithmetic: pinned to the exact floats."""
    table = _level_thresholds()

    assert len(table) == 900
    assert table[-1] == 189_994.5911211468  # -0.05 dB: from here the level rounds to 0 cB
    assert table[780] == 48_277.10702408344  # -11.95 dB (-119 cB): 48 kbit/s stays below
    assert table[0] == 6.077727684052532  # -89.95 dB (-899 cB)
    assert list(table) == sorted(table)


def test_packet_audio_counts_voice_and_one_pause_per_quiet_run() -> None:
    store = _Bins()
    audio = PacketAudioAnalyser(store)
    sizes = [384] * 5 + [4] * 10 + [384] * 2
    for i, size in enumerate(sizes):
        audio.packet(size, i * 0.064, 0.064)

    first, second = store.bins[0], store.bins[1]
    assert (first.subframes, first.voiced, first.pauses) == (16, 6, 1)
    assert (second.subframes, second.voiced, second.pauses) == (1, 1, 0)
    assert round(audio.end_s, 3) == 1.088


def test_packet_video_fills_motion_and_detail() -> None:
    store = _Bins()
    video = PacketVideoAnalyser(store, 160, 120)
    video.packet(2400, 0.0, keyframe=True)  # 1 bit per pixel
    video.packet(48, 0.1, keyframe=False)  # 0.02 bit per pixel
    cell = store.bins[0]

    assert (cell.luma_samples, cell.motion_samples) == (1, 1)
    assert (cell.luma_ppm_sum, cell.motion_ppm_sum) == (227_273, 100_000)
    assert cell.brightness == 0.227273
    assert cell.motion == 0.1


def test_decode_depth_is_validated() -> None:
    assert AnalysisConfig().depth == "all"
    assert AnalysisConfig(keyframes_only=True).depth == "keyframes"
    assert AnalysisConfig(decode="none").depth == "none"
    with pytest.raises(
        ConfigError, match=r"^decode must be one of all, keyframes, none, boxes: 'some'$"
    ):
        AnalysisConfig(decode="some")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^keyframes_only contradicts decode='none'$"):
        AnalysisConfig(decode="none", keyframes_only=True)
