"""Typed records of the chunk topic: ``SessionStarted``, ``VideoChunk``, ``SessionEnded``.

``to_avro()`` gives the datum the Avro codec (``schemas.codec``) writes for the record's
schema (``schemas/avsc/<name>/``); ``from_avro()`` takes the datum the codec decodes
(already resolved to the current schema version, so fields added later hold their
defaults). Encoding itself stays the codec's job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from chunks.exceptions import ChunkRecordError

__all__ = [
    "ChunkTopicRecord",
    "SessionEnded",
    "SessionStarted",
    "VideoChunk",
    "chunk_topic_record",
    "video_chunk_parts",
]


def _field(name: str, datum: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``datum[key]``, checked to be of ``kind``; a ChunkRecordError names what is wrong."""
    try:
        value = datum[key]
    except KeyError:
        raise ChunkRecordError(f"{name} datum has no field {key!r}") from None
    # bool is an int subclass: an int field must not accept True/False.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ChunkRecordError(
            f"{name} datum field {key!r} is {type(value).__name__}, expected {_names(kind)}"
        )
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in _kinds(kind))


_OPT_STR = (str, type(None))
_NUMBER = (float, int)


@dataclass(frozen=True)
class SessionStarted:
    """First record of a video session: where the video comes from, how it is packaged."""

    AVRO_NAME: ClassVar[str] = "SessionStarted"

    session_id: str
    source_url: str
    source_kind: str
    live: bool
    container: str
    mime_type: str
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    frame_rate: float
    transcoded: bool
    chunk_target_duration_s: float
    producer_id: str
    started_at: datetime
    tenant: str | None = None
    app: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> SessionStarted:
        """The record from a decoded ``SessionStarted`` datum."""
        name = cls.AVRO_NAME
        labels = _field(name, datum, "labels", dict)
        return cls(
            session_id=_field(name, datum, "session_id", str),
            source_url=_field(name, datum, "source_url", str),
            source_kind=_field(name, datum, "source_kind", str),
            live=_field(name, datum, "live", bool),
            container=_field(name, datum, "container", str),
            mime_type=_field(name, datum, "mime_type", str),
            video_codec=_field(name, datum, "video_codec", str),
            audio_codec=_field(name, datum, "audio_codec", _OPT_STR),
            width=_field(name, datum, "width", int),
            height=_field(name, datum, "height", int),
            frame_rate=float(_field(name, datum, "frame_rate", _NUMBER)),
            transcoded=_field(name, datum, "transcoded", bool),
            chunk_target_duration_s=float(_field(name, datum, "chunk_target_duration_s", _NUMBER)),
            producer_id=_field(name, datum, "producer_id", str),
            started_at=_field(name, datum, "started_at", datetime),
            tenant=_field(name, datum, "tenant", _OPT_STR),
            app=_field(name, datum, "app", _OPT_STR),
            labels=dict(labels),
        )

    def to_avro(self) -> dict[str, Any]:
        """The datum the codec writes."""
        return {
            "session_id": self.session_id,
            "source_url": self.source_url,
            "source_kind": self.source_kind,
            "live": self.live,
            "container": self.container,
            "mime_type": self.mime_type,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "width": self.width,
            "height": self.height,
            "frame_rate": self.frame_rate,
            "transcoded": self.transcoded,
            "chunk_target_duration_s": self.chunk_target_duration_s,
            "tenant": self.tenant,
            "app": self.app,
            "labels": dict(self.labels),
            "producer_id": self.producer_id,
            "started_at": self.started_at,
        }


