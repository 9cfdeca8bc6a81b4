"""The happy path through the official SDK: event sequences, determinism, config frames."""

from __future__ import annotations

from typing import Any

from sim_helpers import (
    ALL_OPTIONS,
    CLIP_A,
    CLIP_B,
    CLIP_GAP,
    CLIP_NO_VIDEO,
    CLIP_RAMP,
    CLIP_WEBM,
    Driver,
    clip_bytes,
    compact,
    frames_of,
    segments,
    without_closing,
)

RAMP_EVENTS = [
    ("session.ready",),
    ("session.updated",),
    ("signal.detected", "engagement", "low", 0.0),
    ("signal.detected", "interest", "medium", 0.0),
    ("signal.detected", "stress", "medium", 0.0),
    ("engagement.updated", "engaged", 0.0),
    ("conversation_quality.updated", 63.2, ((0.0, 8.0),)),
    ("feedback.generated",),
    ("signal.updated", "engagement", "medium", 0.0),
    ("signal.updated", "interest", "medium", 0.0),
    ("signal.updated", "stress", "medium", 0.0),
    ("conversation_quality.updated", 64.3, ((3.0, 11.0),)),
    ("feedback.generated",),
    ("signal.detected", "frustration", "low", 6.0),
    ("signal.updated", "engagement", "medium", 0.0),
    ("signal.updated", "interest", "high", 0.0),
    ("signal.updated", "stress", "medium", 0.0),
    ("conversation_quality.updated", 65.8, ((6.0, 14.0),)),
    ("feedback.generated",),
    ("signal.updated", "engagement", "high", 0.0),
    ("signal.updated", "frustration", "low", 6.0),
    ("signal.updated", "interest", "low", 0.0),
    ("signal.updated", "stress", "low", 0.0),
    ("conversation_quality.updated", 66.4, ((9.0, 17.0),)),
    ("feedback.generated",),
    ("signal.updated", "engagement", "high", 0.0),
    ("signal.updated", "frustration", "low", 6.0),
    ("signal.updated", "interest", "medium", 0.0),
    ("signal.updated", "stress", "low", 0.0),
    ("conversation_quality.updated", 67.0, ((12.0, 20.0),)),
    ("feedback.generated",),
    ("signal.ended", "engagement", 20.0),
    ("signal.ended", "frustration", 20.0),
    ("signal.ended", "interest", 20.0),
    ("signal.ended", "stress", 20.0),
    ("session.ended", "client_shutdown"),
]


async def test_v1_full_event_sequence_of_a_clip(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_RAMP), configs=[ALL_OPTIONS])

    assert without_closing(run) == RAMP_EVENTS
    assert run.types.count("session.closing") == 1
    assert run.types.index("session.closing") < run.types.index("session.ended")
    assert run.close.code == 1000
    assert run.close.reason == "client_shutdown"
    signals = run.data("signal.detected") + run.data("signal.updated")
    assert [s["modality"] for s in signals] == [["video"]] * 18
    assert run.data("session.closing") == [{"max_drain_seconds": 20}]
    assert run.data("feedback.generated")[0] == {
        "feedback": "Energy is at 56/100: bring more movement and vocal energy."
    }
    first_quality = run.data("conversation_quality.updated")[0]
    assert first_quality["overall"] == first_quality["timeline"][0]["values"]
    assert sorted(first_quality["overall"]) == [
        "authority", "clarity", "energy", "learning", "quality_index", "rapport",
    ]  # fmt: skip
    usage = await driver.usage(run.session_id)
    assert usage["media_received_ms"] == usage["analysed_ms"] == 20000
    assert usage["dropped_ms"] == 0
    assert usage["analysed_ranges"] == [
        {"start": 0.0, "end": 8.0},
        {"start": 8.0, "end": 11.0},
        {"start": 11.0, "end": 14.0},
        {"start": 14.0, "end": 17.0},
        {"start": 17.0, "end": 20.0},
    ]


async def test_v2_same_sequence_without_modality(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_RAMP), configs=[ALL_OPTIONS], api_version="v2")

    # v2's vocabulary has no engagement signal (nor disengagement, tension): the rest is
    # identical, and engagement still comes as engagement.updated.
    assert without_closing(run) == [
        e for e in RAMP_EVENTS if not (e[0].startswith("signal.") and e[1] == "engagement")
    ]
    signals = run.data("signal.detected") + run.data("signal.updated")
    assert ["modality" in s for s in signals] == [False] * 13
    assert run.data("session.updated") == [{**ALL_OPTIONS, "model": "inter-2"}]
    assert (await driver.usage(run.session_id))["model"] == "inter-2"


async def test_same_clip_gives_identical_events(driver: Driver) -> None:
    first = await driver.run(frames_of(CLIP_A), configs=[ALL_OPTIONS])
    second = await driver.run(segments(clip_bytes(CLIP_A), 5.0), configs=[ALL_OPTIONS])

    def stable(run: Any) -> list[Any]:
        return [item for item in run.comparable() if item[0] != "session.closing"]

    assert first.session_id != second.session_id
    assert stable(first) == stable(second)
    assert len(stable(first)) == 17


