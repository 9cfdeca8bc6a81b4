"""The sink's record decoder: the codec's schemas, timestamps left as integer microseconds.

The sink only moves values into ClickHouse, so it reads every kept writer version of a
record (found by the single-object fingerprint, exactly as :class:`schemas.codec.Codec`
does) with the ``timestamp-micros`` logical type removed from writer and reader schemas:
fastavro then returns the encoded integers, which clickhouse-connect writes into
``DateTime64(6)`` columns as they are. That skips building a ``datetime`` per timestamp in
the decoder and turning it back into ticks in the driver (about 5 µs per event together).

Records the sink stores no rows for (``DeadLetter``) are recognised by their header and not
decoded; ``VideoChunk`` is decoded for its metadata (the ``chunks`` table, not the bytes).
Anything else (Confluent framing through a registry, unknown or damaged bytes) goes through
the codec itself, which raises its typed errors; a datum it returns has its top-level
``datetime`` values turned into microseconds, so every datum leaving this module has the
same shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from io import BytesIO
from typing import Any, NamedTuple, cast

from fastavro import parse_schema, schemaless_reader

from schemas.catalog import RecordVersion
from schemas.codec import Codec
from schemas.framing import SINGLE_OBJECT_HEADER_SIZE, single_object_header

__all__ = ["STORED_RECORDS", "SinkDecoder", "micros"]

STORED_RECORDS = frozenset(
    {"Inter1Event", "UsageRecord", "SessionStarted", "SessionEnded", "Cue", "VideoChunk"}
)
"""Records the sink writes rows for; others are only recognised."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Plan(NamedTuple):
    name: str
    writer: dict[str, Any] | None  # None: a record the sink does not store
    reader: dict[str, Any] | None  # None: writer is the current version
    fields: tuple[str, ...]  # with a reader: the current field order


def micros(value: datetime) -> int:
    """A timezone-aware ``datetime`` as integer microseconds since the epoch (exact)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


def _parsed(rv: RecordVersion) -> dict[str, Any]:
    return cast(dict[str, Any], parse_schema(_without_logical_types(rv.schema)))


class SinkDecoder:
    """Decode framed records into ``(record name, datum)`` for the sink's row builders.

    Args:
        codec: the pipeline codec; its catalog gives the kept versions, and it decodes
            (and raises for) everything the fast path does not take.
        stored: record names to decode; other known records come back with datum None.
    """

    def __init__(self, codec: Codec, stored: Iterable[str] = STORED_RECORDS) -> None:
        self._codec = codec
        wanted = self._stored = frozenset(stored)
        catalog = codec.catalog
        current = {name: catalog.current(name) for name in catalog.names()}
        readers = {name: _parsed(rv) for name, rv in current.items() if name in wanted}
        self._plans: dict[bytes, _Plan] = {}
        for rv in catalog.all_versions():
            header = single_object_header(rv.fingerprint)
            if rv.name not in wanted:
                self._plans[header] = _Plan(rv.name, None, None, ())
            elif rv.fingerprint == current[rv.name].fingerprint:
                self._plans[header] = _Plan(rv.name, readers[rv.name], None, ())
            else:
                fields = tuple(str(f["name"]) for f in current[rv.name].schema["fields"])
                self._plans[header] = _Plan(rv.name, _parsed(rv), readers[rv.name], fields)

    def decode(self, data: bytes, *, topic: str | None = None) -> tuple[str, dict[str, Any] | None]:
        """The record's name and datum (current version's shape, timestamps as µs ints).

        Raises the codec's typed errors (``CodecError`` subclasses) for bytes it cannot read.
        """
        plan = self._plans.get(data[:SINGLE_OBJECT_HEADER_SIZE])
        if plan is None:
            return self._through_codec(data, topic)
        name, writer, reader, fields = plan
        if writer is None:
            return name, None
        body = BytesIO(data)
        body.seek(SINGLE_OBJECT_HEADER_SIZE)
        try:
            datum = cast(
                dict[str, Any],
                schemaless_reader(
                    body,
                    writer,
                    reader,
                    return_record_name=True,
                    return_record_name_override=True,
                ),
            )
        except Exception:  # fastavro raises many types; the codec names them
            return self._through_codec(data, topic)
        if body.tell() != len(data):
            return self._through_codec(data, topic)  # raises CorruptRecordError
        if fields:
            datum = {field: datum[field] for field in fields}
        return name, datum

    def _through_codec(self, data: bytes, topic: str | None) -> tuple[str, dict[str, Any] | None]:
        decoded = self._codec.decode(data, topic=topic)
        if decoded.name not in self._stored:
            return decoded.name, None
        datum = {k: micros(v) if isinstance(v, datetime) else v for k, v in decoded.datum.items()}
        return decoded.name, datum
