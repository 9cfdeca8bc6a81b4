"""Decoded records -> rows of the analytics tables (``sinks/migrations/000[23]_*.sql``).

One pure function per record kind returns ``{table: [row, ...]}``; rows are lists in the
order of :data:`COLUMNS`. Times inside payloads are turned into session media time
(``media_offset_s`` + the connection-relative time), so intervals of different Inter-1
connections of one session line up. Timestamps pass through as they come: ``datetime``
from the codec, integer microseconds from :class:`sinks.decoding.SinkDecoder` (the sink);
clickhouse-connect writes either into ``DateTime64(6)``, one kind per insert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

__all__ = [
    "COLUMNS",
    "KafkaCoordinates",
    "RowSet",
    "payload_data",
    "payload_json",
    "rows_for",
]

RowSet = dict[str, list[list[Any]]]
"""Table name -> rows (each a list in :data:`COLUMNS` order)."""

COLUMNS: Mapping[str, tuple[str, ...]] = {
    "events": (
        "event_id",
        "session_id",
        "api_version",
        "event_type",
        "ts",
        "correlation_id",
        "incarnation",
        "event_seq",
        "media_offset_s",
        "chunk_seq",
        "received_at",
        "tenant",
        "app",
        "payload_json",
        "source_topic",
        "source_partition",
        "source_offset",
    ),
    "signal_events": (
        "event_id",
        "session_id",
        "incarnation",
        "event_seq",
        "event_type",
        "signal_type",
        "probability",
        "rationale",
        "media_s",
        "ts",
        "tenant",
        "app",
    ),
    "engagement_events": (
        "event_id",
        "session_id",
        "incarnation",
        "event_seq",
        "state",
        "start_s",
        "ts",
        "tenant",
        "app",
    ),
    "quality_overall": (
        "event_id",
        "session_id",
        "incarnation",
        "event_seq",
        "quality_index",
        "clarity",
        "authority",
        "energy",
        "rapport",
        "learning",
        "ts",
        "tenant",
        "app",
    ),
    "quality_timeline": (
        "event_id",
        "session_id",
        "incarnation",
        "event_seq",
        "idx",
        "start_s",
        "end_s",
        "quality_index",
        "clarity",
        "authority",
        "energy",
        "rapport",
        "learning",
        "ts",
        "tenant",
        "app",
    ),
    "coverage": (
        "event_id",
        "session_id",
        "incarnation",
        "kind",
        "reason",
        "idx",
        "start_s",
        "end_s",
        "seconds",
        "ts",
        "tenant",
        "app",
    ),
    "sessions_started": (
        "session_id",
        "source_url",
        "source_kind",
        "live",
        "container",
        "video_codec",
        "audio_codec",
        "width",
        "height",
        "frame_rate",
        "transcoded",
        "tenant",
        "app",
        "labels",
        "producer_id",
        "started_at",
    ),
    "sessions_ended": (
        "session_id",
        "reason",
        "error",
        "chunks",
        "media_seconds",
        "bytes",
        "ended_at",
    ),
    "usage": (
        "usage_id",
        "session_id",
        "api_version",
        "media_start_s",
        "media_end_s",
        "analysed_s",
        "degraded_s",
        "dropped_s",
        "reanalysed_s",
        "reason",
        "source",
        "incarnation",
        "correlation_id",
        "tenant",
        "app",
        "recorded_at",
    ),
    "cues": (
        "cue_id",
        "session_id",
        "rule",
        "kind",
        "severity",
        "message",
        "media_start_s",
        "media_end_s",
        "evidence_event_ids",
        "trigger_event_id",
        "event_timestamp",
        "tenant",
        "app",
    ),
    "chunks": (
        "session_id",
        "seq",
        "part_index",
        "part_count",
        "media_start_s",
        "media_duration_s",
        "byte_size",
        "keyframe_start",
        "produced_at",
        "source_partition",
        "source_offset",
    ),
}
"""Columns the sink writes, per table (the rest have defaults)."""

_SCORES = ("quality_index", "clarity", "authority", "energy", "rapport", "learning")


class KafkaCoordinates:
    """Where a record was read from (kept on raw event rows)."""

    __slots__ = ("offset", "partition", "topic")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset


def _text(value: Any) -> str:
    return "" if value is None else str(value)


_SHORT: dict[str, str] = {}
"""Payload branch full name -> short name (``...inter1.SignalDetected`` -> ``SignalDetected``)."""


def _short(branch: str) -> str:
    short = _SHORT.get(branch)
    if short is None:
        short = _SHORT[branch] = branch.rsplit(".", 1)[-1]
    return short


def _json_numbers(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e16 else value
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


# keys in schema order, UTF-8: the text ClickHouse's toJSONString writes for the same
# payload (migration 0006 builds events.payload_json there)
_PAYLOAD_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def payload_json(branch: str, payload: Mapping[str, Any]) -> str:
    """``events.payload_json``: ``{"branch":<short name>,"data":<payload>}``, compact,
    keys in schema order, non-ASCII as UTF-8, integral floats without ``.0`` (``3`` for
    ``3.0``, the same JSON number), exactly as the views of migration 0006 write it."""
    return _PAYLOAD_ENCODER.encode({"branch": branch, "data": _json_numbers(payload)})


def _event_rows(datum: Mapping[str, Any], at: KafkaCoordinates) -> RowSet:
    branch, payload = datum["payload"]
    short = _short(branch)
    sid = datum["session_id"]
    eid = datum["event_id"]
    inc = datum["incarnation"]
    seq = datum["event_seq"]
    offset_s = float(datum["media_offset_s"])
    ts: datetime | int = datum["timestamp"]  # int: µs (sinks.decoding)
    tenant, app = _text(datum.get("tenant")), _text(datum.get("app"))
    etype = datum["event_type"]
    out: RowSet = {
        "events": [
            [
                eid,
                sid,
                datum["api_version"],
                etype,
                ts,
                datum["correlation_id"],
                inc,
                seq,
                offset_s,
                datum.get("chunk_seq"),
                datum["received_at"],
                tenant,
                app,
                payload_json(short, payload),
                at.topic,
                at.partition,
                at.offset,
            ]
        ]
    }
    if short in ("SignalDetected", "SignalUpdated", "SignalEnded"):
        at_s = payload["end"] if short == "SignalEnded" else payload["start"]
        out["signal_events"] = [
            [
                eid,
                sid,
                inc,
                seq,
                etype,
                payload["signal_type"],
                _text(payload.get("probability")),
                _text(payload.get("rationale")),
                offset_s + float(at_s),
                ts,
                tenant,
                app,
            ]
        ]
    elif short == "EngagementUpdated":
        out["engagement_events"] = [
            [
                eid,
                sid,
                inc,
                seq,
                payload["state"],
                offset_s + float(payload["start"]),
                ts,
                tenant,
                app,
            ]
        ]
    elif short == "ConversationQualityUpdated":
        overall = payload.get("overall")
        if overall is not None:
            out["quality_overall"] = [
                [eid, sid, inc, seq, *(float(overall[k]) for k in _SCORES), ts, tenant, app]
            ]
        timeline = payload.get("timeline") or []
        if timeline:
            out["quality_timeline"] = [
                [
                    eid,
                    sid,
                    inc,
                    seq,
                    idx,
                    offset_s + float(entry["start"]),
                    offset_s + float(entry["end"]),
                    *(float(entry["values"][k]) for k in _SCORES),
                    ts,
                    tenant,
                    app,
                ]
                for idx, entry in enumerate(timeline)
            ]
    elif short in ("CoverageDropped", "CoverageDegraded"):
        kind = "dropped" if short == "CoverageDropped" else "degraded"
        reason = _text(payload.get("reason"))
        out["coverage"] = [
            [
                eid,
                sid,
                inc,
                kind,
                reason,
                idx,
                offset_s + float(r["start"]),
                offset_s + float(r["end"]),
                float(r["end"]) - float(r["start"]),
                ts,
                tenant,
                app,
            ]
            for idx, r in enumerate(payload["ranges"])
        ]
    return out


def _started_rows(d: Mapping[str, Any]) -> RowSet:
    return {
        "sessions_started": [
            [
                d["session_id"],
                d["source_url"],
                d["source_kind"],
                d["live"],
                d["container"],
                d["video_codec"],
                _text(d.get("audio_codec")),
                d["width"],
                d["height"],
                d["frame_rate"],
                d["transcoded"],
                _text(d.get("tenant")),
                _text(d.get("app")),
                dict(d.get("labels") or {}),
                d["producer_id"],
                d["started_at"],
            ]
        ]
    }


def _ended_rows(d: Mapping[str, Any]) -> RowSet:
    return {
        "sessions_ended": [
            [
                d["session_id"],
                d["reason"],
                _text(d.get("error")),
                d["chunks"],
                d["media_seconds"],
                d["bytes"],
                d["ended_at"],
            ]
        ]
    }


def _usage_rows(d: Mapping[str, Any]) -> RowSet:
    return {
        "usage": [
            [
                d["usage_id"],
                d["session_id"],
                d["api_version"],
                d["media_start_s"],
                d["media_end_s"],
                d["analysed_s"],
                d["degraded_s"],
                d["dropped_s"],
                d["reanalysed_s"],
                d["reason"],
                d["source"],
                d["incarnation"],
                _text(d.get("correlation_id")),
                _text(d.get("tenant")),
                _text(d.get("app")),
                d["recorded_at"],
            ]
        ]
    }


def _cue_rows(d: Mapping[str, Any]) -> RowSet:
    return {
        "cues": [
            [
                d["cue_id"],
                d["session_id"],
                d["rule"],
                d["kind"],
                d["severity"],
                d["message"],
                d["media_start_s"],
                d["media_end_s"],
                list(d["evidence_event_ids"]),
                d["trigger_event_id"],
                d["event_timestamp"],
                _text(d.get("tenant")),
                _text(d.get("app")),
            ]
        ]
    }


def _chunk_rows(d: Mapping[str, Any], at: KafkaCoordinates) -> RowSet:
    """Chunk metadata (``sinks/migrations/0003_chunks.sql``); the media bytes are not stored."""
    return {
        "chunks": [
            [
                d["session_id"],
                d["seq"],
                d.get("part_index", 0),
                d.get("part_count", 1),
                d["media_start_s"],
                d["media_duration_s"],
                d["byte_size"],
                d["keyframe_start"],
                d["produced_at"],
                at.partition,
                at.offset,
            ]
        ]
    }


_ROWS: Mapping[str, Callable[[Mapping[str, Any], KafkaCoordinates], RowSet]] = {
    "Inter1Event": _event_rows,
    "UsageRecord": lambda d, _at: _usage_rows(d),
    "SessionStarted": lambda d, _at: _started_rows(d),
    "SessionEnded": lambda d, _at: _ended_rows(d),
    "Cue": lambda d, _at: _cue_rows(d),
    "VideoChunk": _chunk_rows,
}


def rows_for(name: str, datum: Mapping[str, Any], at: KafkaCoordinates) -> RowSet | None:
    """Rows for one decoded record; None for a record the sink does not store."""
    build = _ROWS.get(name)
    return None if build is None else build(datum, at)


def payload_data(payload_json: str) -> Any:
    """The ``data`` of an ``events.payload_json`` value."""
    return json.loads(payload_json)["data"]
