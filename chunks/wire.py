"""Read ``VideoChunk`` records straight from their framed Avro bytes, payload not copied.

The session worker relays megabytes of chunk payload per second. The Avro codec
(fastavro) copies each payload out of the Kafka value and builds a datum dict that
:meth:`VideoChunk.from_avro` then checks field by field; :class:`VideoChunkReader` reads
the few header fields itself and hands the payload back as a ``memoryview`` of the value.
fastavro has no zero-copy read of a ``bytes`` field, hence this reader.

It knows a writer schema only when every field is a primitive it reads (``string``,
``int``, ``long``, ``float``, ``double``, ``boolean``, ``bytes``, ``timestamp-micros``)
and the fields ``VideoChunk`` needs have a type Avro resolves to its own; any other
writer (a union added later, a foreign schema) is not known, and the caller decodes
that record with the codec. Writer fields ``VideoChunk`` does not have are skipped;
fields the writer lacks take ``VideoChunk``'s defaults (``part_index`` 0,
``part_count`` 1: what schema resolution gives a v1 record).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from chunks.exceptions import ChunkWireError
from chunks.records import VideoChunk
from schemas.avro_long import LongTooLongError, read_long

__all__ = ["VideoChunkReader", "writer_layout"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_HEADER_SIZES = (10, 5)  # single-object (C3 01 + fingerprint), Confluent (00 + schema id)

# reader field -> the writer types Avro resolves to it (promotions included)
_ACCEPTS: dict[str, frozenset[str]] = {
    "session_id": frozenset({"string"}),
    "seq": frozenset({"int", "long"}),
    "media_start_s": frozenset({"int", "long", "float", "double"}),
    "media_duration_s": frozenset({"int", "long", "float", "double"}),
    "part_index": frozenset({"int"}),
    "part_count": frozenset({"int"}),
    "keyframe_start": frozenset({"boolean"}),
    "byte_size": frozenset({"int", "long"}),
    "payload": frozenset({"bytes"}),
    "produced_at": frozenset({"timestamp-micros"}),
}
_REQUIRED = frozenset(_ACCEPTS) - {"part_index", "part_count"}
_PRIMITIVES = frozenset({"string", "int", "long", "float", "double", "boolean", "bytes"})

Layout = tuple[tuple[str, str | None], ...]
"""Per writer field, in writer order: (type read, VideoChunk field or None to skip)."""


def _type_name(field_type: Any) -> str | None:
    if isinstance(field_type, str):
        return field_type if field_type in _PRIMITIVES else None
    if isinstance(field_type, Mapping):
        logical = field_type.get("logicalType")
        if logical == "timestamp-micros" and field_type.get("type") == "long":
            return "timestamp-micros"
        if logical is None and isinstance(field_type.get("type"), str):
            return _type_name(field_type["type"])
    return None


def writer_layout(schema: Mapping[str, Any]) -> Layout | None:
    """How to read a record written with ``schema`` (a parsed VideoChunk writer schema);
    None when this reader cannot read it (the codec must)."""
    layout: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for field in schema.get("fields", ()):
        kind = _type_name(field.get("type"))
        if kind is None:
            return None
        name = str(field.get("name"))
        accepts = _ACCEPTS.get(name)
        if accepts is None:
            layout.append((kind, None))  # a field VideoChunk does not have: skipped
            continue
        if kind not in accepts:
            return None
        layout.append((kind, name))
        seen.add(name)
    return tuple(layout) if seen >= _REQUIRED else None


class VideoChunkReader:
    """Reads framed ``VideoChunk`` values of the writer schemas it was given.

    Args:
        writers: framing header (``C3 01`` + fingerprint, or ``00`` + registry schema id)
            -> parsed writer schema of a VideoChunk version.
    """

    def __init__(self, writers: Mapping[bytes, Mapping[str, Any]] | None = None) -> None:
        self._layouts: dict[bytes, Layout] = {}
        self._seen: set[bytes] = set()
        self.learn(writers or {})

    def learn(self, writers: Mapping[bytes, Mapping[str, Any]]) -> None:
        """Add writer schemas; a header seen before (read or not) is not looked at again."""
        for header, schema in writers.items():
            if header in self._seen or len(header) not in _HEADER_SIZES:
                continue
            self._seen.add(bytes(header))
            layout = writer_layout(schema)
            if layout is not None:
                self._layouts[bytes(header)] = layout

    @property
    def headers(self) -> frozenset[bytes]:
        """Framing headers this reader reads."""
        return frozenset(self._layouts)

    def layout_of(self, value: bytes) -> tuple[Layout, int] | None:
        """The layout and header size for ``value``'s framing header; None if unknown."""
        for size in _HEADER_SIZES:
            layout = self._layouts.get(value[:size])
            if layout is not None:
                return layout, size
        return None

    def read(self, value: bytes) -> VideoChunk | None:
        """The VideoChunk in ``value`` with its payload a ``memoryview`` of ``value``; None
        when ``value``'s header names no writer schema this reader knows.

        Raises:
            ChunkWireError: the bytes end inside a field, a field's value is invalid, bytes
                are left over after the record, or ``byte_size`` is not the payload's length.
        """
        found = self.layout_of(value)
        if found is None:
            return None
        layout, pos = found
        view = memoryview(value)
        end = len(value)
        got: dict[str, Any] = {}
        for kind, name in layout:
            item, pos = _read_field(kind, name or kind, view, pos, end)
            if name is not None:
                got[name] = item
        if pos != end:
            raise ChunkWireError(
                f"VideoChunk record has {end - pos} byte(s) left over after its body; it was "
                "not written with the schema its header names"
            )
        return _chunk(got)


