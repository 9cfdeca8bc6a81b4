"""Signal intervals across Inter-1 connections, and the session filter reaching every table's
primary key (the real embedded engine, no broker)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.inter1_events import PAYLOAD_BRANCHES
from sinks.clickhouse_client import make_client
from sinks.migrations import migrate
from sinks.sample_dataset import sample_records
from sinks.store import Store
from sinks.tables import COLUMNS, KafkaCoordinates, rows_for

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
SID = "sess-r"


def _event(inc: int, seq: int, offset_s: float, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"{SID}:{inc}:{seq:06d}",
        "session_id": SID,
        "api_version": "v1",
        "event_type": kind,
        "timestamp": T0 + timedelta(seconds=offset_s + seq),
        "correlation_id": f"c-{inc}",
        "incarnation": inc,
        "event_seq": seq,
        "media_offset_s": offset_s,
        "chunk_seq": seq,
        "first_chunk_seq": 0,
        "received_at": T0,
        "tenant": "acme",
        "app": "coach",
        "payload": (PAYLOAD_BRANCHES[kind], data),
    }


def _signal(kind: str, signal: str, at: float, probability: str = "medium") -> tuple[str, Any]:
    if kind == "signal.ended":
        return kind, {"signal_type": signal, "end": at}
    data = {"signal_type": signal, "start": at, "probability": probability}
    return kind, {**data, "rationale": None, "modality": None}


# connection 0 from media 0 s; it drops; connection 1 from media 12 s, whose first published
# window is 12 s (engagement); times in each connection's own seconds
CONNECTION_0 = [
    ("engagement.updated", {"state": "engaged", "start": 0.0}),
    _signal("signal.detected", "interest", 3.0),
    _signal("signal.detected", "stress", 3.0, "high"),
    _signal("signal.detected", "hesitation", 6.0),
    _signal("signal.detected", "confidence", 0.0),
    _signal("signal.ended", "confidence", 3.0),
]
CONNECTION_1 = [
    ("engagement.updated", {"state": "neutral", "start": 0.0}),
    _signal("signal.detected", "interest", 0.0),  # re-detected at its first window: continues
    _signal("signal.ended", "interest", 3.0),
    _signal("signal.ended", "stress", 6.0),  # detection suppressed (<= watermark), ended sent
    _signal("signal.detected", "hesitation", 6.0, "low"),  # only from 18 s: a new interval
    _signal("signal.updated", "hesitation", 6.0, "high"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(make_client(f"chdb://{tmp_path / 'clickhouse'}"))
    try:
        migrate(store.client)
        yield store
    finally:
        store.close()


def _insert(store: Store, name: str, datum: dict[str, Any], offset: int) -> None:
    for table, rows in (rows_for(name, datum, KafkaCoordinates("e", 0, offset)) or {}).items():
        store.insert(table, rows, COLUMNS[table])


def test_an_interval_continues_across_a_reconnect(store: Store) -> None:
    events = [_event(0, i, 0.0, *e) for i, e in enumerate(CONNECTION_0)]
    events += [_event(1, i, 12.0, *e) for i, e in enumerate(CONNECTION_1)]
    for offset, datum in enumerate(events):
        _insert(store, "Inter1Event", datum, offset)
    rows = store.rows(
        "SELECT signal_type, incarnation, start_s, end_s, state, first_probability, "
        "peak_probability, updates, opened_by, closed_by, connections "
        "FROM signal_intervals ORDER BY signal_type, start_s"
    )
    assert rows == [
        ("confidence", 0, 0.0, 3.0, "closed", "medium", "medium", 0, "sess-r:0:000004",
         "sess-r:0:000005", 1),
        # connection 1 did not report it at its first window (12 s): ended by 12 s at the latest
        ("hesitation", 0, 6.0, 12.0, "closed_at_reconnect", "medium", "medium", 0,
         "sess-r:0:000003", "", 1),
        ("hesitation", 1, 18.0, None, "open", "low", "high", 1, "sess-r:1:000004", "", 1),
        ("interest", 0, 3.0, 15.0, "closed", "medium", "medium", 0, "sess-r:0:000001",
         "sess-r:1:000002", 2),
        ("stress", 0, 3.0, 18.0, "closed", "high", "high", 0, "sess-r:0:000002",
         "sess-r:1:000003", 2),
    ]  # fmt: skip
    # once the session ends, the open interval is closed at its end
    _insert(
        store,
        "SessionEnded",
        {
            "session_id": SID,
            "reason": "completed",
            "error": None,
            "chunks": 10,
            "media_seconds": 24.0,
            "bytes": 1,
            "ended_at": T0 + timedelta(seconds=30),
        },
        99,
    )
    assert store.rows(
        "SELECT start_s, end_s, state FROM signal_intervals WHERE signal_type = 'hesitation' "
        "ORDER BY start_s"
    ) == [(6.0, 12.0, "closed_at_reconnect"), (18.0, 24.0, "closed_at_session_end")]


def _reads(plan: str) -> list[tuple[str, str]]:
    """(table, primary-key condition) of every ReadFromMergeTree step of an EXPLAIN indexes=1."""
    out = []
    for block in plan.split("ReadFromMergeTree (")[1:]:
        table = block.split(")", 1)[0]
        key = re.search(r"PrimaryKey\s.*?Condition: (.+?)\n", block, re.DOTALL)
        out.append((table, key[1].strip() if key else "none"))
    return out


def test_a_session_summary_reads_every_table_by_its_primary_key(store: Store) -> None:
    """The sink's summary query, filtered by session, reaches every table it reads through
    the session_id primary key (no full scan; before 0004 the signal.ended side of
    signal_intervals' ASOF JOIN read all of signal_events)."""
    for offset, (_, name, datum) in enumerate(sample_records()):
        _insert(store, name, datum, offset)
    plan = store.raw(
        "EXPLAIN indexes = 1 SELECT * FROM session_summary_live WHERE has(['sess-a'], session_id)",
        "TabSeparatedRaw",
    ).decode()
    reads = _reads(plan)
    assert sorted({table for table, _ in reads}) == [
        "default.cues",
        "default.engagement_events",
        "default.events",
        "default.quality_overall",
        "default.quality_timeline",
        "default.sessions_ended",
        "default.sessions_started",
        "default.signal_events",
        "default.usage",
    ]
    assert [key for _, key in reads if "session_id" not in key] == []


def _quality(window_s: float) -> tuple[str, Any]:
    names = ("quality_index", "clarity", "authority", "energy", "rapport", "learning")
    values = dict.fromkeys(names, 50.0)
    entry = {"start": window_s, "end": window_s + 8.0, "values": values}
    return "conversation_quality.updated", {"overall": None, "timeline": [entry]}


# one session's window events (connection 0 from media 0 s), window by window: interest
# active from 0 s throughout, frustration detected at 6 s, updated at 9 s (its start
# stays 6 s), both ended at 12 s
WINDOWS = [
    [("engagement.updated", {"state": "engaged", "start": 0.0}),
     _signal("signal.detected", "interest", 0.0), _quality(0.0)],
    [_signal("signal.updated", "interest", 0.0), _quality(3.0)],
    [_signal("signal.updated", "interest", 0.0), _signal("signal.detected", "frustration", 6.0),
     _quality(6.0)],
    [_signal("signal.updated", "interest", 0.0), _signal("signal.updated", "frustration", 6.0),
     _quality(9.0)],
    [_signal("signal.ended", "interest", 12.0), _signal("signal.ended", "frustration", 12.0),
     _quality(12.0)],
]  # fmt: skip


def _intervals(tmp_path: Path, connections: list[list[list[tuple[str, Any]]]]) -> list[Any]:
    """signal_intervals of one store holding ``connections`` (each from media 0 s)."""
    store = Store(make_client(f"chdb://{tmp_path / 'clickhouse'}"))
    try:
        migrate(store.client)
        offset = 0
        for inc, windows in enumerate(connections):
            for seq, kind_data in enumerate(e for window in windows for e in window):
                _insert(store, "Inter1Event", _event(inc, seq, 0.0, *kind_data), offset)
                offset += 1
        return store.rows(
            "SELECT * EXCEPT (incarnation, connections, opened_by, closed_by) "
            "FROM signal_intervals ORDER BY signal_type, start_s"
        )
    finally:
        store.close()


def test_the_same_window_events_give_the_same_intervals_across_a_failover(
    tmp_path: Path,
) -> None:
    """A failover after the 6 s window: connection 1 analyses again from 0 s, publishes from
    9 s on, so it sends frustration's ``signal.updated`` (start 6 s) but not its detection.
    Its first published window is 9 s (not the 0 s start its interest update carries): the
    intervals are the ones a single connection gives for the same window events."""
    clean = _intervals(tmp_path / "clean", [WINDOWS])
    assert [(r[3], r[4], r[5], r[6], r[9]) for r in clean] == [
        ("frustration", 6.0, 12.0, "closed", 1),
        ("interest", 0.0, 12.0, "closed", 3),
    ]
    assert _intervals(tmp_path / "failover", [WINDOWS[:3], WINDOWS[3:]]) == clean
