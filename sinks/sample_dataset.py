"""The analyst guide's known dataset: two sessions of events, usage, cues and session records.

Published by the sink tests (and usable by anyone trying the guide's queries): every figure
in ``sinks/README.md`` is computed from exactly these records.

* ``sess-a`` (tenant ``acme``, app ``sales-coach``): a 30 s session with a start and an
  end record, signals (one closed, one left open and closed at session end), an engagement
  timeline (engaged 0-12 s, neutral 12-24 s, engaged 24-30 s), quality updates, a dropped
  and a degraded range, an unknown event kind, usage (18 + 6 s analysed, 3 s degraded,
  3 s shed) and one cue.
* ``sess-b`` (tenant ``globex``, app ``interview``): events and usage of a session whose
  start record the sink never saw (kept, not dropped), 6 s analysed plus 3 s re-analysed
  after a failover.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.inter1_events import PAYLOAD_BRANCHES, UNKNOWN_EVENT

__all__ = ["SESSION_A", "SESSION_B", "T0", "sample_records"]

SESSION_A = "sess-a"
SESSION_B = "sess-b"
T0 = datetime(2026, 11, 24, 9, 30, 0, tzinfo=UTC)
_B = PAYLOAD_BRANCHES


_DIMENSIONS = ("quality_index", "clarity", "authority", "energy", "rapport", "learning")


def _scores(*values: float) -> dict[str, float]:
    return dict(zip(_DIMENSIONS, values, strict=True))


def _event(
    session_id: str,
    seq: int,
    event_type: str,
    data: dict[str, Any],
    *,
    tenant: str,
    app: str,
    incarnation: int = 0,
    media_offset_s: float = 0.0,
) -> dict[str, Any]:
    branch = _B.get(event_type, UNKNOWN_EVENT)
    at = T0 + timedelta(seconds=seq)
    return {
        "event_id": f"{session_id}:{incarnation}:{seq:06d}",
        "session_id": session_id,
        "api_version": "v1",
        "event_type": event_type,
        "timestamp": at,
        "correlation_id": f"c-{session_id}-{seq}",
        "incarnation": incarnation,
        "event_seq": seq,
        "media_offset_s": media_offset_s,
        "chunk_seq": seq // 2,
        "first_chunk_seq": 0,
        "received_at": at + timedelta(milliseconds=40),
        "tenant": tenant,
        "app": app,
        "payload": (branch, data),
    }


def _usage(
    session_id: str,
    start: float,
    end: float,
    *,
    reason: str,
    tenant: str,
    app: str,
    analysed: float = 0.0,
    degraded: float = 0.0,
    dropped: float = 0.0,
    reanalysed: float = 0.0,
    source: str = "inter1",
    incarnation: int = 0,
) -> dict[str, Any]:
    return {
        "usage_id": f"{session_id}:{incarnation}:{source}:{reason}:{start:.3f}-{end:.3f}",
        "session_id": session_id,
        "api_version": "v1",
        "media_start_s": start,
        "media_end_s": end,
        "analysed_s": analysed,
        "degraded_s": degraded,
        "dropped_s": dropped,
        "reanalysed_s": reanalysed,
        "reason": reason,
        "source": source,
        "incarnation": incarnation,
        "correlation_id": None,
        "tenant": tenant,
        "app": app,
        "recorded_at": T0 + timedelta(seconds=end),
    }


def _session_a() -> list[tuple[str, str, dict[str, Any]]]:
    sid, tenant, app = SESSION_A, "acme", "sales-coach"
    started = {
        "session_id": sid,
        "source_url": "file:///data/call-a.mp4",
        "source_kind": "file",
        "live": False,
        "container": "mp4",
        "mime_type": 'video/mp4; codecs="avc1.64001f"',
        "video_codec": "h264",
        "audio_codec": "aac",
        "width": 1280,
        "height": 720,
        "frame_rate": 30.0,
        "transcoded": False,
        "chunk_target_duration_s": 2.0,
        "tenant": "acme",
        "app": "sales-coach",
        "labels": {"meeting": "weekly-sync"},
        "producer_id": "producer-1",
        "started_at": T0,
    }
    ended = {
        "session_id": sid,
        "reason": "completed",
        "error": None,
        "chunks": 15,
        "media_seconds": 30.0,
        "bytes": 3_000_000,
        "ended_at": T0 + timedelta(seconds=31),
    }
    q1 = _scores(70.0, 60.0, 55.0, 80.0, 72.0, 50.0)
    q2 = _scores(75.0, 66.0, 58.0, 78.0, 76.0, 50.0)
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "session.ready",
            {
                "session_idle_timeout_seconds": 300,
                "session_max_duration_seconds": 3600,
                "max_segment_duration_seconds": None,
                "min_segment_size_bytes": 1024,
                "max_segment_size_bytes": 33554432,
                "supported_session_config_options": {
                    "include": ["conversation_quality_overall"],
                    "goal_dimensions": None,
                    "model": None,
                },
            },
        ),
        ("engagement.updated", {"state": "engaged", "start": 0.0}),
        (
            "signal.detected",
            {
                "signal_type": "hesitation",
                "start": 3.0,
                "probability": "medium",
                "rationale": "Pauses before answering.",
                "modality": ["video"],
            },
        ),
        (
            "signal.updated",
            {
                "signal_type": "hesitation",
                "start": 3.0,
                "probability": "high",
                "rationale": "Repeated filled pauses.",
                "modality": ["video"],
            },
        ),
        (
            "conversation_quality.updated",
            {
                "overall": q1,
                "timeline": [
                    {"start": 0.0, "end": 8.0, "values": q1},
                    {"start": 3.0, "end": 11.0, "values": q2},
                ],
            },
        ),
        ("signal.ended", {"signal_type": "hesitation", "end": 9.0}),
        ("engagement.updated", {"state": "neutral", "start": 12.0}),
        (
            "signal.detected",
            {
                "signal_type": "interest",
                "start": 15.0,
                "probability": "low",
                "rationale": None,
                "modality": ["video"],
            },
        ),
        ("coverage.dropped", {"ranges": [{"start": 18.0, "end": 21.0}]}),
        ("coverage.degraded", {"ranges": [{"start": 21.0, "end": 24.0}], "reason": "video_gap"}),
        ("engagement.updated", {"state": "engaged", "start": 24.0}),
        ("conversation_quality.updated", {"overall": q2, "timeline": None}),
        ("gaze.updated", {}),
        ("session.ended", {"reason": "client_shutdown"}),
    ]
    out: list[tuple[str, str, dict[str, Any]]] = [("chunks", "SessionStarted", started)]
    for seq, (kind, data) in enumerate(events):
        event = _event(sid, seq, kind, data, tenant=tenant, app=app)
        if kind == "gaze.updated":
            raw = '{"type":"gaze.updated","data":{"target":"camera"}}'
            event["payload"] = (UNKNOWN_EVENT, {"type": kind, "raw_json": raw})
        out.append(("events", "Inter1Event", event))
    out += [
        (
            "usage",
            "UsageRecord",
            _usage(sid, 0.0, 18.0, reason="analysed", analysed=18.0, tenant=tenant, app=app),
        ),
        (
            "usage",
            "UsageRecord",
            _usage(sid, 18.0, 21.0, reason="backpressure", dropped=3.0, tenant=tenant, app=app),
        ),
        (
            "usage",
            "UsageRecord",
            _usage(sid, 21.0, 24.0, reason="video_gap", degraded=3.0, tenant=tenant, app=app),
        ),
        (
            "usage",
            "UsageRecord",
            _usage(sid, 24.0, 30.0, reason="analysed", analysed=6.0, tenant=tenant, app=app),
        ),
        (
            "cues",
            "Cue",
            {
                "cue_id": "cue-a-1",
                "session_id": sid,
                "rule": "hesitation-burst",
                "kind": "signal_count",
                "severity": "warning",
                "message": "hesitation twice within 30 s",
                "media_start_s": 3.0,
                "media_end_s": 3.0,
                "evidence_event_ids": [f"{sid}:0:000002", f"{sid}:0:000003"],
                "trigger_event_id": f"{sid}:0:000003",
                "event_timestamp": T0 + timedelta(seconds=3),
                "fired_at": T0 + timedelta(seconds=3.1),
                "tenant": "acme",
                "app": "sales-coach",
            },
        ),
        ("chunks", "SessionEnded", ended),
    ]
    return out


def _session_b() -> list[tuple[str, str, dict[str, Any]]]:
    sid, tenant, app = SESSION_B, "globex", "interview"
    return [
        (
            "events",
            "Inter1Event",
            _event(
                sid,
                0,
                "engagement.updated",
                {"state": "disengaged", "start": 0.0},
                tenant=tenant,
                app=app,
            ),
        ),
        (
            "events",
            "Inter1Event",
            _event(
                sid,
                1,
                "signal.detected",
                {
                    "signal_type": "stress",
                    "start": 3.0,
                    "probability": "high",
                    "rationale": None,
                    "modality": None,
                },
                tenant=tenant,
                app=app,
            ),
        ),
        (
            "events",
            "Inter1Event",
            _event(
                sid,
                0,
                "signal.ended",
                {"signal_type": "stress", "end": 3.0},
                incarnation=1,
                media_offset_s=3.0,
                tenant=tenant,
                app=app,
            ),
        ),
        (
            "usage",
            "UsageRecord",
            _usage(sid, 0.0, 6.0, reason="analysed", analysed=6.0, tenant=tenant, app=app),
        ),
        (
            "usage",
            "UsageRecord",
            _usage(
                sid,
                3.0,
                6.0,
                reason="failover",
                reanalysed=3.0,
                source="worker",
                incarnation=1,
                tenant=tenant,
                app=app,
            ),
        ),
    ]


def sample_records() -> list[tuple[str, str, dict[str, Any]]]:
    """``(topic key, record name, datum)`` in publication order (keys: the session ids)."""
    return _session_a() + _session_b()