async def test_different_clips_give_different_events(driver: Driver) -> None:
    a = await driver.run(frames_of(CLIP_A))
    b = await driver.run(frames_of(CLIP_B))

    assert [compact(e) for e in a.events if e.type.startswith(("signal.", "engagement"))] == [
        ("signal.detected", "engagement", "medium", 0.0),
        ("engagement.updated", "engaged", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.ended", "engagement", 14.2),
    ]
    assert [compact(e) for e in b.events if e.type.startswith(("signal.", "engagement"))] == [
        ("signal.detected", "confusion", "low", 0.0),
        ("signal.detected", "disengagement", "low", 0.0),
        ("signal.detected", "hesitation", "medium", 0.0),
        ("signal.detected", "uncertainty", "medium", 0.0),
        ("engagement.updated", "disengaged", 0.0),
        ("signal.updated", "confusion", "low", 0.0),
        ("signal.updated", "disengagement", "low", 0.0),
        ("signal.updated", "hesitation", "medium", 0.0),
        ("signal.updated", "uncertainty", "medium", 0.0),
        ("signal.updated", "confusion", "low", 0.0),
        ("signal.updated", "disengagement", "low", 0.0),
        ("signal.updated", "hesitation", "low", 0.0),
        ("signal.updated", "uncertainty", "medium", 0.0),
        ("signal.ended", "confusion", 14.2),
        ("signal.ended", "disengagement", 14.2),
        ("signal.ended", "hesitation", 14.2),
        ("signal.ended", "uncertainty", 14.2),
    ]
    # Without include flags or goal dimensions there is no quality or feedback.
    assert "conversation_quality.updated" not in a.types
    assert "feedback.generated" not in a.types


async def test_video_gap_is_reported_as_degraded_and_billed(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_GAP))

    assert [compact(e) for e in run.events if e.type == "coverage.degraded"] == [
        ("coverage.degraded", ((6.1, 8.0),)),
        ("coverage.degraded", ((8.0, 9.2),)),
    ]
    assert run.data("coverage.degraded")[0]["reason"] == "video_gap"
    usage = await driver.usage(run.session_id)
    assert (usage["analysed_ms"], usage["degraded_ms"], usage["dropped_ms"]) == (14200, 3100, 0)


async def test_session_ready_advertises_limits_and_options(driver: Driver) -> None:
    v1 = await driver.run([], close=True)
    v2 = await driver.run([], api_version="v2", key="sim-key-inter-2-only")

    options = {
        "include": ["conversation_quality_overall", "conversation_quality_timeline"],
        "goal_dimensions": ["clarity", "authority", "energy", "rapport", "learning"],
    }
    assert v1.data("session.ready") == [
        {
            "session_idle_timeout_seconds": 300,
            "session_max_duration_seconds": 3600,
            "min_segment_size_bytes": 1,
            "max_segment_size_bytes": 33554432,
            "supported_session_config_options": options,
        }
    ]
    assert v2.data("session.ready")[0]["supported_session_config_options"] == {
        **options,
        "model": ["inter-2"],
    }
    assert v1.types == ["session.ready", "session.closing", "session.ended"]
    usage = await driver.usage(v1.session_id)
    assert (usage["media_received_ms"], usage["analysed_ms"], usage["frames_received"]) == (0, 0, 0)


async def test_config_updates_replace_options(driver: Driver) -> None:
    configs: list[dict[str, Any]] = [
        ALL_OPTIONS,
        {"include": ["conversation_quality_overall"]},
    ]
    run = await driver.run(frames_of(CLIP_A), configs=configs)

    assert run.data("session.updated") == [
        ALL_OPTIONS,
        {"include": ["conversation_quality_overall"]},
    ]
    quality = run.data("conversation_quality.updated")
    assert len(quality) == 4
    assert [sorted(q) for q in quality] == [["overall"]] * 4
    assert "feedback.generated" not in run.types


async def test_audio_model_reads_audio_only_streams(driver: Driver) -> None:
    run = await driver.run(
        frames_of(CLIP_NO_VIDEO), api_version="v2", model="inter-2-audio", configs=[ALL_OPTIONS]
    )

    assert without_closing(run) == [
        ("session.ready",),
        ("session.updated",),
        ("engagement.updated", "neutral", 0.0),
        ("conversation_quality.updated", 47.2, ((0.0, 6.064),)),
        ("feedback.generated",),
        ("session.ended", "client_shutdown"),
    ]
    usage = await driver.usage(run.session_id)
    assert (usage["model"], usage["analysed_ms"], usage["media_received_ms"]) == (
        "inter-2-audio", 6064, 6064,
    )  # fmt: skip


async def test_webm_streams_are_analysed(driver: Driver) -> None:
    run = await driver.run(frames_of(CLIP_WEBM))

    assert run.close.code == 1000
    assert run.types.count("engagement.updated") == 1
    usage = await driver.usage(run.session_id)
    assert usage["analysed_ms"] == usage["media_received_ms"]
    assert usage["windows_analysed"] == 2