@dataclass(frozen=True)
class VideoChunk:
    """One record of a chunk: the whole chunk, or part ``part_index`` of ``part_count``.

    ``media_start_s`` / ``media_duration_s`` describe the whole chunk on every part;
    ``byte_size`` is this record's payload size. ``payload`` is a ``memoryview`` of the
    Kafka value when :class:`chunks.wire.VideoChunkReader` read the record (not copied).
    """

    AVRO_NAME: ClassVar[str] = "VideoChunk"

    session_id: str
    seq: int
    media_start_s: float
    media_duration_s: float
    keyframe_start: bool
    payload: bytes | memoryview
    produced_at: datetime
    part_index: int = 0
    part_count: int = 1

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise ChunkRecordError(f"VideoChunk of session {self.session_id}: seq {self.seq} < 0")
        if not 0 <= self.part_index < self.part_count:
            raise ChunkRecordError(
                f"VideoChunk of session {self.session_id}: chunk {self.seq}: "
                f"part_index {self.part_index} is not within part_count {self.part_count}"
            )

    @property
    def byte_size(self) -> int:
        """Size of this record's payload in bytes."""
        return len(self.payload)

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> VideoChunk:
        """The record from a decoded ``VideoChunk`` datum (``byte_size`` must match)."""
        name = cls.AVRO_NAME
        payload = _field(name, datum, "payload", bytes)
        byte_size = _field(name, datum, "byte_size", int)
        chunk = cls(
            session_id=_field(name, datum, "session_id", str),
            seq=_field(name, datum, "seq", int),
            media_start_s=float(_field(name, datum, "media_start_s", _NUMBER)),
            media_duration_s=float(_field(name, datum, "media_duration_s", _NUMBER)),
            keyframe_start=_field(name, datum, "keyframe_start", bool),
            payload=payload,
            produced_at=_field(name, datum, "produced_at", datetime),
            part_index=_field(name, datum, "part_index", int),
            part_count=_field(name, datum, "part_count", int),
        )
        if byte_size != len(payload):
            raise ChunkRecordError(
                f"VideoChunk of session {chunk.session_id}: chunk {chunk.seq} part "
                f"{chunk.part_index}: byte_size {byte_size} != payload length {len(payload)}"
            )
        return chunk

    def to_avro(self) -> dict[str, Any]:
        """The datum the codec writes."""
        return {
            "session_id": self.session_id,
            "seq": self.seq,
            "media_start_s": self.media_start_s,
            "media_duration_s": self.media_duration_s,
            "part_index": self.part_index,
            "part_count": self.part_count,
            "keyframe_start": self.keyframe_start,
            "byte_size": len(self.payload),
            "payload": self.payload,
            "produced_at": self.produced_at,
        }


@dataclass(frozen=True)
class SessionEnded:
    """Last record of a video session, with its totals (split parts count once)."""

    AVRO_NAME: ClassVar[str] = "SessionEnded"

    session_id: str
    reason: str
    chunks: int
    media_seconds: float
    bytes: int
    ended_at: datetime
    error: str | None = None

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> SessionEnded:
        """The record from a decoded ``SessionEnded`` datum."""
        name = cls.AVRO_NAME
        return cls(
            session_id=_field(name, datum, "session_id", str),
            reason=_field(name, datum, "reason", str),
            error=_field(name, datum, "error", _OPT_STR),
            chunks=_field(name, datum, "chunks", int),
            media_seconds=float(_field(name, datum, "media_seconds", _NUMBER)),
            bytes=_field(name, datum, "bytes", int),
            ended_at=_field(name, datum, "ended_at", datetime),
        )

    def to_avro(self) -> dict[str, Any]:
        """The datum the codec writes."""
        return {
            "session_id": self.session_id,
            "reason": self.reason,
            "error": self.error,
            "chunks": self.chunks,
            "media_seconds": self.media_seconds,
            "bytes": self.bytes,
            "ended_at": self.ended_at,
        }


ChunkTopicRecord = SessionStarted | VideoChunk | SessionEnded
"""Any record of the chunk topic."""

_READERS: dict[str, Callable[[Mapping[str, Any]], ChunkTopicRecord]] = {
    "SessionStarted": SessionStarted.from_avro,
    "VideoChunk": VideoChunk.from_avro,
    "SessionEnded": SessionEnded.from_avro,
}


def chunk_topic_record(name: str, datum: Mapping[str, Any]) -> ChunkTopicRecord:
    """The typed record for a decoded datum of schema ``name`` (``Decoded.name``)."""
    reader = _READERS.get(name)
    if reader is None:
        raise ChunkRecordError(
            f"{name} is not a chunk topic record (expected SessionStarted, VideoChunk "
            "or SessionEnded)"
        )
    return reader(datum)


def video_chunk_parts(
    session_id: str,
    *,
    seq: int,
    media_start_s: float,
    media_duration_s: float,
    keyframe_start: bool,
    parts: Sequence[bytes],
    produced_at: datetime,
) -> list[VideoChunk]:
    """One VideoChunk record per part of a chunk (usually one); the assembler's inverse.

    ``keyframe_start`` is set on part 0 only: the later parts start mid-chunk.
    """
    count = len(parts)
    return [
        VideoChunk(
            session_id=session_id,
            seq=seq,
            media_start_s=media_start_s,
            media_duration_s=media_duration_s,
            keyframe_start=keyframe_start and index == 0,
            payload=part,
            produced_at=produced_at,
            part_index=index,
            part_count=count,
        )
        for index, part in enumerate(parts)
    ]
