"""Server envelopes -> Inter1Event payload branches (unknown kinds pass through)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.codec import Codec
from schemas.examples import example_inter1_events
from schemas.inter1_events import PAYLOAD_BRANCHES, UNKNOWN_EVENT, payload_from_envelope

NS = "ai.interhuman.pipeline.inter1."


def _env(kind: str, data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": "2026-11-24T09:30:01.250000Z",
        "correlation_id": "c-17",
        "data": data,
    }


CASES = [
    (
        _env(
            "signal.detected",
            {
                "signal_type": "stress",
                "start": 3,
                "probability": "high",
                "rationale": "Rapid speech.",
                "modality": ["video"],
            },
        ),
        (
            NS + "SignalDetected",
            {
                "signal_type": "stress",
                "start": 3.0,
                "probability": "high",
                "rationale": "Rapid speech.",
                "modality": ["video"],
            },
        ),
    ),
    (
        _env("signal.updated", {"signal_type": "brand-new-signal", "start": 3.5}),
        (
            NS + "SignalUpdated",
            {
                "signal_type": "brand-new-signal",
                "start": 3.5,
                "probability": None,
                "rationale": None,
                "modality": None,
            },
        ),
    ),
    (
        _env("signal.ended", {"signal_type": "stress", "end": 9.0}),
        (NS + "SignalEnded", {"signal_type": "stress", "end": 9.0}),
    ),
    (
        _env("engagement.updated", {"state": "distracted", "start": 0.0}),
        (NS + "EngagementUpdated", {"state": "distracted", "start": 0.0}),
    ),
    (
        _env(
            "conversation_quality.updated",
            {
                "timeline": [
                    {
                        "start": 0,
                        "end": 8,
                        "values": {
                            "quality_index": 50,
                            "clarity": 50,
                            "authority": 50,
                            "energy": 50,
                            "rapport": 50,
                            "learning": 50,
                        },
                    }
                ]
            },
        ),
        (
            NS + "ConversationQualityUpdated",
            {
                "overall": None,
                "timeline": [
                    {
                        "start": 0.0,
                        "end": 8.0,
                        "values": {
                            "quality_index": 50.0,
                            "clarity": 50.0,
                            "authority": 50.0,
                            "energy": 50.0,
                            "rapport": 50.0,
                            "learning": 50.0,
                        },
                    }
                ],
            },
        ),
    ),
    (
        _env("feedback.generated", {"feedback": "Speak up."}),
        (NS + "FeedbackGenerated", {"feedback": "Speak up."}),
    ),
    (
        _env("coverage.dropped", {"ranges": [{"start": 24, "end": 27}]}),
        (NS + "CoverageDropped", {"ranges": [{"start": 24.0, "end": 27.0}]}),
    ),
    (
        _env("coverage.degraded", {"ranges": []}),
        (NS + "CoverageDegraded", {"ranges": [], "reason": "video_gap"}),
    ),
    (
        _env("error", {"code": "ih6002", "message": "Frame too large."}),
        (
            NS + "Error",
            {"code": "ih6002", "message": "Frame too large.", "link": None, "segment": None},
        ),
    ),
    (
        _env(
            "session.ready",
            {
                "session_idle_timeout_seconds": 300,
                "session_max_duration_seconds": 3600,
                "min_segment_size_bytes": 1,
                "max_segment_size_bytes": 33554432,
                "supported_session_config_options": {"include": []},
            },
        ),
        (
            NS + "SessionReady",
            {
                "session_idle_timeout_seconds": 300,
                "session_max_duration_seconds": 3600,
                "max_segment_duration_seconds": None,
                "min_segment_size_bytes": 1,
                "max_segment_size_bytes": 33554432,
                "supported_session_config_options": {
                    "include": [],
                    "goal_dimensions": None,
                    "model": None,
                },
            },
        ),
    ),
    (
        _env("session.updated", {"include": ["conversation_quality_overall"], "model": "inter-2"}),
        (
            NS + "SessionUpdated",
            {
                "include": ["conversation_quality_overall"],
                "goal_dimensions": None,
                "model": "inter-2",
            },
        ),
    ),
    (
        _env("session.closing", {"max_drain_seconds": 20}),
        (NS + "SessionClosing", {"max_drain_seconds": 20}),
    ),
    (
        _env("session.ended", {"reason": "client_shutdown"}),
        (NS + "SessionEnded", {"reason": "client_shutdown"}),
    ),
]


def test_cases_cover_every_branch() -> None:
    assert sorted(branch for _, (branch, _) in CASES) == sorted(PAYLOAD_BRANCHES.values())


@pytest.mark.parametrize(("envelope", "expected"), CASES, ids=lambda v: str(v)[:30])
def test_known_kinds(envelope: dict[str, Any], expected: tuple[str, dict[str, Any]]) -> None:
    assert payload_from_envelope(envelope) == expected


def test_unknown_kind_keeps_raw_json() -> None:
    envelope = _env("gaze.updated", {"target": "camera"})
    branch, data = payload_from_envelope(envelope)
    assert branch == UNKNOWN_EVENT
    assert data["type"] == "gaze.updated"
    assert json.loads(data["raw_json"]) == envelope


@pytest.mark.parametrize(
    "data",
    [
        {"signal_type": "stress"},  # start missing
        {"signal_type": 7, "end": 1.0},  # wrong type
        {"signal_type": "stress", "end": True},  # bool is not a number
        "not an object",
    ],
)
def test_known_kind_that_does_not_fit_becomes_unknown(data: Any) -> None:
    envelope = _env("signal.ended", data)
    assert payload_from_envelope(envelope) == (
        UNKNOWN_EVENT,
        {"type": "signal.ended", "raw_json": json.dumps(envelope, separators=(",", ":"))},
    )


def test_converted_payloads_encode(codec: Codec) -> None:
    base = example_inter1_events()[0]
    for envelope, _ in CASES:
        event = dict(base, event_type=envelope["type"], payload=payload_from_envelope(envelope))
        assert codec.decode(codec.encode("Inter1Event", event)).datum == event


def test_sdk_parsed_events_convert_like_raw_envelopes() -> None:
    from interhumanai.stream import parse_stream_event

    sdk_parsable = [
        (env, exp)
        for env, exp in CASES
        if env["data"].get("signal_type") != "brand-new-signal"
        and env["data"].get("state") != "distracted"
    ]
    assert len(sdk_parsable) == 11
    for envelope, expected in sdk_parsable:
        dumped = parse_stream_event(envelope).model_dump(mode="json")
        assert payload_from_envelope(dumped) == expected
