"""Server envelopes -> ``Inter1Event`` records: window placement, deterministic ids.

Analysis runs over windows (8 s, advancing 3 s); each window's events arrive together.
:class:`WindowPlacer` places every envelope of one connection in its window, in session
media time (``media_offset_s`` + connection time), which is what the published watermark
and the event ids are about:

- anchored kinds name their window: ``signal.detected`` / ``engagement.updated``
  (``start``), ``signal.ended`` (``end``; after ``session.closing`` it may close a signal
  at the media end instead, so there it joins a window like the unanchored kinds),
  ``conversation_quality.updated`` (its timeline entry's ``start``; its ``end`` is how far
  the window's media reaches),
  ``coverage.dropped`` (a shed window's owned slice ``[start, end)``: window
  ``start - (window - hop)`` on the hop grid, ``end`` how far its media reaches);
- ``feedback.generated`` closes the window before it;
- every other window kind (``signal.updated``, ``coverage.degraded``, unknown values)
  belongs to the window of the next anchored event (they come first in a window);
- ``session.*``, ``error`` and unknown kinds are connection facts, not window events.

``event_id`` is a hash of session id, event type, the window's media time in ms, the
subject (signal type) and the event's ordinal among equal (window, type, subject) events:
a replay of the same publication, or a re-analysis of an already published window, gets
the same id. Connection facts hash the incarnation and their ordinal instead.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.inter1_events import PAYLOAD_BRANCHES, payload_from_envelope

__all__ = ["CONNECTION_KINDS", "EventContext", "Placed", "WindowPlacer", "event_record"]

CONNECTION_KINDS = frozenset(
    {"session.ready", "session.updated", "session.closing", "session.ended", "error"}
)
"""Kinds that are facts of a connection, not of a media window."""

_CLOSES_WINDOW = frozenset({"feedback.generated"})


@dataclass(frozen=True)
class EventContext:
    """What every record of one connection shares."""

    session_id: str
    api_version: str
    incarnation: int
    media_offset_s: float
    tenant: str | None = None
    app: str | None = None


@dataclass(frozen=True)
class Placed:
    """One envelope with its place: window media time (None: a connection fact)."""

    envelope: Mapping[str, Any]
    event_seq: int
    window_s: float | None
    reach_s: float | None
    """Session media time up to which the window's media is final (None: unknown)."""
    event_id: str


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class WindowPlacer:
    """Places the envelopes of one connection; see the module docstring for the rules."""

    def __init__(self, context: EventContext, *, window_s: float = 8.0, hop_s: float = 3.0) -> None:
        self._ctx = context
        self._lead_s = window_s - hop_s
        self._hop_s = hop_s
        self._seq = 0
        self._pending: list[tuple[Mapping[str, Any], int]] = []
        self._last_window: float | None = None
        self._closing = False
        self._ordinals: Counter[tuple[str, ...]] = Counter()

    def add(self, envelope: Mapping[str, Any]) -> list[Placed]:
        """Take the next envelope; the envelopes now placed, in arrival order."""
        seq, self._seq = self._seq, self._seq + 1
        kind = str(envelope.get("type", ""))
        if kind == "session.closing":
            self._closing = True
        if kind == "session.ended":
            # Nothing can anchor after the end: what waits joins the last window now, as
            # ``finish`` would place it, so the end stays the connection's last record
            # (consumers keyed by session, like the cues app, close the session on it).
            return [*self.finish(), self._place(envelope, seq, None, None)]
        if kind in CONNECTION_KINDS or kind not in PAYLOAD_BRANCHES:
            return [self._place(envelope, seq, None, None)]
        drained_end = self._closing and kind == "signal.ended"
        anchor = None if drained_end else self._anchor(kind, envelope.get("data"))
        if anchor is None:
            if kind in _CLOSES_WINDOW and self._last_window is not None and not self._pending:
                return [self._place(envelope, seq, self._last_window, None)]
            self._pending.append((envelope, seq))
            return []
        window, reach = anchor
        self._last_window = window
        placed = [self._place(env, s, window, None) for env, s in self._pending]
        self._pending.clear()
        placed.append(self._place(envelope, seq, window, reach))
        return placed

    def finish(self) -> list[Placed]:
        """The connection ended: unplaced envelopes join the last window."""
        window = self._last_window if self._last_window is not None else 0.0
        placed = [self._place(env, s, window, None) for env, s in self._pending]
        self._pending.clear()
        return placed

    def _anchor(  # noqa: PLR0911 - one return per anchored kind
        self, kind: str, data: Any
    ) -> tuple[float, float | None] | None:
        """(window, reach) in connection time, or None for an unanchored kind."""
        if not isinstance(data, Mapping):
            return None
        if kind in ("signal.detected", "engagement.updated"):
            start = _number(data.get("start"))
            return None if start is None else (start, None)
        if kind == "signal.ended":
            end = _number(data.get("end"))
            return None if end is None else (end, None)
        if kind == "conversation_quality.updated":
            timeline = data.get("timeline")
            if isinstance(timeline, list) and timeline and isinstance(timeline[-1], Mapping):
                start, end = _number(timeline[-1].get("start")), _number(timeline[-1].get("end"))
                return None if start is None else (start, end)
            return None
        if kind == "coverage.dropped":
            ranges = data.get("ranges")
            if isinstance(ranges, list) and ranges and all(isinstance(r, Mapping) for r in ranges):
                starts = [s for r in ranges if (s := _number(r.get("start"))) is not None]
                ends = [e for r in ranges if (e := _number(r.get("end"))) is not None]
                if starts and ends:
                    grid = round(max(0.0, min(starts) - self._lead_s) / self._hop_s)
                    return (grid * self._hop_s, max(ends))
        return None

    def _place(
        self, envelope: Mapping[str, Any], seq: int, window: float | None, reach: float | None
    ) -> Placed:
        ctx = self._ctx
        kind = str(envelope.get("type", ""))
        if window is None:
            identity: tuple[str, ...] = (kind, f"incarnation={ctx.incarnation}")
            window_s = None
        else:
            window_s = ctx.media_offset_s + window
            data = envelope.get("data")
            subject = str(data.get("signal_type", "")) if isinstance(data, Mapping) else ""
            identity = (kind, f"window_ms={_ms(window_s)}", subject)
        ordinal = self._ordinals[identity]
        self._ordinals[identity] += 1
        text = "\x1f".join((ctx.session_id, *identity, str(ordinal)))
        event_id = hashlib.sha256(text.encode()).hexdigest()[:32]
        reach_s = None if reach is None else ctx.media_offset_s + reach
        return Placed(envelope, seq, window_s, reach_s, event_id)


def _timestamp(value: Any, default: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if (seconds := _number(value)) is not None:
        return datetime.fromtimestamp(seconds, UTC)
    return default


def event_record(
    placed: Placed,
    context: EventContext,
    *,
    chunk_seq: int | None,
    first_chunk_seq: int | None,
    received_at: datetime,
) -> dict[str, Any]:
    """The ``Inter1Event`` datum of a placed envelope (payload times stay connection-relative)."""
    envelope = placed.envelope
    correlation = envelope.get("correlation_id")
    return {
        "event_id": placed.event_id,
        "session_id": context.session_id,
        "api_version": context.api_version,
        "event_type": str(envelope.get("type", "")),
        "timestamp": _timestamp(envelope.get("timestamp"), received_at),
        "correlation_id": correlation if isinstance(correlation, str) else "",
        "incarnation": context.incarnation,
        "event_seq": placed.event_seq,
        "media_offset_s": context.media_offset_s,
        "chunk_seq": chunk_seq,
        "first_chunk_seq": first_chunk_seq,
        "received_at": received_at,
        "tenant": context.tenant,
        "app": context.app,
        "payload": payload_from_envelope(envelope),
    }
