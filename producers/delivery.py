"""Ordered delivery of one session's records: straight to Kafka, or through the spool in an outage.

Records go to the publisher with at most ``window`` of the session unacknowledged. An
**outage** starts when the client does not accept a record within ``ack_timeout_s``, does
not acknowledge one within ``ack_timeout_s`` of its send, or fails a delivery (never by
guessing from connection state). What happens then depends on the session:

* **Live** (a spool is given: network sources, devices, stdin, ``--realtime`` files): the
  records still unacknowledged are copied into the spool (the client keeps its own copies
  and may still deliver them), and every later record is appended to the spool, so the
  source keeps being read. A chunk that does not fit the spool's limit is dropped whole;
  consecutive drops make one run, reported when it ends (the next accepted chunk, or the
  session's end) as one DeadLetter naming the chunks' seq and media range. A drain task
  waits for the client to settle the copies it holds (removing the acknowledged prefix
  from the spool), then publishes the spool from its head, ``window`` records at a time,
  removing what Kafka acknowledged, until it is empty: the outage is over and records go
  straight to Kafka again. Spooled records always go before newer ones.
* **Not live** (files read as fast as they go): backpressure. The session waits for the
  acknowledgement however long it takes (the reader waits with it); nothing is lost.

Both log ``kafka_outage_started`` / ``kafka_outage_ended`` with the session id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from producers.exceptions import PublishError, PublishNotAcceptedError
from producers.publisher import Publisher
from producers.spool import Spool, SpoolBudget, SpoolEntry, SpoolRecord, spool_file
from runtime.logs import get_logger

__all__ = [
    "DeliveryStats",
    "DroppedChunks",
    "OutagePolicy",
    "SessionDelivery",
    "dropped_dead_letter",
]

_RETRY_BACKOFF_S = 1.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class OutagePolicy:
    """How sessions detect and ride out a Kafka outage (see ``ProducerSettings``).

    Without ``spool_dir`` (dry runs, tests of other parts) every session uses backpressure.
    """

    ack_timeout_s: float = 10.0
    stop_timeout_s: float = 10.0
    spool_dir: Path | None = None
    budget: SpoolBudget | None = None
    dead_letter_topic: str = "dead-letter"

    def spool_for(self, session_id: str) -> Spool | None:
        """A (not yet opened) spool for a live session, or None without a spool directory."""
        if self.spool_dir is None or self.budget is None:
            return None
        return Spool(spool_file(self.spool_dir, session_id), session_id, self.budget)


@dataclass
class DeliveryStats:
    """What a session's delivery did beyond sending: outages, spooled and dropped chunks."""

    outages: int = 0
    spooled_chunks: int = 0
    spooled_bytes: int = 0
    dropped_chunks: int = 0
    dropped_bytes: int = 0
    dropped_media_s: float = 0.0
    left_in_spool: int = 0
    """Records still in the spool when the session closed (published by the next start)."""


@dataclass
class DroppedChunks:
    """A run of consecutive chunks dropped because the spool was full."""

    first_seq: int
    last_seq: int
    media_start_s: float
    media_end_s: float
    chunks: int = 1
    bytes: int = 0


def dropped_dead_letter(
    session_id: str, run: DroppedChunks, *, limit_bytes: int, failed_at: datetime
) -> dict[str, Any]:
    """The DeadLetter datum accounting for a run of dropped chunks (no bytes kept)."""
    seqs = str(run.first_seq) if run.chunks == 1 else f"{run.first_seq}-{run.last_seq}"
    return {
        "stage": "producer",
        "source_topic": None,
        "source_partition": None,
        "source_offset": None,
        "key": session_id.encode(),
        "value": None,
        "error_type": "SpoolFullError",
        "error_code": "spool_full",
        "error_message": (
            f"Kafka outage and spool full ({limit_bytes} bytes): dropped {run.chunks} "
            f"chunk(s), seq {seqs}, media {run.media_start_s:.3f}-{run.media_end_s:.3f} s "
            f"({run.media_end_s - run.media_start_s:.3f} s, {run.bytes} bytes)"
        ),
        "retriable": False,
        "session_id": session_id,
        "failed_at": failed_at,
        "headers": {
            "first_seq": str(run.first_seq).encode(),
            "last_seq": str(run.last_seq).encode(),
            "chunks": str(run.chunks).encode(),
            "media_start_s": repr(run.media_start_s).encode(),
            "media_end_s": repr(run.media_end_s).encode(),
            "bytes": str(run.bytes).encode(),
        },
    }


