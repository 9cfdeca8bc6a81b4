"""The known event stream of the cues tests and the cues it must give with ``rules.toml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from events import SessionEvents

__all__ = ["RULES_FILE", "expected_cues", "known_stream"]

RULES_FILE = Path(__file__).resolve().parent / "rules.toml"


def known_stream(session_id: str) -> SessionEvents:
    """18 events exercising every rule of ``rules.toml`` once (e0..e17)."""
    s = SessionEvents(session_id)
    s.engagement("engaged", 0.0)  # e0
    s.detected("hesitation", 3.0)  # e1: window [0, 30) count 1
    s.detected("uncertainty", 6.0, "medium")  # e2: count 2
    s.detected("hesitation", 9.0, "low")  # e3: low probability, not counted
    s.updated("uncertainty", 6.0)  # e4: counted at the watermark 9 -> 3: hesitation-burst
    s.detected("tension", 12.0)  # e5
    s.engagement("disengaged", 12.0)  # e6
    s.detected("stress", 15.0)  # e7: stress while tension is active: stress-under-tension
    s.quality(18.0, energy=35.0)  # e8: streak 1
    s.quality(21.0, energy=30.0)  # e9: streak 2: low-energy
    s.detected("hesitation", 24.0)  # e10
    s.detected("uncertainty", 27.0)  # e11
    s.detected("hesitation", 30.0)  # e12: [10, 40) reaches 3 but hesitation-burst cools down
    s.quality(33.0, energy=50.0)  # e13: disengaged 12 -> 33 = 21 s > 20: disengaged-20
    s.detected("confusion", 36.0)  # e14: confusion window [20, 40)
    s.detected("confusion", 38.0)  # e15
    s.ended("tension", 39.0)  # e16
    s.session_ended()  # e17: flush closes [20, 40) with 2 confusions: confusion-tail
    return s


def expected_cues(session_id: str) -> list[dict[str, Any]]:
    """The cues (fields that do not depend on wall-clock time), in firing order."""

    def e(n: int) -> str:
        return f"{session_id}:0:{n:06d}"

    rows = [
        ("hesitation-burst", "signal_count", "warning", "3 signals in [0, 30)", 3.0, 9.0,
         [e(1), e(2), e(4)], e(4)),
        ("stress-under-tension", "co_occurrence", "warning", "stress during tension", 12.0,
         15.0, [e(5), e(7)], e(7)),
        ("low-energy", "quality_threshold", "info", "energy 30 < 40", 18.0, 21.0,
         [e(8), e(9)], e(9)),
        ("disengaged-20", "engagement_duration", "critical", "disengaged 21 s since 12", 12.0,
         33.0, [e(6), e(13)], e(13)),
        ("confusion-tail", "signal_count", "info", "confusion x2", 36.0, 38.0,
         [e(14), e(15)], e(17)),
    ]  # fmt: skip
    return [
        {
            "rule": rule,
            "kind": kind,
            "severity": severity,
            "message": message,
            "media_start_s": start,
            "media_end_s": end,
            "evidence_event_ids": evidence,
            "trigger_event_id": trigger,
        }
        for rule, kind, severity, message, start, end, evidence, trigger in rows
    ]
