"""Batching, error classification and schema checks (no broker; the real embedded engine)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from fastavro import schemaless_writer

from runtime.batch_handler import Record
from runtime.errors import ConfigError, ExitCode
from runtime.settings import SinkSettings
from runtime.topics import topic_name
from schemas.codec import Codec, get_codec
from schemas.examples import example_records
from schemas.exceptions import CodecError, UnknownFingerprintError
from schemas.framing import single_object_header
from sinks.batches import PartitionBatcher
from sinks.clickhouse_client import make_client
from sinks.decoding import STORED_RECORDS, SinkDecoder, micros
from sinks.exceptions import (
    ClickHouseBusyError,
    ClickHouseQueryError,
    ClickHouseReadOnlyError,
    ClickHouseUnavailableError,
    SchemaMismatchError,
)
from sinks.faults import parse_crash_at
from sinks.handler import SinkHandler, check_schema
from sinks.migrations import migrate
from sinks.sample_dataset import SESSION_A, sample_records
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


def test_an_intended_range_is_cut_at_its_end_again() -> None:
    """A partial batch whose intent row is in the ledger but not its ledger row (crash
    between) is re-cut at the same last offset, whatever arrives after it, so its
    re-insert carries the same dedup token; the next batch starts after it."""
    batcher = PartitionBatcher("t", 0, 100, [(0, 2)], intended=[(3, 5)])
    closed = [b for offset in range(12) for b in batcher.add(offset, {"events": [[offset]]})]
    assert [(b.token, b.records) for b in closed] == [("t:0:3-5", 3)]
    tail = batcher.cut()
    assert tail is not None
    assert (tail.token, tail.records) == ("t:0:6-11", 6)


def test_event_records_are_cut_like_any_record() -> None:
    """The sink's event path (``add_event``) cuts the same batches as ``add``: bucket ends,
    ledgered ranges skipped, an intended range re-cut, rows of other records in between."""

    def run(events_fast: bool) -> list[tuple[str, int, list[int], list[list[int]], set[str]]]:
        batcher = PartitionBatcher("t", 0, 8, [(0, 2), (20, 21)], intended=[(3, 5)])
        closed = []
        for offset in range(30):
            record = ConsumerRecord("t", 0, offset, 0, 0, None, b"", None, 0, 0, [])
            if offset % 7 == 6:  # a record decoded in Python, with rows
                closed += batcher.add(offset, {"usage": [[offset]]})
            elif events_fast:
                closed += batcher.add_event(offset, record, f"s{offset % 3}")
            else:
                closed += batcher.add(
                    offset, None, event_session=f"s{offset % 3}", event_record=record
                )
        tail = batcher.cut()
        assert tail is not None
        assert batcher.skipped == 5
        return [
            (
                b.token,
                b.records,
                [r.offset for r in b.events],
                b.rows.get("usage", []),
                b.event_sessions,
            )
            for b in [*closed, tail]
        ]

    assert run(events_fast=True) == run(events_fast=False)
    assert run(events_fast=True) == [
        ("t:0:3-5", 3, [3, 4, 5], [], {"s0", "s1", "s2"}),
        ("t:0:6-7", 2, [7], [[6]], {"s1"}),
        ("t:0:8-15", 8, [8, 9, 10, 11, 12, 14, 15], [[13]], {"s0", "s1", "s2"}),
        ("t:0:16-19", 4, [16, 17, 18, 19], [], {"s0", "s1", "s2"}),
        ("t:0:22-23", 2, [22, 23], [], {"s1", "s2"}),
        ("t:0:24-29", 6, [24, 25, 26, 28, 29], [[27]], {"s0", "s1", "s2"}),
    ]


def test_crash_point_spec() -> None:
    assert parse_crash_at(None) is None
    point = parse_crash_at("after_rows@events:0:12")
    assert point is not None
    assert (point.point, point.topic, point.partition, point.first_offset) == (
        "after_rows",
        topic_name("events"),
        0,
        12,
    )
    with pytest.raises(ConfigError) as info:
        parse_crash_at("after_rows@12")
    assert str(info.value) == (
        "PIPELINE_SINK_CRASH_AT='after_rows@12': expected <after_intent|after_rows>@"
        "<events|usage|cues|chunks>:<partition>:<first offset>"
    )


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
def test_a_table_is_described_once_and_again_after_a_failed_insert(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    described: list[str] = []
    real = store.client.create_insert_context

    def spy(table: str, *args: Any, **kwargs: Any) -> Any:
        if len(args) < 3 or args[2] is None:  # no column types given: a DESCRIBE TABLE
            described.append(table)
        return real(table, *args, **kwargs)

    monkeypatch.setattr(store.client, "create_insert_context", spy)
    store.command("CREATE TABLE t (a UInt64, b String) ENGINE = MergeTree ORDER BY a")
    store.insert("t", [[1, "x"]], ["a", "b"])
    store.insert("t", [[2, "y"]], ["a", "b"], token="t:0:2-2")
    store.insert("t", [[3]], ["a"])  # other columns: described for them
    assert described == ["t", "t"]
    # The table changes under the sink (a migration): the insert on the known types fails
    # on the server; tried again described anew, it fails as an undescribed insert would.
    store.command("DROP TABLE t")
    store.command("CREATE TABLE t (a UInt64, b UInt8) ENGINE = MergeTree ORDER BY a")
    with pytest.raises(SchemaMismatchError) as info:
        store.insert("t", [[4, "z"]], ["a", "b"])
    assert str(info.value) == (
        "table t: a value does not fit its column: invalid literal for int() with base 10: 'z'"
    )
    assert described == ["t", "t", "t"]
    store.insert("t", [[4, 4]], ["a", "b"])
    store.insert("t", [[5, 5]], ["a", "b"])
    assert described == ["t", "t", "t", "t"]
    assert store.rows("SELECT a, b FROM t ORDER BY a") == [(4, 4), (5, 5)]


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


class _RecordMaker:
    """Records of the sample topics as the consume loop hands them over (no broker), each
    topic's offsets counted from 0."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.offsets: dict[str, int] = {}

    def __call__(self, key: str, name: str, datum: dict[str, Any]) -> Record:
        topic = f"inter1.{key}"
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        value = self.codec.encode(name, datum)
        sid = datum["session_id"].encode()
        return ConsumerRecord(topic, 0, offset, 0, 0, sid, value, None, len(sid), len(value), [])


