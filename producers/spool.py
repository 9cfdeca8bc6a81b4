"""The on-disk spool of a live session's records while Kafka is unreachable.

One SQLite database per session (``<spool dir>/<sha256(session id)[:32]>.spool``) holds
the records the session could not hand to Kafka, in order: a row per record, ordered by
its ``INTEGER PRIMARY KEY``, deleted once Kafka acknowledged it; an empty spool's file is
removed when the session closes it. SQLite (the standard library's ``sqlite3``) gives
what a hand-made segment format would have to re-implement: every append is one
transaction (a whole chunk, all its parts, or nothing), written to the write-ahead log
and fsynced before :meth:`Spool.append` returns (``synchronous=FULL``); a crash mid-write
leaves a torn WAL tail that SQLite ignores on the next open (its frames are checksummed),
so the spool reopens with every record that was appended, and never half a record. A
file that is not a spool at all (or whose pages are damaged) raises
:class:`SpoolCorruptError` naming the file.

The limit (``PIPELINE_PRODUCER_SPOOL_MAX_BYTES``) counts record bytes (key + value) of
every spool of the process, shared through a :class:`SpoolBudget`; SQLite's own page
overhead is not counted. Only chunks are ever refused for want of room: session records,
dead letters and records that were already in flight are forced in (they are small, and
dropping them would lose the session's start or end, or a chunk Kafka may half have).

Each spool is locked (``flock`` on ``<file>.lock``) by the process that writes it; a
spool whose lock is free at start belongs to a producer that exited during an outage,
and :func:`orphan_spools` finds it so the next ``produce`` publishes it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Concatenate, ParamSpec, TypeVar

from producers.exceptions import SpoolCorruptError, SpoolLockedError

__all__ = [
    "Spool",
    "SpoolBudget",
    "SpoolEntry",
    "SpoolRecord",
    "orphan_spools",
    "spool_file",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")
SUFFIX = ".spool"
_FORMAT = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER,
    media_start_s REAL,
    media_end_s REAL
);
"""


@dataclass(frozen=True)
class SpoolRecord:
    """One record for Kafka, with what accounting needs to know about it."""

    topic: str
    key: bytes
    value: bytes
    kind: str
    """``started``, ``chunk``, ``ended`` or ``dead_letter``."""
    seq: int | None = None
    media_start_s: float | None = None
    media_end_s: float | None = None

    @property
    def size(self) -> int:
        """Bytes counted against the spool limit."""
        return len(self.key) + len(self.value)


@dataclass(frozen=True)
class SpoolEntry:
    """A spooled record and its position (``id``, increasing in append order)."""

    id: int
    record: SpoolRecord


