"""Batching, error classification and schema checks (no broker; the real embedded engine)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from runtime.batch_handler import Record
from runtime.errors import ExitCode
from runtime.settings import SinkSettings
from schemas.codec import get_codec
from sinks.batches import PartitionBatcher
from sinks.clickhouse_client import make_client
from sinks.exceptions import (
    ClickHouseBusyError,
    ClickHouseQueryError,
    ClickHouseReadOnlyError,
    ClickHouseUnavailableError,
    SchemaMismatchError,
)
from sinks.migrations import migrate
from sinks.sample_dataset import SESSION_A, sample_records
from sinks.sink_app import SinkHandler, check_schema
from sinks.store import Store
from sinks.tables import COLUMNS


def test_full_batches_span_offset_buckets() -> None:
    """A batch closes at the end of its offset bucket [k*N, (k+1)*N), so a restart from any
    committed offset cuts full batches at the same offsets."""
    batcher = PartitionBatcher("t", 0, 4, [])
    closed = []
    for offset in range(2, 14):  # starts mid-bucket, like after a commit at offset 2
        closed += batcher.add(offset, {"events": [[offset]]})
    assert [(b.first_offset, b.last_offset, b.token, b.records) for b in closed] == [
        (2, 3, "t:0:2-3", 2),
        (4, 7, "t:0:4-7", 4),
        (8, 11, "t:0:8-11", 4),
    ]
    tail = batcher.cut()  # a checkpoint cuts the open batch where consumption stands
    assert tail is not None
    assert (tail.token, tail.rows) == ("t:0:12-13", {"events": [[12], [13]]})
    assert batcher.cut() is None


def test_checkpoint_cut_and_ledgered_ranges_are_not_inserted_again() -> None:
    batcher = PartitionBatcher("t", 1, 10, [(0, 4), (5, 6)])
    closed = [b for offset in range(9) for b in batcher.add(offset, {"usage": [[offset]]})]
    assert closed == []  # 0..6 were inserted before: skipped
    assert batcher.skipped == 7
    batch = batcher.cut()
    assert batch is not None
    assert (batch.token, batch.records, batch.rows) == ("t:1:7-8", 2, {"usage": [[7], [8]]})
    # offset 9 ends its bucket (a record without rows still counts); 12 opens the next one
    closed = batcher.add(9, None) + batcher.add(12, {"usage": [[12]]})
    assert [(b.first_offset, b.last_offset, b.records) for b in closed] == [(9, 9, 1)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(make_client(f"chdb://{tmp_path / 'clickhouse'}"))
    try:
        migrate(store.client)
        yield store
    finally:
        store.close()


@pytest.mark.clickhouse
def test_schema_mismatch_names_table_and_column(store: Store) -> None:
    check_schema(store)
    store.command("ALTER TABLE usage DROP COLUMN reason")
    with pytest.raises(SchemaMismatchError) as info:
        check_schema(store)
    assert str(info.value) == (
        "table usage has no column reason: the store's schema is older or newer than this "
        "sink; run `inter1-pipeline migrate`"
    )
    store.command("DROP VIEW session_summary_live")
    store.command("DROP TABLE cues")
    with pytest.raises(SchemaMismatchError) as info:
        check_schema(store)
    assert str(info.value).startswith("table usage has no column reason")
    assert info.value.exit_code == ExitCode.DATA_ERROR


@pytest.mark.clickhouse
def test_a_value_that_does_not_fit_names_table_and_column(store: Store) -> None:
    row = [
        "c1", "s1", "rule", "kind", "info", "msg", 1.0, "not-a-number", [], "e1",
        None, "", "",
    ]  # fmt: skip
    with pytest.raises(SchemaMismatchError) as info:
        store.insert("cues", [row, [*row[:7], 2.0, *row[8:]]], COLUMNS["cues"])
    assert str(info.value).startswith(
        "table cues, column media_end_s: values of mixed types ['float', 'str']"
    )


@pytest.mark.clickhouse
def test_clickhouse_error_codes_map_to_classes(store: Store) -> None:
    with pytest.raises(SchemaMismatchError):  # 60 UNKNOWN_TABLE
        store.rows("SELECT * FROM no_such_table")
    with pytest.raises(ClickHouseQueryError) as syntax:  # 62 SYNTAX_ERROR: not listed
        store.rows("SELEC 1")
    assert type(syntax.value) is ClickHouseQueryError
    assert syntax.value.retriable is False
    with pytest.raises(ClickHouseBusyError) as refused:  # 395 throwIf: retriable
        store.rows("SELECT throwIf(1, 'refused')")
    assert refused.value.retriable is True
    store.command("SET readonly = 1")
    with pytest.raises(ClickHouseReadOnlyError):  # 164 READONLY
        store.command("CREATE TABLE x (a UInt8) ENGINE = Memory")


def test_unreachable_server_is_retriable_unavailable() -> None:
    with pytest.raises(ClickHouseUnavailableError) as info:
        make_client("http://127.0.0.1:1/db", connect_timeout_s=2)
    assert info.value.retriable is True


@pytest.mark.clickhouse
def test_summary_on_session_end_and_rewritten_by_a_late_event(store: Store) -> None:
    """The handler alone (records as the consume loop hands them over, no broker): the
    summary row appears at the checkpoint holding the SessionEnded; an event arriving after
    the end rewrites it with a higher version."""
    codec = get_codec()
    offsets: dict[str, int] = {}

    def record(key: str, name: str, datum: dict[str, Any]) -> Record:
        topic = f"inter1.{key}"
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        value = codec.encode(name, datum)
        sid = datum["session_id"].encode()
        return ConsumerRecord(topic, 0, offset, 0, 0, sid, value, None, len(sid), len(value), [])

    handler = SinkHandler(store, codec, "inter1.dead-letter", SinkSettings(batch_records=1000))
    first = [record(k, n, d) for k, n, d in sample_records() if d["session_id"] == SESSION_A]

    async def scenario() -> list[tuple[Any, ...]]:
        await handler.process(first)
        await handler.flush()
        summaries = store.rows("SELECT session_id, events, version FROM session_summaries FINAL")
        event = next(d for k, n, d in sample_records() if n == "Inter1Event")
        event = {**event, "event_id": "sess-a:0:000099", "event_seq": 99}
        await handler.process([record("events", "Inter1Event", event)])
        await handler.flush()
        return summaries + store.rows(
            "SELECT session_id, events, version FROM session_summaries FINAL"
        )

    assert asyncio.run(scenario()) == [("sess-a", 14, 19), ("sess-a", 15, 20)]
    assert handler.stats.summaries == 2


@pytest.mark.clickhouse
def test_summary_of_a_session_never_engaged(store: Store) -> None:
    """A timeline with no engaged state: the live view's engaged share is NULL (sumIf over a
    Nullable column matching no row); the summary row says 0 and the sink goes on (the NULL
    used to fail every checkpoint from then on)."""
    codec = get_codec()

    def never_engaged(datum: dict[str, Any]) -> dict[str, Any]:
        if datum.get("event_type") != "engagement.updated":
            return datum
        branch, payload = datum["payload"]
        return {**datum, "payload": (branch, {**payload, "state": "disengaged"})}

    records = [
        ConsumerRecord(f"inter1.{key}", 0, offset, 0, 0, b"sess-a", value, None, 6, len(value), [])
        for offset, (key, name, datum) in enumerate(
            (k, n, never_engaged(d)) for k, n, d in sample_records() if d["session_id"] == SESSION_A
        )
        for value in [codec.encode(name, datum)]
    ]
    handler = SinkHandler(store, codec, "inter1.dead-letter", SinkSettings(batch_records=1000))

    async def scenario() -> None:
        await handler.process(records)
        await handler.flush()

    asyncio.run(scenario())
    assert store.rows("SELECT engaged_share FROM session_summary_live") == [(None,)]
    assert store.rows("SELECT session_id, engaged_share FROM session_summaries FINAL") == [
        ("sess-a", 0.0)
    ]
