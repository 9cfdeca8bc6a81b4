"""Deterministic sink batches: per topic-partition, cut on offset boundaries, ledgered.

A batch holds the rows of consecutive records of one topic-partition. It is cut

* when it reaches the end of its offset bucket: offsets ``[k*N, (k+1)*N)`` for a batch
  size ``N``, so a batch that fills up always spans the same offsets, after any restart;
* at a checkpoint (the consume loop's time/size trigger): the open, partial batch is cut
  where consumption stands.

Every inserted batch is recorded in the ``sink_batches`` ledger after its rows. After a
restart the records of a ledgered range are not inserted again. A partial batch (cut by a
checkpoint, not at its bucket's end) is also announced in the ledger *before* its rows, by
an intent row (``records = 0``): after a crash between its rows and its ledger row the
restart finds the intent and cuts that batch at exactly the same offsets again, so its
re-insert carries the same ``insert_deduplication_token`` (``topic:partition:first-last``)
and ClickHouse drops it: no row is stored twice, not even before a merge. A full batch
needs no intent: it is re-cut at the same bucket bounds anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.batch_handler import Record
from sinks.tables import RowSet

__all__ = ["Batch", "PartitionBatcher"]


@dataclass
class Batch:
    """Rows of consecutive records ``first_offset..last_offset`` of one topic-partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: int = 0
    rows: RowSet = field(default_factory=dict)
    events: list[Record] = field(default_factory=list)
    """Inter1Event records ClickHouse decodes itself
    (``sinks/event_container.py``), in offset order."""
    ended_sessions: set[str] = field(default_factory=set)
    event_sessions: set[str] = field(default_factory=set)
    announced: bool = False  # its intent row is in the ledger (partial batches)

    @property
    def token(self) -> str:
        """``insert_deduplication_token``: ``topic:partition:first-last``."""
        return f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"

    @property
    def row_count(self) -> int:
        """Rows built in Python over every table, plus one per container event."""
        return sum(len(rows) for rows in self.rows.values()) + len(self.events)

    @property
    def has_data(self) -> bool:
        """Anything to insert (rows or container events)."""
        return bool(self.rows) or bool(self.events)


class PartitionBatcher:
    """Cuts one topic-partition's records into deterministic batches.

    Args:
        topic: the topic.
        partition: the partition.
        batch_records: offsets per bucket (a full batch spans exactly one bucket).
        inserted: ledgered ``(first, last)`` ranges at or after the first offset to come;
            their records are skipped.
        intended: ``(first, last)`` ranges with an intent row but no ledger row (a crash
            between a partial batch's intent and its ledger row): their batches are cut
            at ``last`` again.
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        batch_records: int,
        inserted: list[tuple[int, int]],
        intended: list[tuple[int, int]] | None = None,
    ) -> None:
        if batch_records < 1:
            raise ValueError("batch_records must be at least 1")
        self.topic = topic
        self.partition = partition
        self._size = batch_records
        self._inserted = sorted(inserted)
        self._cut_after = {last for _, last in intended or ()}
        self._open: Batch | None = None
        # the open batch's first offset and its bucket's end: where it closes
        self._open_first = self._open_end = 0
        self.skipped = 0

    def _already_inserted(self, offset: int) -> bool:
        while self._inserted and self._inserted[0][1] < offset:
            self._inserted.pop(0)
        return bool(self._inserted) and self._inserted[0][0] <= offset

    def _ends_batch(self, offset: int) -> bool:
        """Whether the open batch (``offset``'s bucket) closes after ``offset``: the
        bucket's last offset, or where an intended (crashed) batch was cut before."""
        if self._cut_after and offset in self._cut_after:
            self._cut_after.discard(offset)
            return True
        return offset + 1 == self._open_end

    def add(
        self,
        offset: int,
        rows: RowSet | None,
        *,
        ended_session: str | None = None,
        event_session: str | None = None,
        event_record: Record | None = None,
    ) -> list[Batch]:
        """Add one record's rows (or, ``event_record``, the record for the event container);
        returns the batches this closed (oldest first)."""
        closed: list[Batch] = []
        if self._already_inserted(offset):
            self.skipped += 1
            if self._open is not None:
                closed.append(self._open)
                self._open = None
            return closed
        batch = self._open
        if batch is not None and offset >= self._open_end:  # offsets only grow
            closed.append(batch)
            batch = None
        if batch is None:
            batch = Batch(self.topic, self.partition, offset, offset)
            self._open_first, self._open_end = offset, (offset // self._size + 1) * self._size
        batch.last_offset = offset
        batch.records += 1
        for table, table_rows in (rows or {}).items():
            batch.rows.setdefault(table, []).extend(table_rows)
        if event_record is not None:
            batch.events.append(event_record)
        if ended_session is not None:
            batch.ended_sessions.add(ended_session)
        if event_session is not None:
            batch.event_sessions.add(event_session)
        if self._ends_batch(offset):
            closed.append(batch)
            self._open = None
        else:
            self._open = batch
        return closed

    def add_event(self, offset: int, record: Record, session_id: str) -> list[Batch]:
        """:meth:`add` for an event record that goes into the event container: the same
        cuts, less work per record (the sink's hot path)."""
        batch = self._open
        if batch is None or not self._open_first <= offset < self._open_end or self._inserted:
            return self.add(offset, None, event_session=session_id, event_record=record)
        batch.last_offset = offset
        batch.records += 1
        batch.events.append(record)
        batch.event_sessions.add(session_id)
        if self._ends_batch(offset):
            self._open = None
            return [batch]
        return []

    def cut(self) -> Batch | None:
        """Close the open batch where it stands (checkpoint); None when nothing is open."""
        batch, self._open = self._open, None
        return batch
