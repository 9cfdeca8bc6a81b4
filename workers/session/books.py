"""The books of one video session: usage ledger, progress snapshots and dead letters.

Everything here is queued on the worker's :class:`~workers.session.outbox.Outbox` and
published with the session's next progress record: usage records tiling its media
(analysed, dropped by the service, shed at the worker, poison chunks, a failed session's
rest), the re-analysed seconds of a new connection, and the dead letters of a failed session
or a poison chunk.
"""

from __future__ import annotations

from typing import Any

from structlog.stdlib import BoundLogger

from workers.session import metrics
from workers.session.dead_letters import session_dead_letter
from workers.session.exceptions import ConnectionClosedError, PoisonChunkError
from workers.session.outbox import Outbox
from workers.session.reconnect import policy_for
from workers.session.segmenter import ChunkRef
from workers.session.state_store import SessionProgress
from workers.session.usage import Range, UsageLedger, classify_dropped

__all__ = ["SessionBooks"]


class SessionBooks:
    """Usage, dead letters and progress snapshots of one session (see the module)."""

    def __init__(
        self, progress: SessionProgress, outbox: Outbox, api_version: str, log: BoundLogger
    ) -> None:
        self.progress = progress
        self.session_id = progress.session_id
        self._outbox = outbox
        self._log = log
        self.ledger = UsageLedger(
            progress.session_id,
            api_version,
            progress.tenant,
            progress.app,
            progress.accounted_ms,
            list(progress.dropped),
            list(progress.degraded),
        )
        self.correlation: str | None = None
        """Correlation id of the current connection (usage records carry it)."""
        self.first_chunk: tuple[int, int] | None = None
        """(offset, seq) of the first chunk this worker saw (the unclaimed state's restart)."""

    def mark_dirty(self) -> None:
        """Have the next publish write the session's progress."""
        self._outbox.progress_changed(self.session_id, self.snapshot)

    def account(self, until_s: float, rest_reason: str = "analysed") -> None:
        """Queue the usage records of the media up to ``until_s``."""
        for record in self.ledger.account(
            until_s,
            incarnation=max(0, self.progress.incarnation),
            correlation_id=self.correlation,
            rest_reason=rest_reason,
        ):
            self._outbox.usage(self.session_id, record)

    def reanalysed(self, offset_s: float, incarnation: int) -> None:
        """Queue the record of the seconds a new connection re-sends from ``offset_s``."""
        record = self.ledger.reanalysed(
            offset_s,
            self.ledger.accounted_until_s,
            incarnation=incarnation,
            correlation_id=self.correlation,
        )
        if record is not None:
            self._outbox.usage(self.session_id, record)

    def note_coverage(
        self, kind: str, data: dict[str, Any], offset_s: float, sent: list[Range]
    ) -> None:
        """A ``coverage.dropped`` / ``coverage.degraded`` event's ranges, to account later;
        dropped ranges are told apart by ``sent`` (the media this connection sent, session
        time): shed by the service, or skipped by the stream (:func:`classify_dropped`)."""
        for item in data.get("ranges") or ():
            if not isinstance(item, dict):
                continue
            start, end = item.get("start"), item.get("end")
            if not isinstance(start, int | float) or not isinstance(end, int | float):
                continue
            if kind == "coverage.dropped":
                own = self.ledger.own_dropped()
                for a, b, reason in classify_dropped(offset_s + start, offset_s + end, sent, own):
                    self.ledger.note_dropped(a, b, reason)
            else:
                self.ledger.note_degraded(offset_s + start, offset_s + end)

    def finish(self) -> None:
        """The session closed normally: account the rest of its media."""
        self.account(self.progress.media_end_s)
        self.progress.status = "closed"
        self.mark_dirty()

    def fail(self, exc: ConnectionClosedError, cause: str, attempts: int) -> None:
        """The session failed for good: its rest is a session error, with a dead letter."""
        self.progress.status = "failed"
        self.account(self.progress.media_end_s, rest_reason="session_error")
        self.mark_dirty()
        verdict = "retries exhausted" if policy_for(exc.close_code).retriable else "never retried"
        message = (
            f"session {self.session_id} failed after {attempts} connection attempt(s): "
            f"{exc} ({cause}, {verdict})"
        )
        self._log.error(
            "session_failed", close_code=exc.close_code, error_code=exc.error_code, cause=cause
        )
        self._outbox.dead_letter(
            self.session_id,
            session_dead_letter(
                self.session_id,
                error_type="SessionFailedError",
                error_code=exc.error_code or str(exc.close_code),
                message=message,
            ),
        )

    def shed(self, chunk: ChunkRef, age_s: float) -> None:
        """A live chunk too old to send: its media counts as shed at the worker."""
        self.ledger.note_dropped(chunk.media_start_s, chunk.media_end_s, "worker_shed")
        metrics.SHED_SECONDS.inc(chunk.media_end_s - chunk.media_start_s)
        self._log.warning("chunk_shed", seq=chunk.seq, age_s=round(age_s, 3))

    def dead_letter_chunk(self, chunk: ChunkRef, exc: PoisonChunkError) -> None:
        """A chunk the service cannot take: dead-lettered, its media dropped."""
        self.ledger.note_dropped(chunk.media_start_s, chunk.media_end_s, "poison_chunk")
        self._log.error("chunk_dead_lettered", seq=chunk.seq, error=str(exc))
        self._outbox.dead_letter(
            self.session_id,
            session_dead_letter(
                self.session_id,
                error_type=type(exc).__name__,
                error_code="ih6002",
                message=str(exc),
                offset=chunk.offset,
            ),
        )

    def snapshot(self) -> SessionProgress:
        """A copy of the progress with the ledger's position, to write."""
        progress = self.progress
        progress.accounted_ms = self.ledger.accounted_ms
        progress.dropped = list(self.ledger.dropped)
        progress.degraded = list(self.ledger.degraded)
        return progress.copy()

    def unclaimed(self) -> SessionProgress:
        """The session's first state, claiming nothing (written before its records)."""
        first = self.first_chunk
        return self.progress.unclaimed(*(first if first is not None else (None, None)))
