"""Prometheus metrics of the cues app (``GET /metrics`` on its web server)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["CUES_FIRED", "CUE_LATENCY", "DEAD_LETTERS", "EVENTS_APPLIED", "EVENTS_SKIPPED"]

EVENTS_APPLIED = Counter(
    "inter1_cues_events_applied_total", "Inter1Event records applied to a session's state"
)
EVENTS_SKIPPED = Counter(
    "inter1_cues_events_skipped_total",
    "Events not applied again: a replayed offset, or an event id already applied",
    ["why"],
)
CUES_FIRED = Counter("inter1_cues_fired_total", "Cues published", ["rule", "severity"])
DEAD_LETTERS = Counter(
    "inter1_cues_dead_letters_total", "Undecodable or foreign records sent to the dead letters"
)
CUE_LATENCY = Histogram(
    "inter1_cues_event_to_cue_seconds",
    "The triggering event's arrival at the session worker (received_at) to the cue acked",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
