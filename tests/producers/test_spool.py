"""The on-disk spool: order, read-back after a restart, the shared limit, locking, crashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from producers.exceptions import SpoolCorruptError, SpoolLockedError
from producers.spool import Spool, SpoolBudget, SpoolRecord, orphan_spools, spool_file


def chunk(seq: int, size: int = 40) -> SpoolRecord:
    return SpoolRecord(
        "chunks", b"s1", bytes([seq]) * size, "chunk", seq, 2.0 * seq, 2.0 * seq + 2.0
    )


def opened(directory: Path, budget: SpoolBudget, session_id: str = "s1") -> Spool:
    spool = Spool(spool_file(directory, session_id), session_id, budget)
    spool.open()
    return spool


def test_records_come_back_in_order_and_survive_a_reopen(tmp_path: Path) -> None:
    budget = SpoolBudget(10_000)
    spool = opened(tmp_path, budget)
    started = SpoolRecord("chunks", b"s1", b"started", "started")
    two_parts = [chunk(1), SpoolRecord("chunks", b"s1", b"part-1", "chunk", 1, 2.0, 4.0)]
    assert spool.append([started]) == [1]
    assert spool.append([chunk(0)], totals='{"chunks": 1}') == [2]
    assert spool.append(two_parts, totals='{"chunks": 2}') == [3, 4]
    assert (spool.records, spool.bytes, budget.used) == (4, 9 + 42 + 42 + 8, 101)
    assert [e.record for e in spool.head(10)] == [started, chunk(0), *two_parts]
    assert [e.id for e in spool.head(2)] == [1, 2]

    spool.remove([1, 2])
    assert [e.id for e in spool.head(10)] == [3, 4]
    assert (spool.records, budget.used) == (2, 50)
    spool.close()
    assert budget.used == 0
    assert spool.path.exists()  # not empty: kept for the next start

    again = Spool(spool.path, None, budget)  # the next start does not know the session id
    again.open()
    assert again.session_id == "s1"
    assert [e.record for e in again.head(10)] == two_parts
    newest = again.last()
    assert newest is not None
    assert newest.id == 4
    assert again.totals() == '{"chunks": 2}'
    assert again.session_topic() == "chunks"
    assert (again.records, budget.used) == (2, 50)
    again.remove([3, 4])
    again.close()
    assert list(tmp_path.iterdir()) == []  # empty: the file, its WAL and its lock are gone


def test_the_limit_is_shared_and_refuses_whole_units(tmp_path: Path) -> None:
    budget = SpoolBudget(200)
    first, second = opened(tmp_path, budget, "a"), opened(tmp_path, budget, "b")
    assert first.append([chunk(0, 78)]) == [1]  # 80 bytes with the key
    assert second.append([chunk(0, 78)]) == [1]
    # 40 bytes left: a two-part chunk of 2 x 30 does not fit and leaves nothing behind.
    assert first.append([chunk(1, 28), chunk(1, 28)]) is None
    assert (first.records, first.bytes, budget.used) == (1, 80, 160)
    assert second.append([chunk(1, 38)]) == [2]  # exactly fills the limit
    assert budget.used == 200
    assert first.append([chunk(2, 1)]) is None
    # Session records and dead letters are forced in beyond the limit.
    assert first.append([SpoolRecord("chunks", b"s1", b"end", "ended")], force=True) == [2]
    assert budget.used == 205
    second.remove([1])
    assert first.append([chunk(2, 28)]) == [3]
    first.close()
    second.close()
    assert budget.used == 0


def test_a_spool_is_locked_by_its_writer(tmp_path: Path) -> None:
    budget = SpoolBudget(1000)
    held = opened(tmp_path, budget, "live")
    held.append([chunk(0)])
    left = opened(tmp_path, budget, "left")
    left.append([chunk(0)])
    left.close()
    with pytest.raises(SpoolLockedError) as caught:
        Spool(held.path, "live", budget).open()
    assert str(caught.value) == f"{held.path}: spool in use by another process"
    assert orphan_spools(tmp_path) == [left.path]  # the held one is not an orphan
    held.close()
    assert sorted(orphan_spools(tmp_path)) == sorted([left.path, held.path])
    assert orphan_spools(tmp_path / "missing") == []


def test_a_file_that_is_not_a_spool_is_a_clear_error(tmp_path: Path) -> None:
    path = spool_file(tmp_path, "s1")
    path.write_bytes(b"this is not a database, just forty-odd bytes of text" * 100)
    with pytest.raises(SpoolCorruptError) as caught:
        Spool(path, None, SpoolBudget(10)).open()
    assert str(caught.value) == (
        f"{path}: not a readable spool (file is not a database); move it aside to start without it"
    )
    x = opened(tmp_path / "x", SpoolBudget(10), "x")
    x.append([chunk(0)], force=True)
    x.close()
    with pytest.raises(SpoolCorruptError) as caught:
        Spool(x.path, "y", SpoolBudget(10)).open()
    assert str(caught.value) == (
        f"{x.path}: not a readable spool (holds session 'x', not 'y'); move it aside to start "
        "without it"
    )


def test_a_torn_write_ahead_log_loses_only_the_unfinished_append(tmp_path: Path) -> None:
    """A crash mid-append: SQLite drops the WAL frames after the last whole commit."""
    budget = SpoolBudget(100_000)
    spool = opened(tmp_path / "live", budget)
    for seq in range(3):
        spool.append([chunk(seq, 3000)])
    # What a crash leaves on disk: the database and its WAL, copied while the writer runs.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(f"{spool.path}{suffix}", f"{crashed / spool.path.name}{suffix}")
    spool.close()
    wal = Path(f"{crashed / spool.path.name}-wal")
    with wal.open("r+b") as handle:  # the last frame was only half written
        handle.truncate(wal.stat().st_size - 100)

    recovered = Spool(crashed / spool.path.name, None, budget)
    recovered.open()
    assert [e.record for e in recovered.head(10)] == [chunk(0, 3000), chunk(1, 3000)]
    assert recovered.records == 2
    recovered.close()
