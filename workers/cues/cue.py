"""``Cue`` records: a rule firing plus the deterministic id that makes replays idempotent."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from workers.cues.evaluate import Firing

__all__ = ["cue_id", "cue_record"]


def cue_id(session_id: str, rule: str, trigger_event_id: str) -> str:
    """Hex SHA-256 prefix (128 bits) of session, rule and triggering event.

    A rule fires at most once per event, so this is unique, and a replay of the same
    events computes the same id.
    """
    text = "\x1f".join((session_id, rule, trigger_event_id))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cue_record(firing: Firing, event: dict[str, Any], fired_at: datetime) -> dict[str, Any]:
    """The ``Cue`` datum for a firing caused by ``event`` (a decoded ``Inter1Event``)."""
    session_id = str(event["session_id"])
    return {
        "cue_id": cue_id(session_id, firing.rule, firing.trigger_event_id),
        "session_id": session_id,
        "rule": firing.rule,
        "kind": firing.kind,
        "severity": firing.severity,
        "message": firing.message,
        "media_start_s": firing.media_start_s,
        "media_end_s": firing.media_end_s,
        "evidence_event_ids": list(firing.evidence_event_ids),
        "trigger_event_id": firing.trigger_event_id,
        "event_timestamp": event["timestamp"],
        "fired_at": fired_at,
        "tenant": event.get("tenant"),
        "app": event.get("app"),
    }