@pytest.mark.clickhouse
def test_summary_on_session_end_and_rewritten_by_a_late_event(store: Store) -> None:
    """The handler alone (records as the consume loop hands them over, no broker): the
    summary row appears at the checkpoint holding the SessionEnded; an event arriving after
    the end rewrites it with a higher version."""
    codec = get_codec()
    record = _RecordMaker(codec)

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


def test_one_ledger_insert_per_call_after_every_batch_and_a_failed_call_retried_whole(
    store: Store,
) -> None:
    """The batches of one insert call (a checkpoint: one per topic-partition) get their
    ledger rows in one insert, after all their rows. ClickHouse refusing the usage rows
    (a guard view throws) fails the call with no ledger row written, every batch kept; the
    retry stores each row once (raw counts equal FINAL counts: the rows already in are
    dropped by their tokens) and ledgers each batch once, in one part."""
    codec = get_codec()
    record = _RecordMaker(codec)
    offsets = record.offsets

    settings = SinkSettings(batch_records=1000, retry_initial_s=0.01, retry_timeout_s=0.01)
    handler = SinkHandler(store, codec, "inter1.dead-letter", settings)
    records = [record(k, n, d) for k, n, d in sample_records()]
    store.command("SYSTEM STOP MERGES sink_batches")
    store.command("CREATE TABLE guard (fail UInt8) ENGINE = Memory")
    store.command("INSERT INTO guard VALUES (1)")
    store.command(
        "CREATE MATERIALIZED VIEW usage_guard ENGINE = Null AS SELECT "
        "throwIf((SELECT max(fail) FROM guard) = 1, 'injected insert failure') AS x FROM usage"
    )
    ledger = (
        "SELECT topic, first_offset, last_offset, records, uniqExact(_part) OVER () "
        "FROM sink_batches WHERE records > 0 ORDER BY topic"
    )
    counts = "SELECT (SELECT count() FROM {t}), (SELECT count() FROM {t} FINAL)"

    async def scenario() -> None:
        await handler.process(records)
        with pytest.raises(ClickHouseBusyError, match="injected insert failure"):
            await handler.flush()
        assert store.rows(ledger) == []
        assert store.rows(counts.format(t="events")) == [(17, 17)]  # in before usage failed
        store.command("TRUNCATE TABLE guard")
        await handler.flush()

    asyncio.run(scenario())
    assert store.rows(ledger) == [
        ("inter1.chunks", 0, offsets["inter1.chunks"] - 1, offsets["inter1.chunks"], 1),
        ("inter1.cues", 0, 0, 1, 1),
        ("inter1.events", 0, 16, 17, 1),
        ("inter1.usage", 0, 5, 6, 1),
    ]
    for table in ("events", "usage", "cues", "sessions_started", "sessions_ended"):
        raw, final = store.rows(counts.format(t=table))[0]
        assert raw == final > 0, table
    assert handler.stats.batches_inserted == 4


