"""Per-session usage accounting (what would be billed) and the ledger the HTTP endpoint reads.

Media time is kept in integer milliseconds so that ``analysed_ms + dropped_ms ==
media_received_ms`` holds exactly once a session has ended. ``degraded_ms`` is part of
``analysed_ms`` (analysed with partial video, billed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from simulator.skips import Range, subtract

__all__ = ["SessionUsage", "UsageLedger", "utc_now"]


def utc_now() -> str:
    """The current UTC time as ISO 8601 with a ``Z``."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class SessionUsage:
    """Accounting of one session."""

    session_id: str
    api_version: str
    model: str | None
    key_id: str
    faults: str
    started_at: str = field(default_factory=utc_now)
    ended_at: str | None = None
    end_reason: str | None = None
    close_code: int | None = None
    bytes_received: int = 0
    frames_received: int = 0
    media_received_ms: int = 0
    analysed_ms: int = 0
    degraded_ms: int = 0
    dropped_ms: int = 0
    windows_analysed: int = 0
    windows_dropped: int = 0
    analysed_ranges: list[tuple[int, int]] = field(default_factory=list)
    dropped_ranges: list[tuple[int, int, str]] = field(default_factory=list)

    def analysed(self, start_ms: int, end_ms: int, degraded_ms: int) -> None:
        """Record an analysed and delivered slice."""
        self.analysed_parts([(start_ms, end_ms)], (), degraded_ms)

    def analysed_parts(
        self, parts: Sequence[Range], stream_skips: Sequence[Range], degraded_ms: int
    ) -> None:
        """Record one analysed window: its ``parts`` billed, its ``stream_skips`` dropped."""
        for start_ms, end_ms in stream_skips:
            self._drop(start_ms, end_ms, "stream_skip")
        for start_ms, end_ms in parts:
            self.analysed_ms += end_ms - start_ms
            self.analysed_ranges.append((start_ms, end_ms))
        self.degraded_ms += degraded_ms
        self.windows_analysed += 1

    def dropped(
        self, start_ms: int, end_ms: int, reason: str, stream_skips: Sequence[Range] = ()
    ) -> None:
        """Record a window not analysed (or not delivered); its stream skips keep that reason."""
        for piece in sorted([*stream_skips, *subtract([(start_ms, end_ms)], stream_skips)]):
            self._drop(*piece, "stream_skip" if piece in stream_skips else reason)
        self.windows_dropped += 1

    def _drop(self, start_ms: int, end_ms: int, reason: str) -> None:
        self.dropped_ms += end_ms - start_ms
        self.dropped_ranges.append((start_ms, end_ms, reason))

    def to_json(self) -> dict[str, Any]:
        """The record served by ``GET /usage`` (seconds derived from the exact ms values)."""
        return {
            "session_id": self.session_id,
            "api_version": self.api_version,
            "model": self.model,
            "key_id": self.key_id,
            "faults": self.faults,
            "state": "ended" if self.ended_at else "active",
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "close_code": self.close_code,
            "bytes_received": self.bytes_received,
            "frames_received": self.frames_received,
            "media_received_ms": self.media_received_ms,
            "analysed_ms": self.analysed_ms,
            "degraded_ms": self.degraded_ms,
            "dropped_ms": self.dropped_ms,
            "pending_ms": self.media_received_ms - self.analysed_ms - self.dropped_ms,
            "media_received_seconds": self.media_received_ms / 1000,
            "analysed_seconds": self.analysed_ms / 1000,
            "degraded_seconds": self.degraded_ms / 1000,
            "dropped_seconds": self.dropped_ms / 1000,
            "windows_analysed": self.windows_analysed,
            "windows_dropped": self.windows_dropped,
            "analysed_ranges": [
                {"start": a / 1000, "end": b / 1000} for a, b in self.analysed_ranges
            ],
            "dropped_ranges": [
                {"start": a / 1000, "end": b / 1000, "reason": r} for a, b, r in self.dropped_ranges
            ],
        }


@dataclass
class UsageLedger:
    """Every session this simulator served since it started (active and ended)."""

    sessions: dict[str, SessionUsage] = field(default_factory=dict)

    def open(self, usage: SessionUsage) -> None:
        """Register a new session."""
        self.sessions[usage.session_id] = usage

    def get(self, session_id: str) -> SessionUsage | None:
        """One session's usage, or None."""
        return self.sessions.get(session_id)

    def summary(self) -> dict[str, Any]:
        """All sessions plus totals."""
        records = [u.to_json() for u in self.sessions.values()]
        totals = {
            key: sum(r[key] for r in records)
            for key in ("media_received_ms", "analysed_ms", "degraded_ms", "dropped_ms")
        }
        active = sum(1 for u in self.sessions.values() if u.ended_at is None)
        return {"sessions": records, "totals": totals, "active_sessions": active}
