"""Wire-level facts of the Inter-1 Stream protocol: paths, error codes, close codes, envelopes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AUDIBLE_SIGNALS",
    "AUDIO_MODEL",
    "ERRORS",
    "GOAL_DIMENSIONS",
    "INCLUDE_FLAGS",
    "SIGNALS_BY_VERSION",
    "SIGNAL_TYPES",
    "STREAM_MODELS",
    "STREAM_PATHS",
    "ErrorSpec",
    "envelope",
    "error_data",
]

STREAM_PATHS: dict[str, str] = {"/v1/stream/analyze": "v1", "/v2/stream/analyze": "v2"}
"""Request path -> API version."""

INCLUDE_FLAGS: tuple[str, ...] = ("conversation_quality_overall", "conversation_quality_timeline")
GOAL_DIMENSIONS: tuple[str, ...] = ("clarity", "authority", "energy", "rapport", "learning")
STREAM_MODELS: tuple[str, ...] = ("inter-2", "inter-2-audio")
"""Models ``/v2/stream/analyze`` serves (``inter-2-deep`` is an upload-only model)."""
AUDIO_MODEL = "inter-2-audio"
SIGNAL_TYPES: tuple[str, ...] = (
    "agreement",
    "confidence",
    "confusion",
    "disagreement",
    "disengagement",
    "engagement",
    "frustration",
    "hesitation",
    "interest",
    "skepticism",
    "stress",
    "tension",
    "uncertainty",
)
V1_SIGNALS: frozenset[str] = frozenset(SIGNAL_TYPES) - {"tension"}
"""The 12 signal types the docs list for ``/v1/stream/analyze``."""
V2_SIGNALS: frozenset[str] = V1_SIGNALS - {"disengagement", "engagement"}
"""The 10 signal types the docs list for ``/v2/stream/analyze`` (engagement is a state there).

Source: Interhuman's own stream skill for V2 (``InterhumanAI/skills``,
``skills/interhuman-stream-analyze/SKILL.md``, "Server Messages"): ``signal_type`` is one
of agreement, confidence, confusion, disagreement, frustration, hesitation, interest,
skepticism, stress or uncertainty.
"""
SIGNALS_BY_VERSION: dict[str, frozenset[str]] = {"v1": V1_SIGNALS, "v2": V2_SIGNALS}
AUDIBLE_SIGNALS: frozenset[str] = frozenset(
    {"agreement", "confidence", "frustration", "hesitation", "interest", "uncertainty"}
)
"""The subset ``inter-2-audio`` reports."""

_DOCS = "https://docs.interhuman.ai/errors#"


@dataclass(frozen=True)
class ErrorSpec:
    """One protocol error: code, default message, close code (None: the session stays open)."""

    code: str
    message: str
    close_code: int | None


ERRORS: dict[str, ErrorSpec] = {
    spec.code: spec
    for spec in (
        ErrorSpec("ih1001", "Internal error; the session cannot continue.", 1011),
        ErrorSpec("ih1003", "No analysis backend is available; retry later.", 1013),
        ErrorSpec("ih2003", "The credential lacks the interhumanai.stream scope.", 4003),
        ErrorSpec("ih4005", "Unknown or unavailable model.", 1008),
        ErrorSpec("ih5001", "The stream carries no usable video.", 1007),
        ErrorSpec("ih5004", "Malformed media segment.", 1007),
        ErrorSpec("ih6001", "Invalid session configuration.", None),
        ErrorSpec("ih6002", "Media frame too large.", 1009),
        ErrorSpec("ih6003", "Session idle timeout.", 1000),
        ErrorSpec("ih6004", "Session reached its maximum duration.", 1000),
        # The simulator's own codes where the docs name none (session stays open):
        ErrorSpec("ih6005", "Media segment duration outside the advertised limits.", None),
        ErrorSpec(
            "ih6006", "Media frame out of order (before session.ready or after close).", None
        ),
    )
}


def error_data(code: str, message: str | None = None, segment: int | None = None) -> dict[str, Any]:
    """The ``data`` of an ``error`` envelope for ``code`` (unknown codes are sent as given)."""
    spec = ERRORS.get(code)
    text = message or (spec.message if spec else "Simulated error.")
    data: dict[str, Any] = {"code": code, "message": text, "link": _DOCS + code}
    if segment is not None:
        data["segment"] = segment
    return data


def envelope(kind: str, data: dict[str, Any], correlation_id: str) -> str:
    """Serialise one server envelope ``{type, timestamp, correlation_id, data}``."""
    return json.dumps(
        {
            "type": kind,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "correlation_id": correlation_id,
            "data": data,
        },
        separators=(",", ":"),
    )
