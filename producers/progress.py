"""Progress bars for file ingest (tqdm on stderr, only on a terminal) and the summary line."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from producers.probe import MediaInfo
from producers.session import SessionResult

__all__ = ["ProgressBars", "summary_line"]


class ProgressBars:
    """One bar per session with a known duration: media seconds done / total, rate × real time."""

    def __init__(self, *, enabled: bool | None = None, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._bars: dict[str, Any] = {}
        self._done: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def started(self, session_id: str, label: str, info: MediaInfo) -> None:
        """Create a bar for a session (no bar without a terminal or a known duration)."""
        total_s = info.duration_s
        if not self._enabled or total_s is None:
            return
        from tqdm import tqdm

        self._bars[session_id] = tqdm(
            total=round(total_s, 2),
            desc=label if len(label) <= 30 else "…" + label[-29:],
            unit="s",
            file=self._stream,
            position=len(self._bars),
            leave=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s media {postfix}",
        )
        self._done[session_id] = 0.0
        self._started[session_id] = time.monotonic()

    def progress(self, session_id: str, media_end_s: float) -> None:
        """Move a session's bar to ``media_end_s`` media seconds."""
        bar = self._bars.get(session_id)
        if bar is None:
            return
        step = media_end_s - self._done[session_id]
        self._done[session_id] = media_end_s
        elapsed = max(1e-6, time.monotonic() - self._started[session_id])
        bar.set_postfix_str(f"{media_end_s / elapsed:.1f}× real time", refresh=False)
        bar.update(round(step, 3))

    def close(self) -> None:
        """Close every bar (safe to call twice)."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


def summary_line(results: list[SessionResult], elapsed_s: float) -> str:
    """One line: sources by outcome, chunks, media seconds, MiB, wall time and rate.

    ``3 sources: 2 completed, 1 source_error; 12 chunks, 24.0 media s, 1.2 MiB in 0.8 s
    (30.0× real time)``, plus what a Kafka outage did (spooled, dropped chunks) if one came.
    """
    by_reason: dict[str, int] = {}
    for result in results:
        key = result.reason or ("failed to open" if result.error else "not started")
        by_reason[key] = by_reason.get(key, 0) + 1
    chunks = sum(r.totals.chunks for r in results)
    media = sum(r.totals.media_seconds for r in results)
    size = sum(r.totals.bytes for r in results)
    states = ", ".join(f"{count} {reason}" for reason, count in sorted(by_reason.items()))
    rate = media / elapsed_s if elapsed_s > 0 else 0.0
    noun = "source" if len(results) == 1 else "sources"
    line = (
        f"{len(results)} {noun}: {states}; {chunks} chunks, {media:.1f} media s, "
        f"{size / 1048576:.1f} MiB in {elapsed_s:.1f} s ({rate:.1f}× real time)"
    )
    return line + _outage_part(results)


def _outage_part(results: list[SessionResult]) -> str:
    """``; Kafka outage: 5 chunks spooled, 2 dropped (4.0 media s), 3 records left in spool``
    (empty when no session met an outage)."""
    stats = [r.delivery for r in results]
    if not any(s.outages for s in stats):
        return ""
    spooled = sum(s.spooled_chunks for s in stats)
    dropped = sum(s.dropped_chunks for s in stats)
    part = f"; Kafka outage: {spooled} chunks spooled, {dropped} dropped"
    if dropped:
        part += f" ({sum(s.dropped_media_s for s in stats):.1f} media s)"
    if left := sum(s.left_in_spool for s in stats):
        part += f", {left} records left in spool for the next start"
    return part
