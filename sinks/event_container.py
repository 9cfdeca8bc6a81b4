"""Inter1Event records as an Avro Object Container File that ClickHouse decodes itself.

The sink hands events to ClickHouse undecoded: ``INSERT INTO event_landing FORMAT Avro``
(migration 0006) reads them in C++, and materialized views fill the analytics tables. The
container is built around the records' own bytes, never re-encoded:

* **Header schema** (:func:`landing_schema`): a flat record ``Inter1EventRow`` of
  ``source_topic``, ``source_partition``, ``source_offset``, then every field of the
  ``Inter1Event`` writer schema, then ``row_end`` (the offset again). Avro's binary
  encoding of a record is its fields' encodings one after the other and does not depend on
  names, so a row is ``topic + partition + offset + <the record body> + offset``.
  Two renamings make ClickHouse accept the schema, again without changing a byte: every
  field of a payload branch is named ``<Branch>__<field>`` (ClickHouse maps the union to a
  ``Variant``, which refuses two branches of one type: ``SignalDetected`` and
  ``SignalUpdated`` have the same fields, error 36), and a nullable array
  ``["null", array]`` becomes ``["null", record{__items__: array}]`` (ClickHouse has no
  ``Nullable(Array)``; a ``Nullable(Tuple(__items__ Array))`` keeps null apart from ``[]``).
* **One block**: record count, byte length, the rows, the sync marker.

``row_end`` repeats the offset after the body: a body with bytes missing or left over
shifts every later field, so ClickHouse reads a ``row_end`` that differs from
``source_offset`` (or fails to parse) and the landing table's constraint refuses the insert
(``VIOLATED_CONSTRAINT``) instead of storing misread rows. The sink then finds the bad
record with fastavro (:mod:`sinks.decoding`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from schemas.avro_long import read_long

__all__ = [
    "CONTAINER_MAGIC",
    "container_header",
    "landing_schema",
    "ocf_container",
    "session_id_of",
    "zigzag",
]

CONTAINER_MAGIC = b"Obj\x01"
_SYNC = b"inter1-sink-sync"  # 16 bytes; any constant works, the reader takes it from the header
_PAYLOAD = "payload"


def zigzag(value: int) -> bytes:
    """Avro ``long`` encoding: zig-zag, then a little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    # up to four bytes unrolled (the sink writes two per event: Kafka offsets below 2**27)
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes(
            ((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21)
        )
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _strip_docs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_docs(v) for k, v in schema.items() if k not in ("doc", "default")}
    if isinstance(schema, list):
        return [_strip_docs(item) for item in schema]
    return schema


def _wrap_nullable_arrays(schema: Any, path: str) -> Any:
    """``["null", array]`` -> ``["null", record{items}]`` (same bytes), everywhere."""
    if isinstance(schema, list):
        if (
            len(schema) == 2
            and schema[0] == "null"
            and isinstance(schema[1], dict)
            and schema[1].get("type") == "array"
        ):
            items = _wrap_nullable_arrays(schema[1], path)
            return ["null", {"type": "record", "name": f"{path}__list", "fields": [
                {"name": "__items__", "type": items}
            ]}]  # fmt: skip
        return [_wrap_nullable_arrays(item, path) for item in schema]
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            fields = [
                {**f, "type": _wrap_nullable_arrays(f["type"], f"{schema['name']}_{f['name']}")}
                for f in schema["fields"]
            ]
            return {**schema, "fields": fields}
        if schema.get("type") == "array":
            return {**schema, "items": _wrap_nullable_arrays(schema["items"], path)}
    return schema


def landing_schema(event_schema: dict[str, Any]) -> dict[str, Any]:
    """The container header schema for records written with ``event_schema`` (module doc)."""
    fields = copy.deepcopy(_strip_docs(event_schema)["fields"])
    for field in fields:
        if field["name"] == _PAYLOAD:
            for branch in field["type"]:
                for member in branch["fields"]:
                    member["name"] = f"{branch['name']}__{member['name']}"
    row = {
        "type": "record",
        "name": "Inter1EventRow",
        "namespace": "ai.interhuman.pipeline.sink",
        "fields": [
            {"name": "source_topic", "type": "string"},
            {"name": "source_partition", "type": "int"},
            {"name": "source_offset", "type": "long"},
            *fields,
            {"name": "row_end", "type": "long"},
        ],
    }
    return dict(_wrap_nullable_arrays(row, "Inter1EventRow"))


def container_header(schema: dict[str, Any]) -> bytes:
    """OCF header: magic, metadata map (schema, codec null), sync marker."""
    meta = {
        b"avro.schema": json.dumps(schema, separators=(",", ":")).encode(),
        b"avro.codec": b"null",
    }
    parts = [CONTAINER_MAGIC, zigzag(len(meta))]
    for key, value in meta.items():
        parts += [zigzag(len(key)), key, zigzag(len(value)), value]
    parts += [zigzag(0), _SYNC]
    return b"".join(parts)


def ocf_container(
    header: bytes, topic: str, partition: int, rows: Sequence[tuple[int, bytes | memoryview]]
) -> bytes:
    """One container of ``(offset, record body)`` rows of one topic-partition.

    Args:
        header: :func:`container_header` of the :func:`landing_schema`.
        topic: the rows' topic.
        partition: the rows' partition.
        rows: offsets with the schemaless Avro bodies (the framing header removed).
    """
    encoded = topic.encode()
    prefix = zigzag(len(encoded)) + encoded + zigzag(partition)
    parts: list[bytes | memoryview] = []
    for offset, body in rows:
        at = zigzag(offset)
        parts += (prefix, at, body, at)
    block = b"".join(parts)
    return b"".join((header, zigzag(len(rows)), zigzag(len(block)), block, _SYNC))


def session_id_of(value: bytes, start: int) -> str | None:
    """The ``session_id`` of an Inter1Event body at ``value[start:]`` (its second field,
    after ``event_id``), read without decoding the rest; None when the bytes are not two
    Avro strings (the decoder then names what is wrong)."""
    try:
        first = value[start]
        if first < 0x80 and not first & 1:  # ids under 64 bytes: one-byte lengths
            pos = start + 1 + (first >> 1)
            second = value[pos]
            end = pos + 1 + (second >> 1)
            if second < 0x80 and not second & 1 and end <= len(value):
                return value[pos + 1 : end].decode("utf-8")
        length, pos = read_long(value, start)
        if length < 0:
            return None
        length, pos = read_long(value, pos + length)
        end = pos + length
        if length < 0 or end > len(value):
            return None
        return value[pos:end].decode("utf-8")
    except (IndexError, ValueError):  # cut short, over-long varint, not UTF-8
        return None