@pytest.mark.clickhouse
def test_chunk_rows_latency_view_and_a_never_engaged_session(store: Store) -> None:
    """Chunk records land in ``chunks`` (metadata, no bytes); ``chunk_latency`` pairs each
    chunk with the first analysis event after it; a session never "engaged" is summarised
    with engaged_share 0 (it was NULL and stopped the sink)."""
    codec = get_codec()
    record = _RecordMaker(codec)

    def never_engaged(name: str, datum: dict[str, Any]) -> dict[str, Any]:
        if name == "Inter1Event" and datum["event_type"] == "engagement.updated":
            branch, payload = datum["payload"]
            return {**datum, "payload": (branch, {**payload, "state": "neutral"})}
        return datum

    published = datetime(2026, 1, 1, tzinfo=UTC)
    chunks = [
        {
            "session_id": SESSION_A,
            "seq": seq,
            "media_start_s": 3.0 * seq,
            "media_duration_s": 3.0,
            "part_index": 0,
            "part_count": 1,
            "keyframe_start": True,
            "byte_size": 4,
            "payload": b"\x00\x00\x00\x00",
            "produced_at": published,
        }
        for seq in (0, 1, 7)
    ]
    records = [
        record(k, n, never_engaged(n, d))
        for k, n, d in sample_records()
        if d["session_id"] == SESSION_A
    ] + [record("video-chunks", "VideoChunk", c) for c in chunks]
    handler = SinkHandler(store, codec, "inter1.dead-letter", SinkSettings(batch_records=1000))

    async def scenario() -> None:
        await handler.process(records)
        await handler.flush()

    asyncio.run(scenario())
    naive = published.replace(tzinfo=None)  # clickhouse-connect returns UTC times naive
    assert store.rows("SELECT session_id, engaged_share FROM session_summaries FINAL") == [
        (SESSION_A, 0.0)
    ]
    assert store.rows(
        "SELECT seq, media_start_s, byte_size, produced_at, source_offset FROM chunks ORDER BY seq"
    ) == [(0, 0.0, 4, naive, 0), (1, 3.0, 4, naive, 1), (7, 21.0, 4, naive, 2)]
    latency = store.rows(
        "SELECT seq, media_end_s, first_event_chunk_seq, latency_s > 0 FROM chunk_latency "
        "ORDER BY seq"
    )
    # seq 7 is after every analysis event (session lifecycle envelopes do not count)
    assert latency == [(0, 3.0, 0, 1), (1, 6.0, 1, 1), (7, 24.0, None, None)]


def test_sink_decoder_matches_the_codec_with_timestamps_as_micros() -> None:
    """Every example record of every stored kind decodes to the codec's datum, timestamps as
    exact µs ints; an older writer version comes back in the current shape; chunks and dead
    letters are recognised, not decoded; bad bytes raise the codec's typed error."""
    codec = get_codec()
    decoder = SinkDecoder(codec)
    for name, datum in example_records():
        data = codec.encode(name, datum)
        got_name, got = decoder.decode(data)
        assert got_name == name
        if name not in STORED_RECORDS:
            assert got is None
            continue
        want = {
            k: micros(v) if isinstance(v, datetime) else v
            for k, v in codec.decode(data).datum.items()
        }
        assert got == want
    started = next(d for n, d in example_records() if n == "SessionStarted")
    v1 = codec.catalog.versions("SessionStarted")[0]
    body = BytesIO()
    schemaless_writer(body, v1.parsed, {k: v for k, v in started.items() if k != "labels"})
    old = single_object_header(v1.fingerprint) + body.getvalue()
    name, resolved = decoder.decode(old)
    assert name == "SessionStarted"
    assert resolved is not None
    assert (resolved["labels"], resolved["started_at"]) == ({}, micros(started["started_at"]))
    assert list(resolved) == [
        f["name"] for f in codec.catalog.current("SessionStarted").schema["fields"]
    ]
    assert micros(datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)) == 1_795_512_600_123_456
    with pytest.raises(UnknownFingerprintError):
        decoder.decode(b"\xc3\x01not-avro-at-all", topic="t")
    with pytest.raises(CodecError) as info:
        decoder.decode(old[:-3])
    assert info.value.retriable is False
