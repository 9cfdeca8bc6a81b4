"""The sink's batch handler: records -> deterministic batches -> idempotent inserts.

``Inter1Event`` records in the codec's current version go to ClickHouse undecoded: a
batch's events become one Avro container (:mod:`sinks.event_container`) inserted into
``event_landing``, whose materialized views (migration 0006) fill the event tables; the
handler reads only each record's ``session_id``. Other records are decoded with the codec
and turned into rows (:mod:`sinks.tables`). Both are cut into deterministic batches per
topic-partition (:mod:`sinks.batches`) and inserted off the event loop with
``insert_deduplication_token = topic:partition:first-last``; the consume loop commits
offsets only after :meth:`SinkHandler.flush` returned, i.e. after ClickHouse acknowledged
every batch holding them.

* Undecodable record: a ``DeadLetter`` on the dead-letter topic with the reason (its
  offset is committed only after the dead letter was acknowledged). When ClickHouse
  refuses an event container as bad data, the handler decodes its records with fastavro,
  dead-letters those that fail (acknowledged before the batch's ledger row) and inserts
  the rest under the same token.
* ClickHouse unavailable or busy: the batch stays queued, its partitions are paused
  (:class:`runtime.batch_handler.Backpressure`) and the insert is retried with capped
  exponential backoff; a checkpoint retries until ``retry_timeout_s`` and then stops the
  sink without committing. Nothing is dropped.
* A record for a session the sink never saw start is stored like any other.
* When a session's ``SessionEnded`` (chunk topic) has been inserted, the checkpoint writes
  its summary row (``session_summaries``) from the session's final figures; events that
  arrive after the end rewrite it (a higher ``version`` replaces the row).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from runtime.batch_handler import Backpressure, BatchHandler, Record, run_blocking
from runtime.errors import PipelineError
from runtime.kafka import make_producer, start_client
from runtime.logs import get_logger
from runtime.settings import SinkSettings
from schemas.codec import Codec
from schemas.exceptions import CodecError
from schemas.framing import SINGLE_OBJECT_HEADER_SIZE, single_object_header
from sinks.batches import Batch, PartitionBatcher
from sinks.decoding import SinkDecoder
from sinks.event_container import container_header, landing_schema, ocf_container, session_id_of
from sinks.exceptions import ClickHouseBadDataError, ClickHouseQueryError, SchemaMismatchError
from sinks.faults import Point, parse_crash_at
from sinks.store import Store
from sinks.tables import COLUMNS, KafkaCoordinates, rows_for

__all__ = ["SUMMARY_COLUMNS", "SinkHandler", "SinkStats", "check_schema"]

_log = get_logger("sinks.handler")
_EVENT_RECORDS = frozenset({"Inter1Event", "UsageRecord", "Cue"})
_LEDGER_COLUMNS = ("topic", "partition", "first_offset", "last_offset", "records")
_LANDING = "event_landing"
SUMMARY_COLUMNS = (
    "session_id",
    "tenant",
    "app",
    "labels",
    "started_at",
    "ended_at",
    "end_reason",
    "media_seconds",
    "events",
    "signals",
    "signal_types",
    "open_signals",
    "engaged_share",
    "quality_index",
    "analysed_s",
    "degraded_s",
    "dropped_s",
    "reanalysed_s",
    "billable_s",
    "cues",
    "version",
)


@dataclass
class SinkStats:
    """What the sink did (cumulative)."""

    records: int = 0
    batches_inserted: int = 0
    rows_inserted: int = 0
    skipped_already_inserted: int = 0
    dead_letters: int = 0
    containers_refused: int = 0  # event containers ClickHouse refused as bad data
    insert_failures: int = 0  # failed ClickHouse calls (inserts, ledger reads) retried
    summaries: int = 0
    rows_per_table: dict[str, int] = field(default_factory=dict)
    prepare_s: float = 0.0  # time spent decoding and batching
    insert_s: float = 0.0  # time spent in ClickHouse inserts
    prepare_cpu_s: float = 0.0  # CPU of the thread decoding and batching
    insert_cpu_s: float = 0.0  # CPU of the thread inserting (engine threads not included)
    first_record_at: float | None = None  # time.monotonic() of the first record processed
    last_insert_at: float | None = None  # time.monotonic() of the last batch acknowledged
    first_record_cpu_s: float | None = None  # time.process_time() at first_record_at
    last_insert_cpu_s: float | None = None  # time.process_time() at last_insert_at


def check_schema(store: Store) -> None:
    """Every table and column the sink writes exists; otherwise name the table and column."""
    wanted = {
        **COLUMNS,
        "sink_batches": _LEDGER_COLUMNS,
        "session_summaries": SUMMARY_COLUMNS,
        _LANDING: ("source_topic", "source_partition", "source_offset", "payload", "row_end"),
    }
    for table, columns in wanted.items():
        present = store.columns(table)
        if not present:
            raise SchemaMismatchError(
                f"table {table} does not exist: run `inter1-pipeline migrate` against this store"
            )
        for column in columns:
            if column not in present:
                raise SchemaMismatchError(
                    f"table {table} has no column {column}: the store's schema is older or "
                    "newer than this sink; run `inter1-pipeline migrate`"
                )


class SinkHandler(BatchHandler):
    """Decode -> rows -> deterministic batches -> idempotent inserts -> summaries.

    Args:
        store: the ClickHouse store.
        codec: decodes the records.
        dead_letter_topic: where undecodable records go.
        settings: batching and retry settings.
    """

    def __init__(
        self, store: Store, codec: Codec, dead_letter_topic: str, settings: SinkSettings
    ) -> None:
        self._store = store
        self._codec = codec
        self._decoder = SinkDecoder(codec)
        event = codec.catalog.current("Inter1Event")
        self._event_header = single_object_header(event.fingerprint)
        self._container_header = container_header(landing_schema(event.schema))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._crash_at = parse_crash_at(settings.crash_at)
        self._dead_letter_topic = dead_letter_topic
        self._settings = settings
        self._producer: Any = None
        self._batchers: dict[TopicPartition, PartitionBatcher] = {}
        self._ready: list[Batch] = []
        self._inflight: asyncio.Future[None] | None = None
        self._inflight_batches: list[Batch] = []
        self._dead_letters: list[asyncio.Future[Any]] = []
        self._to_summarise: set[str] = set()
        self._event_sessions: set[str] = set()
        self._retry_at = 0.0
        self._backoff_s = settings.retry_initial_s
        self._cpu_mark = 0.0  # time.thread_time() of the inserting thread, last counted
        self.stats = SinkStats()

    async def start(self) -> None:
        """Start the dead-letter producer (idempotent)."""
        self._loop = asyncio.get_running_loop()
        if self._producer is None:
            producer = make_producer()
            await start_client(producer)
            self._producer = producer

    async def stop(self) -> None:
        """Stop the producer (idempotent)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    # consume-loop protocol ---------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> Backpressure | None:
        dead = await run_blocking(self._prepare, records)
        for record, error in dead:
            await self._dead_letter(record, error)
        if self._inflight is not None and self._inflight.done():
            await self._settle()
        if self._inflight is None and self._ready and time.monotonic() >= self._retry_at:
            # insert the closed batches in a worker thread while the next poll is decoded
            batches, self._ready = self._ready, []
            self._inflight_batches = batches
            self._inflight = asyncio.ensure_future(run_blocking(self._insert_batches, batches))
        return self._pressure()

    async def _settle(self) -> None:
        """Wait for the insert in flight; a retriable failure requeues what is left."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return
        left, self._inflight_batches = self._inflight_batches, []
        try:
            await inflight
        except PipelineError as exc:
            self._ready = left + self._ready
            if not exc.retriable:
                raise
            self._failed(exc)

    async def flush(self) -> None:
        if self._dead_letters:
            await asyncio.gather(*self._dead_letters)
            self._dead_letters.clear()
        deadline = time.monotonic() + self._settings.retry_timeout_s
        await self._settle()
        for batcher in self._batchers.values():
            batch = batcher.cut()
            if batch is not None:
                self._ready.append(batch)
        while True:
            try:
                await run_blocking(self._insert_batches, self._ready)
                await run_blocking(self._summarise)
                break
            except PipelineError as exc:
                if not exc.retriable or time.monotonic() >= deadline:
                    raise
                self._failed(exc)
                await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))
        self._backoff_s = self._settings.retry_initial_s

    async def on_assign(self, partitions: frozenset[TopicPartition]) -> None:
        for tp in partitions:
            self._batchers.pop(tp, None)  # ledger read again on the first record

    async def on_revoke(self, partitions: frozenset[TopicPartition]) -> None:
        for tp in partitions:
            self._batchers.pop(tp, None)

    # internals ---------------------------------------------------------------------------

    @property
    def retrying(self) -> bool:
        """ClickHouse calls failed since the last successful checkpoint (backing off)."""
        return self._backoff_s > self._settings.retry_initial_s

    def _pressure(self) -> Backpressure | None:
        if not self._ready or self._inflight is not None:
            return None  # nothing waits, or it waits for the insert in flight (no failure)
        waiting = frozenset(TopicPartition(b.topic, b.partition) for b in self._ready)
        return Backpressure(waiting, max(0.05, self._retry_at - time.monotonic()))

    def _failed(self, exc: PipelineError) -> None:
        self.stats.insert_failures += 1
        self._retry_at = time.monotonic() + self._backoff_s
        _log.warning(
            "insert_failed_retrying",
            error=str(exc),
            error_type=type(exc).__name__,
            retry_in_s=self._backoff_s,
            queued_batches=len(self._ready),
            topic=self._ready[0].topic if self._ready else None,
            partition=self._ready[0].partition if self._ready else None,
            offset=self._ready[0].first_offset if self._ready else None,
        )
        self._backoff_s = min(self._settings.retry_max_s, self._backoff_s * 2)

    def _new_batchers(self, records: Sequence[Record]) -> None:
        """A batcher for every partition of ``records`` that has none (after start or a
        rebalance), from one ledger read for all of them (worker thread)."""
        firsts: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp not in self._batchers:
                firsts[tp] = min(record.offset, firsts.get(tp, record.offset))
        if not firsts:
            return
        ledgers = self._ledgers(firsts)
        for tp, first_offset in firsts.items():
            ledger = ledgers.get(tp, [])
            inserted = [(a, b) for a, b, n in ledger if n]
            intended = [(a, b) for a, b, n in ledger if not n]
            self._batchers[tp] = PartitionBatcher(
                tp.topic, tp.partition, self._settings.batch_records, inserted, intended
            )
            if inserted or intended:
                _log.info(
                    "replaying_ledgered_batches",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=first_offset,
                    ranges=len(inserted),
                    intended=[f"{a}-{b}" for a, b in intended],
                )

    def _ledgers(
        self, firsts: dict[TopicPartition, int]
    ) -> dict[TopicPartition, list[tuple[int, int, int]]]:
        """Each partition's ledger rows ``(first, last, records)`` from its first offset on,
        in one query (worker thread; each query cost about 8 ms on the embedded engine).

        ClickHouse unreachable: retried with the insert backoff for ``retry_timeout_s``
        (consumption waits meanwhile), then the error stops the sink, nothing committed.
        """
        parameters: dict[str, Any] = {}
        ranges = []
        for i, (tp, first_offset) in enumerate(sorted(firsts.items())):
            ranges.append(
                f"(topic = {{t{i}:String}} AND partition = {{p{i}:UInt32}} "
                f"AND last_offset >= {{o{i}:UInt64}})"
            )
            parameters |= {f"t{i}": tp.topic, f"p{i}": tp.partition, f"o{i}": first_offset}
        # records = 0 marks an intent row (a partial batch announced before its rows)
        sql = (
            "SELECT topic, partition, first_offset, last_offset, max(records) FROM sink_batches "
            f"WHERE {' OR '.join(ranges)} "
            "GROUP BY topic, partition, first_offset, last_offset "
            "ORDER BY topic, partition, first_offset"
        )
        deadline = time.monotonic() + self._settings.retry_timeout_s
        backoff_s = self._settings.retry_initial_s
        while True:
            try:
                rows = self._store.rows(sql, parameters)
                break
            except PipelineError as exc:
                if not exc.retriable or time.monotonic() >= deadline:
                    raise
                self.stats.insert_failures += 1
                _log.warning(
                    "ledger_read_failed_retrying",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    retry_in_s=backoff_s,
                    partitions=[f"{tp.topic}[{tp.partition}]@{o}" for tp, o in firsts.items()],
                )
                time.sleep(backoff_s)
                backoff_s = min(self._settings.retry_max_s, backoff_s * 2)
        out: dict[TopicPartition, list[tuple[int, int, int]]] = {}
        for topic, partition, first, last, records in rows:
            out.setdefault(TopicPartition(str(topic), int(partition)), []).append(
                (int(first), int(last), int(records))
            )
        return out

    def _prepare(self, records: Sequence[Record]) -> list[tuple[Record, PipelineError]]:
        """Decode and batch (worker thread); returns the records to dead-letter."""
        dead: list[tuple[Record, PipelineError]] = []
        started = time.monotonic()
        cpu_started = time.thread_time()
        if self.stats.first_record_at is None:
            self.stats.first_record_at = started
            self.stats.first_record_cpu_s = time.process_time()
        header, header_size = self._event_header, SINGLE_OBJECT_HEADER_SIZE
        ready = self._ready
        batcher: PartitionBatcher  # set by the first record (no partition is -1)
        partition, topic = -1, ""
        for record in records:
            if record.partition != partition or record.topic != topic:
                # the consume loop hands records grouped by partition: one lookup per run
                partition, topic = record.partition, record.topic
                tp = TopicPartition(topic, partition)
                if tp not in self._batchers:
                    self._new_batchers(records)
                batcher = self._batchers[tp]
                add_event = batcher.add_event
            value = record.value or b""
            if value.startswith(header):
                # current Inter1Event: ClickHouse decodes it (a body that does not start
                # with two strings is decoded below, for the decoder's error)
                session = session_id_of(value, header_size)
                if session is not None:
                    before = batcher.skipped
                    closed = add_event(record.offset, record, session)
                    if closed:
                        ready.extend(closed)
                    if batcher.skipped != before:
                        self.stats.skipped_already_inserted += 1
                        self._event_sessions.add(session)  # maybe not summarised yet
                    continue
            self._add_decoded(batcher, record, value, dead)
        self.stats.records += len(records)
        self.stats.prepare_s += time.monotonic() - started
        self.stats.prepare_cpu_s += time.thread_time() - cpu_started
        return dead

    def _add_decoded(
        self,
        batcher: PartitionBatcher,
        record: Record,
        value: bytes,
        dead: list[tuple[Record, PipelineError]],
    ) -> None:
        """Decode a record in Python into its rows and batch them (any record but a
        current ``Inter1Event``); an undecodable one is batched empty and added to ``dead``."""
        rows = None
        ended = event_session = None
        try:
            name, datum = self._decoder.decode(value, topic=record.topic)
            if datum is not None:
                at = KafkaCoordinates(record.topic, record.partition, record.offset)
                rows = rows_for(name, datum, at)
                if name == "SessionEnded":
                    ended = str(datum["session_id"])
                elif name in _EVENT_RECORDS:
                    event_session = str(datum["session_id"])
        except CodecError as exc:
            if exc.retriable:
                raise
            dead.append((record, exc))
        before = batcher.skipped
        self._ready.extend(
            batcher.add(record.offset, rows, ended_session=ended, event_session=event_session)
        )
        if batcher.skipped != before:
            self.stats.skipped_already_inserted += 1
            # inserted before a crash, maybe not summarised yet: summarise (again)
            if ended is not None:
                self._to_summarise.add(ended)
            if event_session is not None:  # a late record of an ended session, too
                self._event_sessions.add(event_session)

    async def _dead_letter_acknowledged(self, record: Record, error: PipelineError) -> None:
        await self._dead_letter(record, error)
        await self._dead_letters[-1]

    def _dead_letter_from_thread(self, record: Record, error: PipelineError) -> None:
        """Dead-letter a record and wait for the acknowledgement (worker thread)."""
        if self._loop is None:
            raise RuntimeError("the sink handler was not started")
        asyncio.run_coroutine_threadsafe(
            self._dead_letter_acknowledged(record, error), self._loop
        ).result()

    async def _dead_letter(self, record: Record, error: PipelineError) -> None:
        key = record.key
        datum = {
            "stage": "sink",
            "source_topic": record.topic,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "key": key,
            "value": record.value,
            "error_type": type(error).__name__,
            "error_code": None,
            "error_message": " ".join(str(error).split())[:500],
            "retriable": error.retriable,
            "session_id": key.decode("utf-8", "replace") if key else None,
            "failed_at": datetime.now(UTC),
            "headers": dict(record.headers or ()),
        }
        value = self._codec.encode("DeadLetter", datum, topic=self._dead_letter_topic)
        future = await self._producer.send(self._dead_letter_topic, value, key=key)
        self._dead_letters.append(future)
        self.stats.dead_letters += 1
        _log.warning(
            "record_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=type(error).__name__,
            reason=datum["error_message"],
        )

    def _insert_batches(self, batches: list[Batch]) -> None:
        """Insert batches in order (worker thread), emptying ``batches`` once all are
        acknowledged: on a failure, ``batches`` holds them all (retried whole)."""
        self._cpu_mark = time.thread_time()
        try:
            self._insert_all(batches)
        finally:
            self._count_insert_cpu()

    def _count_insert_cpu(self) -> None:
        """Add the inserting thread's CPU since the last mark (before the row counts that
        tell a reader the rows are in, so a reader of both sees the CPU that wrote them)."""
        now = time.thread_time()
        self.stats.insert_cpu_s += now - self._cpu_mark
        self._cpu_mark = now

    def _insert_all(self, batches: list[Batch]) -> None:
        """Every batch's rows in order, then one ledger insert for all of them.

        The ledger rows still follow their batches' rows (a crash in between leaves rows
        without a ledger row: the restart re-cuts those batches at the same offsets, their
        tokens drop the re-insert). One ledger insert per call rather than per batch: a
        small insert costs about 5 ms of CPU on the embedded engine, and a checkpoint cuts
        one batch per partition. Nothing leaves ``batches`` before its ledger row is
        acknowledged, so a failure retries the whole call (the rows already in are dropped
        by their tokens).
        """
        self._announce(batches)
        started = time.monotonic()
        inserted = [batch for batch in batches if batch.has_data]
        for batch in inserted:
            if batch.events:
                self._insert_events(batch)
            for table, rows in sorted(batch.rows.items()):
                self._store.insert(table, rows, COLUMNS[table], token=batch.token)
            self._crash_check("after_rows", batch)
        if inserted:
            self._store.insert(
                "sink_batches",
                [
                    [b.topic, b.partition, b.first_offset, b.last_offset, b.records]
                    for b in inserted
                ],
                _LEDGER_COLUMNS,
                token=inserted[0].token
                if len(inserted) == 1
                else "ledger:" + ",".join(b.token for b in inserted),
            )
            # times before counts: a reader that sees the rows counted sees their times
            self.stats.last_insert_at = time.monotonic()
            self.stats.last_insert_cpu_s = time.process_time()
            self.stats.insert_s += self.stats.last_insert_at - started
            self._count_insert_cpu()
            counts = self.stats.rows_per_table
            for batch in inserted:
                for table, rows in batch.rows.items():
                    counts[table] = counts.get(table, 0) + len(rows)
                if batch.events:
                    counts["events"] = counts.get("events", 0) + len(batch.events)
                self.stats.rows_inserted += batch.row_count
                _log.debug(
                    "batch_inserted",
                    topic=batch.topic,
                    partition=batch.partition,
                    offset=batch.first_offset,
                    last_offset=batch.last_offset,
                    rows=batch.row_count,
                )
            self.stats.batches_inserted += len(inserted)
        for batch in batches:
            self._to_summarise |= batch.ended_sessions
            self._event_sessions |= batch.event_sessions
        batches.clear()
        self._backoff_s = self._settings.retry_initial_s

    def _insert_events(self, batch: Batch) -> None:
        """The batch's events as one Avro container into ``event_landing`` (worker thread).

        ClickHouse refusing the bytes as bad data: every record is decoded with fastavro,
        those that fail are dead-lettered (acknowledged before this returns, so before the
        batch's ledger row) and the rest inserted under the same token. When every record
        decodes, the refusal is not the records' fault: the error stops the sink.
        """
        if len(batch.events) < self._settings.container_min_events:
            self._events_as_rows(batch)
            return
        start = SINGLE_OBJECT_HEADER_SIZE
        while batch.events:
            container = ocf_container(
                self._container_header,
                batch.topic,
                batch.partition,
                # bytes slices (copies): joined faster than memoryviews (0.55 vs 0.89 µs per
                # event with the rest of the container, 20,000 events)
                [(r.offset, (r.value or b"")[start:]) for r in batch.events],
            )
            try:
                self._store.insert_avro(_LANDING, container, token=batch.token)
                return
            except ClickHouseBadDataError as exc:
                self.stats.containers_refused += 1
                bad = self._undecodable(batch.events)
                if not bad:
                    raise ClickHouseQueryError(
                        f"ClickHouse refused the events of batch {batch.token}, but every "
                        f"record decodes with fastavro: {exc}"
                    ) from exc
                _log.warning(
                    "event_container_refused",
                    error=str(exc),
                    topic=batch.topic,
                    partition=batch.partition,
                    offset=batch.first_offset,
                    bad_offsets=[r.offset for r, _ in bad],
                )
                for record, error in bad:
                    self._dead_letter_from_thread(record, error)
                dropped = {r.offset for r, _ in bad}
                batch.events = [r for r in batch.events if r.offset not in dropped]

    def _events_as_rows(self, batch: Batch) -> None:
        """A small batch's events decoded here into the batch's rows (worker thread): the
        same rows the views write (``tests/sinks/test_event_container.py``), inserted with
        the batch's other rows under its token. A batch always takes the same way (its
        event count is fixed by its offsets), so a retry is deduplicated either way."""
        for record in batch.events:
            try:
                name, datum = self._decoder.decode(record.value or b"", topic=record.topic)
            except CodecError as exc:
                self._dead_letter_from_thread(record, exc)
                continue
            at = KafkaCoordinates(record.topic, record.partition, record.offset)
            for table, rows in (rows_for(name, datum or {}, at) or {}).items():
                batch.rows.setdefault(table, []).extend(rows)
        batch.events = []

    def _undecodable(self, records: list[Record]) -> list[tuple[Record, PipelineError]]:
        bad: list[tuple[Record, PipelineError]] = []
        for record in records:
            try:
                self._decoder.decode(record.value or b"", topic=record.topic)
            except CodecError as exc:
                bad.append((record, exc))
        return bad

    def _announce(self, batches: list[Batch]) -> None:
        """Intent rows (``records = 0``) for the partial batches not announced yet, in one
        insert before any of their rows, so a restart re-cuts exactly these ranges (one
        insert for the group: a small insert costs about 9 ms of CPU on the embedded engine).
        """
        size = self._settings.batch_records
        partial = [
            b for b in batches if b.has_data and not b.announced and (b.last_offset + 1) % size
        ]
        if not partial:
            return
        self._store.insert(
            "sink_batches",
            [[b.topic, b.partition, b.first_offset, b.last_offset, 0] for b in partial],
            _LEDGER_COLUMNS,
            token="intent:" + ",".join(b.token for b in partial),
        )
        for batch in partial:
            batch.announced = True
            self._crash_check("after_intent", batch)

    def _crash_check(self, point: Point, batch: Batch) -> None:
        if self._crash_at is not None:
            self._crash_at.check(point, batch.topic, batch.partition, batch.first_offset)

    def _summarise(self) -> None:
        """Write the summary row of every session ended (or touched after its end)."""
        if self._event_sessions:
            late = self._store.rows(
                "SELECT DISTINCT session_id FROM sessions_ended WHERE has({ids:Array(String)}, "
                "session_id)",
                {"ids": sorted(self._event_sessions)},
            )
            self._to_summarise |= {str(r[0]) for r in late}
            self._event_sessions.clear()
        if not self._to_summarise:
            return
        # one query for every session: the filter reaches each table through its primary key
        # (session_id first), see EXPLAIN indexes = 1 in sinks/README.md
        found = self._store.rows(
            f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM session_summary_live "
            "WHERE has({ids:Array(String)}, session_id) ORDER BY session_id",
            {"ids": sorted(self._to_summarise)},
        )
        for row in found:
            session_id, version = str(row[0]), row[-1]
            self._store.insert(
                "session_summaries",
                [list(row)],
                SUMMARY_COLUMNS,
                token=f"summary:{session_id}:{version}",
            )
            self.stats.summaries += 1
            _log.info("session_summarised", session_id=session_id, version=version)
        self._to_summarise.clear()
