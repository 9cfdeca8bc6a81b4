"""Realistic example datums for every record (current versions), deterministic.

Used by ``inter1-pipeline demo`` to round-trip one record of each schema, by the codec
benchmark, and by the tests. ``Inter1Event`` has one example per payload branch.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.inter1_events import PAYLOAD_BRANCHES, UNKNOWN_EVENT

__all__ = [
    "EXAMPLE_SESSION_ID",
    "example_chunk",
    "example_inter1_events",
    "example_records",
]

EXAMPLE_SESSION_ID = "3f6c1c9e-6a0e-4c55-9d3e-2b8f0f4f7a21"
_T0 = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)
_SCORES = {
    "quality_index": 71.5,
    "clarity": 64.0,
    "authority": 58.25,
    "energy": 80.0,
    "rapport": 73.5,
    "learning": 50.0,
}


def _payloads() -> list[tuple[str, dict[str, Any]]]:
    b = PAYLOAD_BRANCHES
    return [
        (
            b["session.ready"],
            {
                "session_idle_timeout_seconds": 300,
                "session_max_duration_seconds": 3600,
                "max_segment_duration_seconds": None,
                "min_segment_size_bytes": 1024,
                "max_segment_size_bytes": 33554432,
                "supported_session_config_options": {
                    "include": ["conversation_quality_overall", "conversation_quality_timeline"],
                    "goal_dimensions": ["clarity", "authority", "energy", "rapport", "learning"],
                    "model": None,
                },
            },
        ),
        (
            b["session.updated"],
            {
                "include": ["conversation_quality_overall"],
                "goal_dimensions": ["clarity", "rapport"],
                "model": None,
            },
        ),
        (
            b["signal.detected"],
            {
                "signal_type": "hesitation",
                "start": 6.0,
                "probability": "medium",
                "rationale": "Pauses before answering and averts gaze while speaking.",
                "modality": ["video"],
            },
        ),
        (
            b["signal.updated"],
            {
                "signal_type": "hesitation",
                "start": 6.0,
                "probability": "high",
                "rationale": "Repeated filled pauses; shoulders drawn in.",
                "modality": ["video"],
            },
        ),
        (b["signal.ended"], {"signal_type": "hesitation", "end": 14.0}),
        (b["engagement.updated"], {"state": "engaged", "start": 3.0}),
        (
            b["conversation_quality.updated"],
            {
                "overall": dict(_SCORES),
                "timeline": [
                    {"start": 0.0, "end": 8.0, "values": dict(_SCORES, energy=76.0)},
                    {"start": 3.0, "end": 11.0, "values": dict(_SCORES, clarity=61.5)},
                ],
            },
        ),
        (
            b["feedback.generated"],
            {"feedback": "Slow down when explaining the pricing; pause to invite questions."},
        ),
        (b["coverage.dropped"], {"ranges": [{"start": 24.0, "end": 27.0}]}),
        (
            b["coverage.degraded"],
            {
                "ranges": [{"start": 30.0, "end": 38.0}, {"start": 33.0, "end": 41.0}],
                "reason": "video_gap",
            },
        ),
        (
            b["error"],
            {
                "code": "ih5004",
                "message": "Segment 17 could not be parsed as fragmented MP4.",
                "link": "https://docs.interhuman.ai/errors/ih5004",
                "segment": 17,
            },
        ),
        (b["session.closing"], {"max_drain_seconds": 20}),
        (b["session.ended"], {"reason": "client_shutdown"}),
        (
            UNKNOWN_EVENT,
            {
                "type": "gaze.updated",
                "raw_json": '{"type":"gaze.updated","timestamp":"2026-11-24T09:30:12.5Z",'
                '"correlation_id":"c-0042","data":{"target":"camera","start":12.5}}',
            },
        ),
    ]


def example_inter1_events(session_id: str = EXAMPLE_SESSION_ID) -> list[dict[str, Any]]:
    """One ``Inter1Event`` per payload branch (every known kind plus an unknown one)."""
    events = []
    for seq, (branch, data) in enumerate(_payloads()):
        event_type = (
            data["type"]
            if branch == UNKNOWN_EVENT
            else next(t for t, name in PAYLOAD_BRANCHES.items() if name == branch)
        )
        at = _T0 + timedelta(seconds=seq * 1.5)
        events.append(
            {
                "event_id": f"{session_id}:0:{seq:06d}",
                "session_id": session_id,
                "api_version": "v1",
                "event_type": event_type,
                "timestamp": at,
                "correlation_id": f"c-{seq:04d}",
                "incarnation": 0,
                "event_seq": seq,
                "media_offset_s": 0.0,
                "chunk_seq": None if seq == 0 else seq // 2,
                "first_chunk_seq": None if seq == 0 else 0,
                "received_at": at + timedelta(milliseconds=42),
                "tenant": "acme",
                "app": "sales-coach",
                "payload": (branch, data),
            }
        )
    return events


def example_chunk(
    seq: int = 0, payload_size: int = 64 * 1024, session_id: str = EXAMPLE_SESSION_ID
) -> dict[str, Any]:
    """A ``VideoChunk`` of 2 s with ``payload_size`` pseudo-random payload bytes."""
    body = random.Random(seq).randbytes(payload_size)
    payload = b"\x00\x00\x00\x1cftypisom" + body[12:] if payload_size > 12 else body
    return {
        "session_id": session_id,
        "seq": seq,
        "media_start_s": seq * 2.0,
        "media_duration_s": 2.0,
        "part_index": 0,
        "part_count": 1,
        "keyframe_start": True,
        "byte_size": len(payload),
        "payload": payload,
        "produced_at": _T0 + timedelta(seconds=seq * 2.0),
    }


def example_records() -> list[tuple[str, dict[str, Any]]]:
    """``(record_name, datum)`` examples covering every record, every Inter1Event branch."""
    sid = EXAMPLE_SESSION_ID
    started = {
        "session_id": sid,
        "source_url": "rtsp://camera-7:***@10.0.4.17:554/stream1",
        "source_kind": "rtsp",
        "live": True,
        "container": "mp4",
        "mime_type": 'video/mp4; codecs="avc1.64001f,mp4a.40.2"',
        "video_codec": "h264",
        "audio_codec": "aac",
        "width": 1280,
        "height": 720,
        "frame_rate": 30.0,
        "transcoded": False,
        "chunk_target_duration_s": 2.0,
        "tenant": "acme",
        "app": "sales-coach",
        "labels": {"meeting": "weekly-sync", "room": "berlin-3"},
        "producer_id": "producer-7f9c4d-1",
        "started_at": _T0,
    }
    ended = {
        "session_id": sid,
        "reason": "completed",
        "error": None,
        "chunks": 30,
        "media_seconds": 60.0,
        "bytes": 15_728_640,
        "ended_at": _T0 + timedelta(seconds=61),
    }
    usage = {
        "usage_id": f"{sid}:0:inter1:backpressure:24.000-27.000",
        "session_id": sid,
        "api_version": "v1",
        "media_start_s": 24.0,
        "media_end_s": 27.0,
        "analysed_s": 0.0,
        "degraded_s": 0.0,
        "dropped_s": 3.0,
        "reanalysed_s": 0.0,
        "reason": "backpressure",
        "source": "inter1",
        "incarnation": 0,
        "correlation_id": "c-0008",
        "tenant": "acme",
        "app": "sales-coach",
        "recorded_at": _T0 + timedelta(seconds=30),
    }
    dead = {
        "stage": "session-worker",
        "source_topic": "inter1.video-chunks",
        "source_partition": 4,
        "source_offset": 18231,
        "key": sid.encode(),
        "value": b"\xc3\x01\x00\x11\x22\x33\x44\x55\x66\x77garbage",
        "error_type": "UnknownFingerprintError",
        "error_code": None,
        "error_message": "record was written with schema fingerprint 0011223344556677, "
        "which no kept schema version has",
        "retriable": False,
        "session_id": sid,
        "failed_at": _T0 + timedelta(seconds=5),
        "headers": {"traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    }
    cue = {
        "cue_id": "5d41402abc4b2a76b9719d911017c592",
        "session_id": sid,
        "rule": "hesitation-burst",
        "kind": "signal_count",
        "severity": "warning",
        "message": "3 hesitation/uncertainty signals within 30 s: slow down and check in",
        "media_start_s": 6.0,
        "media_end_s": 12.0,
        "evidence_event_ids": [f"{sid}:0:000002", f"{sid}:0:000003", f"{sid}:0:000005"],
        "trigger_event_id": f"{sid}:0:000005",
        "event_timestamp": _T0 + timedelta(seconds=7.5),
        "fired_at": _T0 + timedelta(seconds=7.6),
        "tenant": "acme",
        "app": "sales-coach",
    }
    records: list[tuple[str, dict[str, Any]]] = [
        ("SessionStarted", started),
        ("VideoChunk", example_chunk(0, 4096)),
        ("SessionEnded", ended),
        ("UsageRecord", usage),
        ("DeadLetter", dead),
        ("Cue", cue),
    ]
    records.extend(("Inter1Event", event) for event in example_inter1_events(sid))
    return records
