"""The demo's per-session summary, read back from ClickHouse (through the sink).

Figures per session: signal intervals (and distinct types), the share of the engagement
timeline spent engaged, the last overall quality index, analysed / dropped / billed
(analysed + degraded) seconds from ``session_summaries``, the end-to-end latency of its
chunks (p50 / p99 over the ``chunk_latency`` view: a chunk's publication to the moment the
first analysis event after it became queryable) and the cues it produced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sinks.warehouse import Warehouse

__all__ = ["CueLine", "SessionSummary", "format_cues", "format_table", "read_summaries", "sql_list"]

_ID = re.compile(r"^[A-Za-z0-9._:-]+$")


def sql_list(values: Sequence[str]) -> str:
    """``('a', 'b')`` for an ``IN`` clause; values are ids (checked, never free text)."""
    for value in values:
        if not _ID.match(value):
            raise ValueError(f"not an id: {value!r}")
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


@dataclass(frozen=True)
class CueLine:
    """One cue a session produced."""

    rule: str
    severity: str
    media_start_s: float
    media_end_s: float
    message: str


@dataclass
class SessionSummary:
    """One row of the summary table."""

    session_id: str
    clip: str
    media_s: float = 0.0
    events: int = 0
    signals: int = 0
    signal_types: int = 0
    engaged_share: float = 0.0
    quality_index: float | None = None
    analysed_s: float = 0.0
    dropped_s: float = 0.0
    billed_s: float = 0.0
    chunks: int = 0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    session_error_s: float = 0.0
    """Media seconds the session worker could not have analysed (its session failed)."""
    cues: list[CueLine] = field(default_factory=list)


def read_summaries(warehouse: Warehouse, clips: Mapping[str, str]) -> list[SessionSummary]:
    """The summary of each session in ``clips`` (session id -> clip name), in clip order."""
    ids = sql_list(list(clips))
    rows = {
        str(r["session_id"]): r
        for r in warehouse.rows(
            "SELECT session_id, media_seconds, events, signals, signal_types, engaged_share, "
            "quality_index, analysed_s, dropped_s, billable_s "
            f"FROM session_summaries FINAL WHERE session_id IN {ids}"
        )
    }
    latency = {
        str(r["session_id"]): r
        for r in warehouse.rows(
            "SELECT session_id, count() AS chunks, "
            "quantileExactInclusive(0.5)(latency_s) AS p50, "
            "quantileExactInclusive(0.99)(latency_s) AS p99 "
            f"FROM chunk_latency WHERE session_id IN {ids} AND latency_s IS NOT NULL "
            "GROUP BY session_id"
        )
    }
    failed = {
        str(r["session_id"]): float(r["seconds"])
        for r in warehouse.rows(
            "SELECT session_id, sum(dropped_s) AS seconds FROM usage FINAL "
            f"WHERE session_id IN {ids} AND reason = 'session_error' GROUP BY session_id"
        )
    }
    cues: dict[str, list[CueLine]] = {}
    for r in warehouse.rows(
        "SELECT session_id, rule, severity, media_start_s, media_end_s, message "
        f"FROM cues FINAL WHERE session_id IN {ids} ORDER BY session_id, media_end_s, cue_id"
    ):
        cues.setdefault(str(r["session_id"]), []).append(
            CueLine(
                str(r["rule"]),
                str(r["severity"]),
                float(r["media_start_s"]),
                float(r["media_end_s"]),
                str(r["message"]),
            )
        )
    out = []
    for session_id, clip in clips.items():
        row: dict[str, Any] = rows.get(session_id, {})
        lat: dict[str, Any] = latency.get(session_id, {})
        quality = row.get("quality_index")
        out.append(
            SessionSummary(
                session_id=session_id,
                clip=clip,
                media_s=float(row.get("media_seconds", 0.0)),
                events=int(row.get("events", 0)),
                signals=int(row.get("signals", 0)),
                signal_types=int(row.get("signal_types", 0)),
                engaged_share=float(row.get("engaged_share", 0.0)),
                quality_index=None if quality is None else float(quality),
                analysed_s=float(row.get("analysed_s", 0.0)),
                dropped_s=float(row.get("dropped_s", 0.0)),
                billed_s=float(row.get("billable_s", 0.0)),
                chunks=int(lat.get("chunks", 0)),
                latency_p50_s=None if lat.get("p50") is None else float(lat["p50"]),
                latency_p99_s=None if lat.get("p99") is None else float(lat["p99"]),
                session_error_s=failed.get(session_id, 0.0),
                cues=cues.get(session_id, []),
            )
        )
    return out


_HEADERS = (
    "clip",
    "session",
    "media s",
    "events",
    "signals (types)",
    "engaged",
    "quality",
    "analysed s",
    "dropped s",
    "billed s",
    "e2e p50",
    "e2e p99",
    "cues",
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _cells(s: SessionSummary) -> tuple[str, ...]:
    return (
        s.clip,
        s.session_id[:8],
        f"{s.media_s:.1f}",
        str(s.events),
        f"{s.signals} ({s.signal_types})",
        f"{s.engaged_share:.0%}",
        "-" if s.quality_index is None else f"{s.quality_index:.1f}",
        f"{s.analysed_s:.1f}",
        f"{s.dropped_s:.1f}",
        f"{s.billed_s:.1f}",
        _seconds(s.latency_p50_s),
        _seconds(s.latency_p99_s),
        str(len(s.cues)),
    )


def format_table(summaries: Sequence[SessionSummary]) -> list[str]:
    """The summary as aligned text lines (header, rule, one line per session)."""
    rows = [_HEADERS, *(_cells(s) for s in summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(rows[0]), line(["-" * w for w in widths]), *(line(r) for r in rows[1:])]


def format_cues(summaries: Sequence[SessionSummary]) -> list[str]:
    """The cues of each session, one line each (``none`` for a session without)."""
    lines = []
    for s in summaries:
        if not s.cues:
            lines.append(f"{s.clip}: no cues")
        for cue in s.cues:
            lines.append(
                f"{s.clip}: {cue.rule} ({cue.severity}) at {cue.media_start_s:g}-"
                f"{cue.media_end_s:g} s: {cue.message}"
            )
    return lines
