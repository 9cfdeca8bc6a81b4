"""Usage accounting of one video session: every media second once, re-analysis apart.

The ledger tiles session media time from 0: :meth:`UsageLedger.account` turns
``[accounted_until, until)`` into records whose ranges are analysed (with the degraded
seconds inside them), dropped by the service (``coverage.dropped``), shed at the worker or
lost to a failed session, never overlapping. Seconds re-sent after a failover are separate
``reanalysed_s`` records (billed by the vendor again, outside the once-per-second sums).
Times are whole milliseconds inside, so ranges join exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["UsageLedger", "classify_dropped", "subtract"]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _merge(ranges: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, reason in sorted(ranges):
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        elif end > start:
            merged.append((start, end, reason))
    return merged


Range = tuple[float, float]

_SLIVER_S = 0.1
"""Pieces shorter than this are clock noise (the service's media clock ends at a packet,
a chunk's at its container's end), not media sent or skipped."""


def subtract(ranges: list[Range], cuts: list[Range]) -> list[Range]:
    """``ranges`` minus ``cuts`` (both sorted or not), in order."""
    out: list[Range] = []
    for start, end in sorted(ranges):
        pieces = [(start, end)]
        for a, b in sorted(cuts):
            pieces = [
                piece
                for s, e in pieces
                for piece in ((s, min(e, a)), (max(s, b), e))
                if piece[1] > piece[0]
            ]
        out += pieces
    return out


def classify_dropped(
    start_s: float, end_s: float, sent: list[Range], own: list[Range]
) -> list[tuple[float, float, str]]:
    """A service ``coverage.dropped`` range, split by why: media the worker sent is
    ``backpressure`` (the service shed it), media it never sent is a ``stream_skip`` (a gap
    in the stream), except what the worker already accounts itself (``own``: shed here,
    poison chunks). Slivers under 0.1 s join their neighbour's reason."""
    skipped = [(a, b) for a, b in subtract([(start_s, end_s)], sent) if b - a >= _SLIVER_S]
    pieces = [(a, b, "backpressure") for a, b in subtract([(start_s, end_s)], skipped)]
    pieces += [(a, b, "stream_skip") for a, b in subtract(skipped, own) if b - a >= _SLIVER_S]
    return sorted(pieces)


@dataclass
class UsageLedger:
    """Per-session usage state; ``accounted_ms`` and the pending ranges persist in state."""

    session_id: str
    api_version: str
    tenant: str | None = None
    app: str | None = None
    accounted_ms: int = 0
    dropped: list[tuple[int, int, str]] = field(default_factory=list)
    degraded: list[tuple[int, int]] = field(default_factory=list)

    @property
    def accounted_until_s(self) -> float:
        """Session media time accounted so far."""
        return self.accounted_ms / 1000

    def note_dropped(self, start_s: float, end_s: float, reason: str) -> None:
        """Media not analysed (reported by the service or shed here), to account later."""
        self.dropped.append((_ms(start_s), _ms(end_s), reason))

    def own_dropped(self) -> list[Range]:
        """Pending ranges the worker dropped itself (every reason but the service's)."""
        return [
            (a / 1000, b / 1000)
            for a, b, r in self.dropped
            if r not in ("backpressure", "stream_skip")
        ]

    def note_degraded(self, start_s: float, end_s: float) -> None:
        """Media analysed with partial video (billed)."""
        self.degraded.append((_ms(start_s), _ms(end_s)))

    def account(
        self,
        until_s: float,
        *,
        incarnation: int,
        correlation_id: str | None,
        rest_reason: str = "analysed",
    ) -> list[dict[str, Any]]:
        """Records tiling ``[accounted, until)``; the rest of it counts as ``rest_reason``
        (``analysed``, or a dropped reason such as ``session_error``)."""
        start, until = self.accounted_ms, _ms(until_s)
        if until <= start:
            return []
        inside = [
            (max(a, start), min(b, until), r) for a, b, r in _merge(self.dropped) if b > start
        ]
        inside = [(a, b, r) for a, b, r in inside if a < until]
        records: list[dict[str, Any]] = []
        cursor = start
        for a, b, reason in inside:
            if a > cursor:
                records.append(self._rest(cursor, a, rest_reason, incarnation, correlation_id))
            records.append(self._record(a, b, reason, incarnation, correlation_id, dropped=b - a))
            cursor = b
        if until > cursor:
            records.append(self._rest(cursor, until, rest_reason, incarnation, correlation_id))
        self.accounted_ms = until
        self.dropped = [(a, b, r) for a, b, r in self.dropped if b > until]
        self.degraded = [(a, b) for a, b in self.degraded if b > until]
        return records

    def reanalysed(
        self, start_s: float, end_s: float, *, incarnation: int, correlation_id: str | None
    ) -> dict[str, Any] | None:
        """The record of seconds re-sent after a failover (None when there are none)."""
        start, end = _ms(start_s), _ms(end_s)
        if end <= start:
            return None
        return self._record(
            start, end, "failover", incarnation, correlation_id, reanalysed=end - start
        )

    def _rest(
        self, start: int, end: int, reason: str, incarnation: int, correlation_id: str | None
    ) -> dict[str, Any]:
        if reason != "analysed":
            return self._record(
                start, end, reason, incarnation, correlation_id, dropped=end - start
            )
        degraded = sum(
            max(0, min(b, end) - max(a, start))
            for a, b, _ in _merge([(a, b, "") for a, b in self.degraded])
        )
        return self._record(
            start,
            end,
            reason,
            incarnation,
            correlation_id,
            analysed=end - start - degraded,
            degraded=degraded,
        )

    def _record(
        self,
        start: int,
        end: int,
        reason: str,
        incarnation: int,
        correlation_id: str | None,
        *,
        analysed: int = 0,
        degraded: int = 0,
        dropped: int = 0,
        reanalysed: int = 0,
    ) -> dict[str, Any]:
        parts = [self.session_id, "worker", reason, str(start), str(end)]
        if reanalysed:
            parts.append(f"incarnation={incarnation}")  # each re-send is billed again
        usage_id = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
        return {
            "usage_id": usage_id,
            "session_id": self.session_id,
            "api_version": self.api_version,
            "media_start_s": start / 1000,
            "media_end_s": end / 1000,
            "analysed_s": analysed / 1000,
            "degraded_s": degraded / 1000,
            "dropped_s": dropped / 1000,
            "reanalysed_s": reanalysed / 1000,
            "reason": reason,
            "source": "worker",
            "incarnation": incarnation,
            "correlation_id": correlation_id,
            "tenant": self.tenant,
            "app": self.app,
            "recorded_at": datetime.now(UTC),
        }
