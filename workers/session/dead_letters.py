"""``DeadLetter`` records of the session worker: a bad chunk-topic record, a failed session."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.batch_handler import Record

__all__ = ["record_dead_letter", "session_dead_letter"]

_STAGE = "session-worker"


def record_dead_letter(record: Record, exc: Exception, session_id: str | None) -> dict[str, Any]:
    """A chunk-topic record that could not be relayed, with its original bytes and reason."""
    return {
        "stage": _STAGE,
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "key": record.key,
        "value": record.value,
        "error_type": type(exc).__name__,
        "error_code": None,
        "error_message": str(exc),
        "retriable": bool(getattr(exc, "retriable", False)),
        "session_id": session_id,
        "failed_at": datetime.now(UTC),
        "headers": dict(record.headers or ()),
    }


def session_dead_letter(
    session_id: str,
    *,
    error_type: str,
    error_code: str | None,
    message: str,
    offset: int | None = None,
) -> dict[str, Any]:
    """A video session (or one of its chunks) given up by the worker, not a single record."""
    return {
        "stage": _STAGE,
        "source_topic": None,
        "source_partition": None,
        "source_offset": offset,
        "key": session_id.encode(),
        "value": None,
        "error_type": error_type,
        "error_code": error_code,
        "error_message": message,
        "retriable": False,
        "session_id": session_id,
        "failed_at": datetime.now(UTC),
        "headers": {},
    }