class SessionDelivery:
    """Delivers one session's records in order (see the module doc). One caller at a time.

    ``dead_letter`` turns a dropped run into the record to publish (encoded by the session).
    ``stop`` (set on SIGINT/SIGTERM) bounds a backpressure wait to ``stop_timeout_s`` more.
    """

    def __init__(
        self,
        publisher: Publisher,
        session_id: str,
        *,
        spool: Spool | None,
        ack_timeout_s: float,
        window: int,
        dead_letter: Callable[[DroppedChunks], SpoolRecord] | None = None,
        stop: asyncio.Event | None = None,
        stop_timeout_s: float = 0.0,
    ) -> None:
        self._publisher = publisher
        self.session_id = session_id
        self._spool = spool
        self._ack_timeout_s = ack_timeout_s
        self._window = window
        self._dead_letter = dead_letter
        self._stop = stop
        self._stop_timeout_s = stop_timeout_s
        self._inflight: deque[tuple[SpoolRecord, asyncio.Future[Any], float]] = deque()
        self._spooling = False
        self._spool_opened = False
        self._lock = asyncio.Lock()
        self._drainer: asyncio.Task[None] | None = None
        self._run: DroppedChunks | None = None
        self._outage_started = 0.0
        self._last_spooled_seq: int | None = None
        self._totals: dict[str, Any] | None = None
        self._waiting = False  # backpressure: an outage is being waited out
        self._stop_deadline: float | None = None
        self.stats = DeliveryStats()
        self._log = get_logger("producers.delivery", session_id=session_id)

    @property
    def spools(self) -> bool:
        """True when the session spools in an outage (live), False when it waits (files)."""
        return self._spool is not None

    @property
    def spooling(self) -> bool:
        """True during an outage (records go to the spool)."""
        return self._spooling

    async def put(
        self,
        records: list[SpoolRecord],
        *,
        droppable: bool = False,
        totals: dict[str, Any] | None = None,
    ) -> bool:
        """Deliver one unit in order (a chunk's parts, or one session record).

        False when the unit (a ``droppable`` chunk) was dropped because the spool is full.
        ``totals`` (the session's totals with this unit) is kept with a spooled unit, so
        the next start can end a session whose producer died during an outage.
        """
        if totals is not None:
            self._totals = totals
        if self._spooling:
            return await self._to_spool(records, droppable=droppable)
        for index, record in enumerate(records):
            await self._send(record)
            if self._spooling:  # the outage started: the rest of the unit follows into the spool
                if rest := records[index + 1 :]:
                    await self._to_spool(rest, droppable=False)
                break
        if droppable:
            await self._close_run()
        return True

    async def resume(self) -> None:
        """Publish what an opened spool already holds before anything else (a spool left by
        a producer that exited during an outage)."""
        spool = self._require_spool()
        self._spool_opened = True
        if spool.records == 0:
            return
        self._spooling = True
        self._outage_started = time.monotonic()
        self._log.warning(
            "spool_resumed", spool=str(spool.path), records=spool.records, spooled_bytes=spool.bytes
        )
        self._drainer = asyncio.get_running_loop().create_task(self._drain([]))

    async def flush(
        self,
        stop: asyncio.Event | None = None,
        stop_timeout_s: float = 0.0,
        *,
        drain: bool = True,
    ) -> bool:
        """Wait until everything put so far is acknowledged; True when it was.

        During an outage this waits for Kafka to come back; once ``stop`` is set it waits
        ``stop_timeout_s`` more, then returns False (the records stay in the spool). With
        ``drain=False`` it returns as soon as an outage began (everything is spooled).
        """
        await self._close_run()
        while not self._spooling and self._inflight:
            _, future, sent = self._inflight[0]
            await self._await_oldest(future, sent)
        if not self._spooling:
            return True
        if not drain:
            return False
        drainer = self._drainer
        assert drainer is not None
        if stop is not None:
            stop_wait = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({drainer, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
            if not drainer.done():
                await asyncio.wait({drainer}, timeout=stop_timeout_s)
        else:
            await asyncio.wait({drainer})
        if drainer.done() and not drainer.cancelled() and drainer.exception() is not None:
            raise drainer.exception()  # type: ignore[misc]
        return drainer.done()

    def discard_unacknowledged(self) -> None:
        """Forget the records in flight (their delivery failed; the session ends in error)."""
        self._inflight.clear()

    async def close(self) -> None:
        """Stop draining and close the spool (kept on disk when it still holds records)."""
        drainer, self._drainer = self._drainer, None
        if drainer is not None and not drainer.done():
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)
        spool = self._spool
        if spool is not None and self._spool_opened:
            self.stats.left_in_spool = spool.records
            async with self._lock:
                await asyncio.to_thread(spool.close)
            if self.stats.left_in_spool:
                self._log.warning(
                    "spool_left_for_next_start",
                    spool=str(spool.path),
                    records=spool.records,
                    spooled_bytes=spool.bytes,
                )

    # -- direct -------------------------------------------------------------------------

    async def _send(self, record: SpoolRecord) -> None:
        """Hand one record to the publisher; start an outage when it is not taken in time."""
        if self._spool is None:  # backpressure: the send waits as long as it takes
            future = await self._send_waiting(record)
        else:
            try:
                future = await asyncio.wait_for(
                    self._publisher.send(record.key, record.value, topic=record.topic),
                    self._ack_timeout_s,
                )
            except TimeoutError:
                await self._start_outage(f"not accepted within {self._ack_timeout_s} s", [record])
                return
            except PublishError as exc:
                await self._start_outage(str(exc), [record])
                return
        self._inflight.append((record, future, time.monotonic()))
        while self._inflight and not self._spooling:
            _, oldest, sent = self._inflight[0]
            overdue = time.monotonic() - sent >= self._ack_timeout_s
            if oldest.done() or len(self._inflight) > self._window or overdue:
                await self._await_oldest(oldest, sent)
            else:
                break

    async def _await_oldest(self, future: asyncio.Future[Any], sent: float) -> None:
        """Settle the oldest in-flight record: acknowledged, or the outage starts."""
        remaining = sent + self._ack_timeout_s - time.monotonic()
        if not future.done():
            await asyncio.wait({future}, timeout=max(0.0, remaining))
        if not future.done():
            if self._spool is not None:
                await self._start_outage(f"not acknowledged within {self._ack_timeout_s} s", [])
                return
            self._outage_begins("not acknowledged")
            await self._wait_unless_stopped(future)
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            if self._spool is None:
                self._outage_begins("not delivered")
                await self._send_again()
                return
            await self._start_outage(str(exc or "delivery cancelled"), [])
            return
        self._inflight.popleft()
        if self._waiting:
            self._outage_ends()

    async def _send_waiting(self, record: SpoolRecord) -> asyncio.Future[Any]:
        """Backpressure: hand a record to the client however long it takes to take it."""
        while True:
            try:
                return await self._publisher.send(record.key, record.value, topic=record.topic)
            except PublishNotAcceptedError:
                self._outage_begins("not accepted")
                self._check_stop()
                await asyncio.sleep(_RETRY_BACKOFF_S)

    async def _send_again(self) -> None:
        """Backpressure after a failed delivery: a new client, then every record from the
        failed one on is sent again, in order (a later one may arrive twice, never before an
        earlier one; the session worker ignores a seq it already has)."""
        records = [record for record, _, _ in self._inflight]
        self._inflight.clear()
        while True:
            try:
                await self._publisher.recover()
                break
            except PublishError as exc:
                self._log.warning("kafka_client_not_replaced", error=str(exc))
                self._check_stop()
                await asyncio.sleep(_RETRY_BACKOFF_S)
        for record in records:
            self._inflight.append((record, await self._send_waiting(record), time.monotonic()))

    def _check_stop(self) -> None:
        """After a stop, backpressure waits at most ``stop_timeout_s`` more."""
        if self._stop is None or not self._stop.is_set():
            return
        now = time.monotonic()
        if self._stop_deadline is None:
            self._stop_deadline = now + self._stop_timeout_s
        elif now > self._stop_deadline:
            raise PublishError(
                f"Kafka did not take the session's records within {self._stop_timeout_s} s "
                "after the stop"
            )

    async def _wait_unless_stopped(self, future: asyncio.Future[Any]) -> None:
        """Backpressure: wait for ``future``; after a stop, ``stop_timeout_s`` more at most."""
        if self._stop is not None:
            stop_wait = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait({future, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
            if not future.done():
                await asyncio.wait({future}, timeout=self._stop_timeout_s)
            if not future.done():
                raise PublishError(
                    f"Kafka did not acknowledge a record within {self._ack_timeout_s} s, nor "
                    f"{self._stop_timeout_s} s after the stop"
                )
        else:
            await asyncio.wait({future})

    def _outage_begins(self, what: str) -> None:
        if self._waiting:
            return
        self._waiting = True
        self.stats.outages += 1
        self._outage_started = time.monotonic()
        self._log.warning(
            "kafka_outage_started",
            reason=f"Kafka: record {what} in time; waiting (backpressure)",
            unacknowledged=len(self._inflight),
        )

    def _outage_ends(self) -> None:
        self._waiting = False
        now = time.monotonic()  # what waited in the client's buffer gets a fresh deadline
        self._inflight = deque((record, future, now) for record, future, _ in self._inflight)
        self._log.info(
            "kafka_outage_ended", outage_s=round(time.monotonic() - self._outage_started, 3)
        )

    # -- outage ---------------------------------------------------------------------------

    def _require_spool(self) -> Spool:
        if self._spool is None:
            raise RuntimeError("no spool")
        return self._spool

    async def _spool_call(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        async with self._lock:
            return await asyncio.to_thread(call, *args, **kwargs)

    async def _start_outage(self, reason: str, unsent: list[SpoolRecord]) -> None:
        """Copy what is unacknowledged into the spool, then spool ``unsent`` and start draining."""
        spool = self._require_spool()
        if not self._spool_opened:
            await self._spool_call(spool.open)
            self._spool_opened = True
        held = [(record, future) for record, future, _ in self._inflight]
        self._inflight.clear()
        self._spooling = True
        self.stats.outages += 1
        self._outage_started = time.monotonic()
        ids: list[int] | None = []
        records = [record for record, _ in held] + unsent
        if records:
            ids = await self._spool_call(
                spool.append, records, force=True, totals=self._totals_note()
            )
            self._count_spooled(records)
        self._log.warning(
            "kafka_outage_started",
            reason=reason,
            unacknowledged=len(held),
            spool=str(spool.path),
            spooled_bytes=spool.bytes,
        )
        self._drainer = asyncio.get_running_loop().create_task(
            self._drain(list(zip(ids or [], [future for _, future in held], strict=False)))
        )

    def _count_spooled(self, records: list[SpoolRecord]) -> None:
        for record in records:
            self.stats.spooled_bytes += record.size
            if record.kind == "chunk" and record.seq != self._last_spooled_seq:
                self._last_spooled_seq = record.seq
                self.stats.spooled_chunks += 1

    def _totals_note(self) -> str | None:
        return json.dumps(self._totals) if self._totals is not None else None

    async def _to_spool(self, records: list[SpoolRecord], *, droppable: bool) -> bool:
        spool = self._require_spool()
        ids = await self._spool_call(
            spool.append, records, force=not droppable, totals=self._totals_note()
        )
        if ids is None:
            self._note_dropped(records)
            return False
        self._count_spooled(records)
        if droppable:
            await self._close_run()
        return True

    def _note_dropped(self, records: list[SpoolRecord]) -> None:
        first = records[0]
        seq = first.seq if first.seq is not None else -1
        start = first.media_start_s or 0.0
        end = first.media_end_s or start
        size = sum(len(record.value) for record in records)
        self.stats.dropped_chunks += 1
        self.stats.dropped_bytes += size
        self.stats.dropped_media_s += end - start
        run = self._run
        if run is None:
            self._run = DroppedChunks(seq, seq, start, end, 1, size)
            spool = self._require_spool()
            self._log.error(
                "chunks_dropped_spool_full",
                seq=seq,
                media_start_s=start,
                spool=str(spool.path),
                spooled_bytes=spool.bytes,
                limit_bytes=spool.budget.max_bytes,
            )
        else:
            run.last_seq, run.media_end_s = seq, end
            run.chunks += 1
            run.bytes += size

    async def _close_run(self) -> None:
        """Report a finished run of dropped chunks (one DeadLetter, never dropped itself)."""
        run, self._run = self._run, None
        if run is None or self._dead_letter is None:
            return
        self._log.error(
            "chunks_dropped",
            first_seq=run.first_seq,
            last_seq=run.last_seq,
            chunks=run.chunks,
            media_start_s=run.media_start_s,
            media_end_s=run.media_end_s,
            dropped_bytes=run.bytes,
        )
        await self.put([self._dead_letter(run)])

    async def _publish_head(self, spool: Spool, entries: list[SpoolEntry]) -> str | None:
        """Send ``entries`` and remove the acknowledged prefix; the first failure, if any."""
        sent: list[tuple[int, asyncio.Future[Any]]] = []
        failure: str | None = None
        try:
            for entry in entries:
                record = entry.record
                future = await self._publisher.send(record.key, record.value, topic=record.topic)
                sent.append((entry.id, future))
        except PublishError as exc:
            failure = str(exc)
        acked: list[int] = []
        for record_id, future in sent:
            if not await self._acknowledged(future):
                failure = failure or (
                    "delivery cancelled" if future.cancelled() else str(future.exception())
                )
            elif failure is None:
                acked.append(record_id)
        await self._spool_call(spool.remove, acked)
        return failure

    async def _recover(self) -> None:
        """Let the publisher replace a client that a failed delivery left unusable."""
        try:
            await self._publisher.recover()
        except PublishError as exc:
            self._log.warning("kafka_client_not_replaced", error=str(exc))
            await asyncio.sleep(_RETRY_BACKOFF_S)

    async def _acknowledged(self, future: asyncio.Future[Any]) -> bool:
        """Wait for a delivery; True when acknowledged. A client that a failed batch left
        unusable is replaced meanwhile (its records then fail, to be sent again)."""
        while not future.done():
            await asyncio.wait({future}, timeout=self._ack_timeout_s)
            if not future.done():
                await self._recover()
        return not future.cancelled() and future.exception() is None

    async def _drain(self, held: list[tuple[int, asyncio.Future[Any]]]) -> None:
        """Publish the spool from its head until it is empty, then go back to direct."""
        spool = self._require_spool()
        # The client's own copies first: their fate decides what must be sent again. Only the
        # acknowledged prefix leaves the spool (a later one is re-sent: a duplicate, never
        # a record out of order; the session worker ignores a seq it already has).
        prefix: list[int] = []
        failed = False
        for record_id, future in held:
            if not await self._acknowledged(future):
                failed = True
            elif not failed:
                prefix.append(record_id)
        await self._spool_call(spool.remove, prefix)
        if failed:
            await self._recover()
        while True:
            async with self._lock:
                entries = await asyncio.to_thread(spool.head, self._window)
                if not entries:
                    self._spooling = False
                    break
            if failure := await self._publish_head(spool, entries):
                self._log.warning(
                    "spool_publish_failed", error=failure, retry_in_s=_RETRY_BACKOFF_S
                )
                await asyncio.sleep(_RETRY_BACKOFF_S)
                await self._recover()
        self._log.info(
            "kafka_outage_ended",
            outage_s=round(time.monotonic() - self._outage_started, 3),
            spooled_chunks=self.stats.spooled_chunks,
            spooled_bytes=self.stats.spooled_bytes,
            dropped_chunks=self.stats.dropped_chunks,
        )
