"""Build the chunk topic's records (SessionStarted, VideoChunk, SessionEnded) from a session.

The records are the typed ones of :mod:`chunks.records` (``to_avro()`` gives the codec's
datum); this module only maps a producer's source, media info and chunks onto them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from chunks.records import SessionEnded, SessionStarted, VideoChunk, video_chunk_parts
from producers.chunker import Chunk
from producers.probe import MediaInfo
from producers.sources import SourceSpec

__all__ = [
    "SessionMeta",
    "SessionTotals",
    "chunk_records",
    "session_ended",
    "session_started",
    "utc_now",
]


def utc_now() -> datetime:
    """The current time, timezone-aware (UTC), as the timestamp fields expect."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SessionMeta:
    """Who the session belongs to: tenant, app and free-form labels."""

    tenant: str | None = None
    app: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class SessionTotals:
    """Running totals of what a session has published."""

    chunks: int = 0
    media_seconds: float = 0.0
    bytes: int = 0

    def add(self, chunk: Chunk) -> None:
        """Count one published chunk (all of its parts)."""
        self.chunks += 1
        self.media_seconds += chunk.media_duration_s
        self.bytes += chunk.byte_size


def session_started(
    session_id: str,
    spec: SourceSpec,
    info: MediaInfo,
    meta: SessionMeta,
    *,
    chunk_target_duration_s: float,
    producer_id: str,
    started_at: datetime,
) -> SessionStarted:
    """The SessionStarted record."""
    return SessionStarted(
        session_id=session_id,
        source_url=spec.display,
        source_kind=spec.kind,
        live=spec.live,
        container="mp4",
        mime_type=info.mime_type,
        video_codec=info.video_codec,
        audio_codec=info.audio_codec,
        width=info.width,
        height=info.height,
        frame_rate=info.frame_rate,
        transcoded=info.transcoded,
        chunk_target_duration_s=chunk_target_duration_s,
        tenant=meta.tenant,
        app=meta.app,
        labels=dict(meta.labels),
        producer_id=producer_id,
        started_at=started_at,
    )


def chunk_records(session_id: str, chunk: Chunk, produced_at: datetime) -> list[VideoChunk]:
    """One VideoChunk record per part of ``chunk`` (usually one)."""
    return video_chunk_parts(
        session_id,
        seq=chunk.seq,
        media_start_s=chunk.media_start_s,
        media_duration_s=chunk.media_duration_s,
        keyframe_start=chunk.keyframe_start,
        parts=chunk.parts,
        produced_at=produced_at,
    )


def session_ended(
    session_id: str,
    reason: str,
    error: str | None,
    totals: SessionTotals,
    ended_at: datetime,
) -> SessionEnded:
    """The SessionEnded record."""
    return SessionEnded(
        session_id=session_id,
        reason=reason,
        error=error,
        chunks=totals.chunks,
        media_seconds=round(totals.media_seconds, 6),
        bytes=totals.bytes,
        ended_at=ended_at,
    )