class SpoolBudget:
    """The byte limit shared by every spool of one process (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, size: int, *, force: bool = False) -> bool:
        """Take ``size`` bytes; False (nothing taken) when they do not fit and not ``force``."""
        with self._lock:
            if not force and self.used + size > self.max_bytes:
                return False
            self.used += size
            return True

    def release(self, size: int) -> None:
        """Give ``size`` bytes back."""
        with self._lock:
            self.used = max(0, self.used - size)


def spool_file(directory: Path, session_id: str) -> Path:
    """The spool file of ``session_id`` (session ids may hold any character: hashed)."""
    digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:32]
    return directory / f"{digest}{SUFFIX}"


def _serialised(
    method: Callable[Concatenate[Spool, _P], _R],
) -> Callable[Concatenate[Spool, _P], _R]:
    """One call at a time per spool (calls come from worker threads; close may race a drain)."""

    @functools.wraps(method)
    def locked(spool: Spool, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with spool._mutex:
            return method(spool, *args, **kwargs)

    return locked


class Spool:
    """The spool of one session. Construction does no I/O; :meth:`open` creates or reopens.

    Calls are serialised (a lock per spool); they may come from worker threads.
    """

    def __init__(self, path: Path, session_id: str | None, budget: SpoolBudget) -> None:
        self.path = path
        self.session_id = session_id
        self._budget = budget
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        self._mutex = threading.RLock()
        self.records = 0
        self.bytes = 0

    def open(self) -> None:
        """Lock, create or reopen the file, and count what it holds against the budget.

        Raises:
            SpoolLockedError: another process writes this spool.
            SpoolCorruptError: the file is not a readable spool.
        """
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{self.path}.lock", "ab")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SpoolLockedError(f"{self.path}: spool in use by another process") from None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
                self._check_meta(db)
                records, size = db.execute(
                    "SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM records"
                ).fetchone()
            except BaseException:
                db.close()
                raise
        except sqlite3.DatabaseError as exc:
            lock.close()
            raise SpoolCorruptError(
                f"{self.path}: not a readable spool ({exc}); move it aside to start without it"
            ) from None
        except BaseException:
            lock.close()
            raise
        self._db, self._lock_file = db, lock
        self.records, self.bytes = int(records), int(size)
        self._budget.reserve(self.bytes, force=True)

    def _check_meta(self, db: sqlite3.Connection) -> None:
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        if not meta:
            if self.session_id is None:
                raise sqlite3.DatabaseError("no session id recorded")
            with db:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", _FORMAT), ("session_id", self.session_id)],
                )
            return
        if meta.get("format") != _FORMAT:
            raise sqlite3.DatabaseError(f"spool format {meta.get('format')!r}, expected {_FORMAT}")
        recorded = meta.get("session_id")
        if self.session_id is None:
            self.session_id = recorded
        elif recorded != self.session_id:
            raise sqlite3.DatabaseError(f"holds session {recorded!r}, not {self.session_id!r}")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("Spool.open() was not called")
        return self._db

    @property
    def budget(self) -> SpoolBudget:
        """The byte budget this spool counts against."""
        return self._budget

    @_serialised
    def append(
        self, records: Sequence[SpoolRecord], *, force: bool = False, totals: str | None = None
    ) -> list[int] | None:
        """Append ``records`` as one transaction, durable on return; their ids.

        None (nothing written) when they do not fit the budget, unless ``force``.
        ``totals`` (the session's running totals, JSON) is stored in the same transaction.
        """
        size = sum(record.size for record in records)
        if not self._budget.reserve(size, force=force):
            return None
        try:
            with self._conn as db:
                db.execute("BEGIN")
                ids = [
                    int(
                        db.execute(
                            "INSERT INTO records (topic, key, value, kind, seq, media_start_s,"
                            " media_end_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (
                                r.topic,
                                r.key,
                                r.value,
                                r.kind,
                                r.seq,
                                r.media_start_s,
                                r.media_end_s,
                            ),
                        ).lastrowid
                        or 0
                    )
                    for r in records
                ]
                if totals is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('totals', ?)", (totals,))
        except BaseException:
            self._budget.release(size)
            raise
        self.records += len(records)
        self.bytes += size
        return ids

    @_serialised
    def totals(self) -> str | None:
        """The session totals stored with the last append that had them (JSON)."""
        row = self._conn.execute("SELECT value FROM meta WHERE name = 'totals'").fetchone()
        return None if row is None else str(row[0])

    @_serialised
    def session_topic(self) -> str | None:
        """The topic of the newest session record or chunk (not a dead letter)."""
        row = self._conn.execute(
            "SELECT topic FROM records WHERE kind != 'dead_letter' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    @_serialised
    def head(self, limit: int) -> list[SpoolEntry]:
        """The oldest ``limit`` records, oldest first."""
        return self._select("ORDER BY id LIMIT ?", (limit,))

    @_serialised
    def last(self) -> SpoolEntry | None:
        """The newest record, if any."""
        found = self._select("ORDER BY id DESC LIMIT 1", ())
        return found[0] if found else None

    def _select(self, tail: str, params: tuple[int, ...]) -> list[SpoolEntry]:
        rows = self._conn.execute(
            "SELECT id, topic, key, value, kind, seq, media_start_s, media_end_s FROM records "
            + tail,
            params,
        ).fetchall()
        return [
            SpoolEntry(
                int(row[0]),
                SpoolRecord(row[1], bytes(row[2]), bytes(row[3]), row[4], row[5], row[6], row[7]),
            )
            for row in rows
        ]

    @_serialised
    def remove(self, ids: Iterable[int]) -> None:
        """Delete acknowledged records (one transaction)."""
        wanted = list(ids)
        if not wanted:
            return
        with self._conn as db:
            db.execute("BEGIN")
            size = 0
            removed = 0
            for record_id in wanted:
                row = db.execute(
                    "SELECT length(key) + length(value) FROM records WHERE id = ?", (record_id,)
                ).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM records WHERE id = ?", (record_id,))
                size += int(row[0])
                removed += 1
        self.records -= removed
        self.bytes -= size
        self._budget.release(size)

    @_serialised
    def close(self) -> None:
        """Close; an empty spool's files are deleted, a non-empty one stays for the next start."""
        db, self._db = self._db, None
        if db is None:
            return
        empty = self.records == 0
        db.close()
        self._budget.release(self.bytes)
        if empty:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        lock, self._lock_file = self._lock_file, None
        if lock is not None:
            if empty:
                Path(f"{self.path}.lock").unlink(missing_ok=True)
            lock.close()


def orphan_spools(directory: Path) -> list[Path]:
    """Spool files under ``directory`` that no running process holds, oldest first."""
    if not directory.is_dir():
        return []
    found: list[tuple[float, Path]] = []
    for path in directory.glob(f"*{SUFFIX}"):
        with open(f"{path}.lock", "ab") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running producer owns it
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        found.append((os.stat(path).st_mtime, path))
    return [path for _, path in sorted(found)]
