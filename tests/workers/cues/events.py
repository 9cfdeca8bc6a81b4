"""Typed builders of ``Inter1Event`` datums for the cues tests (deterministic ids and times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.inter1_events import PAYLOAD_BRANCHES

__all__ = ["SessionEvents"]

_T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
_SCORES = {
    "quality_index": 70.0,
    "clarity": 60.0,
    "authority": 60.0,
    "energy": 70.0,
    "rapport": 70.0,
    "learning": 50.0,
}


class SessionEvents:
    """Appends the events of one session; ``events`` is the list in order.

    Event ids are ``<session>:<incarnation>:<seq>`` like the session worker's.
    """

    def __init__(self, session_id: str, *, media_offset_s: float = 0.0) -> None:
        self.session_id = session_id
        self.media_offset_s = media_offset_s
        self.events: list[dict[str, Any]] = []

    def _add(self, event_type: str, data: dict[str, Any]) -> str:
        seq = len(self.events)
        event_id = f"{self.session_id}:0:{seq:06d}"
        at = _T0 + timedelta(seconds=seq)
        self.events.append(
            {
                "event_id": event_id,
                "session_id": self.session_id,
                "api_version": "v1",
                "event_type": event_type,
                "timestamp": at,
                "correlation_id": f"c-{seq:04d}",
                "incarnation": 0,
                "event_seq": seq,
                "media_offset_s": self.media_offset_s,
                "chunk_seq": seq,
                "first_chunk_seq": 0,
                "received_at": at + timedelta(milliseconds=20),
                "tenant": "acme",
                "app": "coach",
                "payload": (PAYLOAD_BRANCHES[event_type], data),
            }
        )
        return event_id

    def detected(self, signal_type: str, start: float, probability: str = "high") -> str:
        return self._add(
            "signal.detected",
            {
                "signal_type": signal_type,
                "start": start,
                "probability": probability,
                "rationale": None,
                "modality": ["video"],
            },
        )

    def updated(self, signal_type: str, start: float, probability: str = "high") -> str:
        return self._add(
            "signal.updated",
            {
                "signal_type": signal_type,
                "start": start,
                "probability": probability,
                "rationale": None,
                "modality": ["video"],
            },
        )

    def ended(self, signal_type: str, end: float) -> str:
        return self._add("signal.ended", {"signal_type": signal_type, "end": end})

    def engagement(self, state: str, start: float) -> str:
        return self._add("engagement.updated", {"state": state, "start": start})

    def quality(self, end: float, **scores: float) -> str:
        values = {**_SCORES, **scores}
        return self._add(
            "conversation_quality.updated",
            {
                "overall": values,
                "timeline": [{"start": max(0.0, end - 8.0), "end": end, "values": values}],
            },
        )

    def session_ended(self) -> str:
        return self._add("session.ended", {"reason": "client_shutdown"})