def _read_field(kind: str, name: str, view: memoryview, pos: int, end: int) -> tuple[Any, int]:
    """The value of one field of type ``kind`` at ``pos`` and the position after it."""
    if kind in ("long", "int", "timestamp-micros"):
        return _varint(view, pos, end, name)
    if kind == "double":
        if pos + 8 > end:
            raise _short(name, 8, end - pos, end)
        return _DOUBLE.unpack_from(view, pos)[0], pos + 8
    if kind == "boolean":
        if pos >= end:
            raise _short(name, 1, 0, end)
        flag = view[pos]
        if flag > 1:
            raise ChunkWireError(
                f"VideoChunk field {name!r} at byte {pos} is {flag:#04x}, not an Avro "
                "boolean (0x00 or 0x01)"
            )
        return flag == 1, pos + 1
    if kind == "float":
        if pos + 4 > end:
            raise _short(name, 4, end - pos, end)
        return _FLOAT.unpack_from(view, pos)[0], pos + 4
    # string, bytes: a length, then that many bytes
    size, pos = _varint(view, pos, end, name)
    if size < 0:
        raise ChunkWireError(f"VideoChunk field {name!r} declares a negative length {size}")
    if pos + size > end:
        raise _short(name, size, end - pos, end)
    data = view[pos : pos + size]
    if kind == "bytes":
        return data, pos + size
    try:
        return str(data, "utf-8"), pos + size
    except UnicodeDecodeError as exc:
        raise ChunkWireError(
            f"VideoChunk field {name!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def _varint(view: memoryview, pos: int, end: int, name: str) -> tuple[int, int]:
    """An Avro ``int``/``long`` at ``pos``, cut-off and over-long varints named."""
    try:
        return read_long(view, pos)
    except IndexError:
        raise _short(name, 1, 0, end) from None
    except LongTooLongError:
        raise ChunkWireError(f"VideoChunk field {name!r}: varint longer than 10 bytes") from None


def _short(name: str, need: int, left: int, total: int) -> ChunkWireError:
    return ChunkWireError(
        f"VideoChunk record of {total} bytes ends inside field {name!r} (needs {need} "
        f"byte(s), {max(left, 0)} left); the value was cut off or is not this schema"
    )


def _chunk(got: dict[str, Any]) -> VideoChunk:
    payload: memoryview = got["payload"]
    try:
        chunk = VideoChunk(
            session_id=got["session_id"],
            seq=got["seq"],
            media_start_s=float(got["media_start_s"]),
            media_duration_s=float(got["media_duration_s"]),
            keyframe_start=got["keyframe_start"],
            payload=payload,
            produced_at=_EPOCH + timedelta(microseconds=got["produced_at"]),
            part_index=got.get("part_index", 0),
            part_count=got.get("part_count", 1),
        )
    except OverflowError:
        raise ChunkWireError(
            f"VideoChunk field 'produced_at' ({got['produced_at']} µs) is out of range"
        ) from None
    if got["byte_size"] != len(payload):
        raise ChunkWireError(
            f"VideoChunk of session {chunk.session_id}: chunk {chunk.seq} part "
            f"{chunk.part_index}: byte_size {got['byte_size']} != payload length {len(payload)}"
        )
    return chunk
