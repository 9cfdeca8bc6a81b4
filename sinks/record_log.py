"""The landing sink: decoded Avro records into ``record_log``, one row per Kafka coordinate.

Batches are per topic-partition. Each insert carries a stable ``insert_deduplication_token``
(``topic:partition:first-last``) so a retried insert of the same batch is dropped by the
table's dedup window, and offsets are committed only after the insert returned.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas.codec import Decoded

__all__ = ["COLUMNS", "LoggedRecord", "datum_json", "dedup_token", "insert_batch"]

COLUMNS = (
    "topic",
    "partition",
    "offset",
    "record_key",
    "record_name",
    "writer_version",
    "datum_json",
    "produced_at",
)


@dataclass(frozen=True)
class LoggedRecord:
    """One decoded record with its Kafka coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int
    decoded: Decoded


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        # Media payloads are large; the landing row keeps their size, not their bytes.
        if len(value) > 256:
            return {"bytes_len": len(value)}
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")


# one encoder: json.dumps with options builds a new JSONEncoder on every call
_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), sort_keys=True)


def datum_json(datum: dict[str, Any]) -> str:
    """A decoded datum as compact JSON (union branches as ``[name, value]``)."""
    return _ENCODER.encode(datum)


def dedup_token(batch: Sequence[LoggedRecord]) -> str:
    """``topic:partition:first-last``: stable for a retried batch."""
    first, last = batch[0], batch[-1]
    return f"{first.topic}:{first.partition}:{first.offset}-{last.offset}"


def insert_batch(client: Client, batch: Sequence[LoggedRecord]) -> str:
    """Insert one topic-partition batch idempotently; returns the dedup token used."""
    if not batch:
        raise ValueError("empty batch")
    if len({(r.topic, r.partition) for r in batch}) != 1:
        raise ValueError("a batch holds records of exactly one topic-partition")
    rows = [
        [
            r.topic,
            r.partition,
            r.offset,
            (r.key or b"").decode("utf-8", "replace"),
            r.decoded.name,
            r.decoded.writer_version or 0,
            datum_json(r.decoded.datum),
            datetime.fromtimestamp(r.timestamp_ms / 1000, tz=UTC),
        ]
        for r in batch
    ]
    token = dedup_token(batch)
    client.insert(
        "record_log",
        rows,
        column_names=list(COLUMNS),
        settings={"insert_deduplication_token": token},
    )
    return token
