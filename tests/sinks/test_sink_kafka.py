"""The sink on the real broker and the embedded engine: exact rows, crashes, retries.

The sample dataset (``sinks/sample_dataset.py``) is published to private topics; a sink
subprocess inserts it; the store is then opened here and compared with exact values.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from runtime.kafka import make_producer
from runtime.settings import SinkSettings, load
from runtime.topics import load_topic_specs
from schemas.codec import get_codec
from sinks.faults import CRASH_EXIT_CODE
from sinks.sample_dataset import sample_records
from sinks.sink_app import SinkApp
from sinks.warehouse import DirectWarehouse, Warehouse, open_warehouse

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

# every table and view, without the columns that record wall-clock insert time or Kafka
# topic names (private per run)
SNAPSHOT = {
    "events": "SELECT * EXCEPT (ingested_at, source_topic, received_at) FROM events FINAL",
    "signal_events": "SELECT * FROM signal_events FINAL",
    "engagement_events": "SELECT * FROM engagement_events FINAL",
    "quality_overall": "SELECT * FROM quality_overall FINAL",
    "quality_timeline": "SELECT * FROM quality_timeline FINAL",
    "coverage": "SELECT * FROM coverage FINAL",
    "sessions_started": "SELECT * FROM sessions_started FINAL",
    "sessions_ended": "SELECT * FROM sessions_ended FINAL",
    "usage": "SELECT * FROM usage FINAL",
    "cues": "SELECT * FROM cues FINAL",
    "session_summaries": "SELECT * EXCEPT (summarised_at) FROM session_summaries FINAL",
    "sessions": "SELECT * FROM sessions",
    "signal_intervals": "SELECT * FROM signal_intervals",
    "engagement_timeline": "SELECT * FROM engagement_timeline",
    "quality_timeline_latest": "SELECT * FROM quality_timeline_latest",
    "billing_daily": "SELECT * FROM billing_daily",
    "session_summary_live": "SELECT * FROM session_summary_live",
}
RAW_COUNTS = (
    "SELECT (SELECT count() FROM events) AS events, (SELECT count() FROM signal_events) AS s,"
    " (SELECT count() FROM engagement_events) AS g, (SELECT count() FROM quality_overall) AS qo,"
    " (SELECT count() FROM quality_timeline) AS qt, (SELECT count() FROM coverage) AS c,"
    " (SELECT count() FROM usage) AS u, (SELECT count() FROM cues) AS cu,"
    " (SELECT count() FROM sessions_started) AS ss, (SELECT count() FROM sessions_ended) AS se"
)


@contextmanager
def opened(store_dir: Path) -> Iterator[Warehouse]:
    """The stopped sink's store, opened in this process (and closed: one chDB path per process)."""
    warehouse = open_warehouse(f"chdb://{store_dir}")
    try:
        yield warehouse
    finally:
        warehouse.close()


def snapshot(warehouse: Warehouse) -> dict[str, Any]:
    """Every table and view, rows sorted, plus the raw (not deduplicated) row counts."""
    out: dict[str, Any] = {
        name: warehouse.rows(f"SELECT * FROM ({sql}) ORDER BY ALL")
        for name, sql in SNAPSHOT.items()
    }
    out["raw_counts"] = warehouse.rows(RAW_COUNTS)
    return out


def test_sample_dataset_rows(sample_store: Any) -> None:
    """Exact rows per table and view for the sample stream (one clean sink run)."""
    # while the sink ran, the store was read through its endpoint
    assert sample_store.endpoint_rows == [{"n": 17}]
    with opened(sample_store.store_dir) as warehouse:
        assert isinstance(warehouse, DirectWarehouse)  # the sink stopped: opened directly
        snap = snapshot(warehouse)
        rows = warehouse.rows
        assert rows(
            "SELECT event_type, count() AS n FROM events FINAL GROUP BY ALL ORDER BY ALL"
        ) == [
            {"event_type": "conversation_quality.updated", "n": 2},
            {"event_type": "coverage.degraded", "n": 1},
            {"event_type": "coverage.dropped", "n": 1},
            {"event_type": "engagement.updated", "n": 4},
            {"event_type": "gaze.updated", "n": 1},
            {"event_type": "session.ended", "n": 1},
            {"event_type": "session.ready", "n": 1},
            {"event_type": "signal.detected", "n": 3},
            {"event_type": "signal.ended", "n": 2},
            {"event_type": "signal.updated", "n": 1},
        ]
        assert rows("SELECT payload_json FROM events FINAL WHERE event_type = 'gaze.updated'") == [
            {
                # keys in schema order (type, raw_json): the order ClickHouse writes them in
                "payload_json": '{"branch":"UnknownEvent","data":{"type":"gaze.updated",'
                '"raw_json":"{\\"type\\":\\"gaze.updated\\",\\"data\\":{\\"target\\":\\"camera\\"}}"}}'
            }
        ]
    # each table holds each logical row once, also before any merge (no duplicate inserts)
    assert snap["raw_counts"] == [
        {"events": 17, "s": 6, "g": 4, "qo": 2, "qt": 2, "c": 2, "u": 6, "cu": 1, "ss": 1, "se": 1}
    ]
    assert {k: len(v) for k, v in snap.items()} == {
        "events": 17,
        "signal_events": 6,
        "engagement_events": 4,
        "quality_overall": 2,
        "quality_timeline": 2,
        "coverage": 2,
        "sessions_started": 1,
        "sessions_ended": 1,
        "usage": 6,
        "cues": 1,
        "session_summaries": 1,
        "sessions": 1,
        "signal_intervals": 3,
        "engagement_timeline": 4,
        "quality_timeline_latest": 2,
        "billing_daily": 2,
        "session_summary_live": 2,
        "raw_counts": 1,
    }
    assert [
        tuple(r[k] for k in ("session_id", "signal_type", "start_s", "end_s", "state"))
        + tuple(r[k] for k in ("first_probability", "peak_probability", "updates", "closed_by"))
        for r in snap["signal_intervals"]
    ] == [
        ("sess-a", "hesitation", 3, 9, "closed", "medium", "high", 1, "sess-a:0:000005"),
        ("sess-a", "interest", 15, 30, "closed_at_session_end", "low", "low", 0, ""),
        # detected by the first connection, ended by the second (after a failover)
        ("sess-b", "stress", 3, 6, "closed", "high", "high", 0, "sess-b:1:000000"),
    ]
    assert [
        (r["session_id"], r["state"], r["start_s"], r["end_s"], r["duration_s"])
        for r in snap["engagement_timeline"]
    ] == [
        ("sess-a", "engaged", 0, 12, 12),
        ("sess-a", "engaged", 24, 30, 6),
        ("sess-a", "neutral", 12, 24, 12),
        ("sess-b", "disengaged", 0, None, None),
    ]
    assert [
        (r["kind"], r["reason"], r["start_s"], r["end_s"], r["seconds"]) for r in snap["coverage"]
    ] == [("dropped", "", 18, 21, 3), ("degraded", "video_gap", 21, 24, 3)]
    assert [
        (r["start_s"], r["end_s"], r["quality_index"], r["clarity"])
        for r in snap["quality_timeline_latest"]
    ] == [(0, 8, 70, 60), (3, 11, 75, 66)]
    assert snap["billing_daily"] == [
        {
            "day": "2026-11-24",
            "tenant": "acme",
            "app": "sales-coach",
            "sessions": 1,
            "analysed_s": 24,
            "degraded_s": 3,
            "billable_s": 27,
            "dropped_s": 3,
            "reanalysed_s": 0,
        },
        {
            "day": "2026-11-24",
            "tenant": "globex",
            "app": "interview",
            "sessions": 1,
            "analysed_s": 6,
            "degraded_s": 0,
            "billable_s": 6,
            "dropped_s": 0,
            "reanalysed_s": 3,
        },
    ]
    session = snap["sessions"][0]
    assert (session["session_id"], session["labels"], session["end_reason"]) == (
        "sess-a",
        {"meeting": "weekly-sync"},
        "completed",
    )
    # the summary row written on the SessionEnded record: only the ended session has one
    assert snap["session_summaries"] == [
        {
            "session_id": "sess-a",
            "tenant": "acme",
            "app": "sales-coach",
            "labels": {"meeting": "weekly-sync"},
            "started_at": "2026-11-24 09:30:00.000000",
            "ended_at": "2026-11-24 09:30:31.000000",
            "end_reason": "completed",
            "media_seconds": 30,
            "events": 14,
            "signals": 2,
            "signal_types": 2,
            "open_signals": 1,
            "engaged_share": 0.6,
            "quality_index": 75,
            "analysed_s": 24,
            "degraded_s": 3,
            "dropped_s": 3,
            "reanalysed_s": 0,
            "billable_s": 27,
            "cues": 1,
            "version": 19,
        }
    ]
    # the session the sink never saw start is kept: its events, usage and live summary
    live_b = snap["session_summary_live"][1]
    assert (live_b["session_id"], live_b["events"], live_b["billable_s"]) == ("sess-b", 3, 6)
    assert live_b["quality_index"] is None
    # the undecodable record went to the dead-letter topic with its reason
    (dead,) = sample_store.dead_letters
    assert (dead["stage"], dead["source_partition"], dead["source_offset"]) == ("sink", 0, 17)
    assert dead["source_topic"] == sample_store.topics.name("events")
    assert (dead["error_type"], dead["value"], dead["session_id"]) == (
        "UnknownFingerprintError",
        b"\xc3\x01not-avro-at-all",
        "sess-x",
    )
    assert dead["retriable"] is False


def test_kill9_between_insert_and_commit_then_restart(
    sample_store: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """kill -9 after batches were inserted, before any commit; the restart re-reads them.

    Every table and view (and the raw row counts) equals the clean run's.
    """
    helpers = request.getfixturevalue("sink_helpers")
    topics = helpers.create_topics(f"sinkkill-{uuid.uuid4().hex[:8]}.")
    helpers.publish_sample(topics)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    store_dir = tmp_path / "clickhouse"
    # batches of 2 offsets, no checkpoint for an hour: full batches are inserted (among them
    # the session's SessionEnded), none committed, no summary written (that is a checkpoint's)
    # events as Avro containers decoded by ClickHouse (the clean run decoded them here:
    # small batches), so the comparison also shows both ways store the same rows
    container = {"PIPELINE_SINK_CONTAINER_MIN_EVENTS": "1"}
    first = helpers.SinkProcess(
        store_dir,
        topics,
        group,
        PIPELINE_SINK_BATCH_RECORDS="2",
        PIPELINE_SINK_FLUSH_INTERVAL_S="3600",
        **container,
    )
    try:
        # events 18 records -> 9 full batches, usage 6 -> 3, chunks 2 -> 1; the one cue waits
        first.wait_rows("SELECT count() FROM sink_batches", 13)
        first.wait_rows("SELECT count() FROM events", 17)
        assert first.query("SELECT count() AS n FROM cues") == [{"n": 0}]
        assert first.query("SELECT count() AS n FROM session_summaries") == [{"n": 0}]
        assert helpers.committed(group) == {}
    finally:
        first.kill9()
    second = helpers.SinkProcess(
        store_dir, topics, group, PIPELINE_SINK_BATCH_RECORDS="2", **container
    )
    try:
        helpers.wait_committed(group, topics)
        assert second.terminate() == 0, second.tail()
    finally:
        if second.proc.poll() is None:
            second.kill9()
    assert '"event": "replaying_ledgered_batches"' in second.log.read_text()
    with opened(store_dir) as warehouse:
        after_crash = snapshot(warehouse)
        ledger = warehouse.rows(
            "SELECT partition, first_offset, last_offset FROM sink_batches FINAL "
            "WHERE topic LIKE '%inter1.events' ORDER BY first_offset"
        )
    with opened(sample_store.store_dir) as warehouse:
        clean = snapshot(warehouse)
    assert after_crash == clean
    # the batches inserted before the crash were not inserted again
    assert ledger == [
        {"partition": 0, "first_offset": first, "last_offset": first + 1}
        for first in range(0, 18, 2)
    ]


def test_batch_retried_after_insert_failure_appears_once(
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """ClickHouse refuses inserts into usage (a guard view throws): the sink pauses, retries
    with backoff, and once the guard is lifted every row is there exactly once.

    The failed inserts are partial failures: ClickHouse wrote the batch's rows into
    ``usage`` before the view threw, so each retry of the same batch is dropped by its
    ``insert_deduplication_token``; the raw (not FINAL) count proves it.
    """
    helpers = request.getfixturevalue("sink_helpers")
    topics = helpers.create_topics(f"sinkretry-{uuid.uuid4().hex[:8]}.")
    counts = helpers.publish_sample(topics, garbage=False)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", topics.prefix)
    load.cache_clear()
    load_topic_specs.cache_clear()
    settings = SinkSettings(
        group_id=f"sink-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.3,
        retry_initial_s=0.2,
        retry_max_s=0.4,
        session_timeout_s=6,
    )

    async def scenario() -> tuple[int, list[tuple[Any, ...]]]:
        app = SinkApp(url=f"chdb://{tmp_path / 'clickhouse'}", settings=settings)
        await app.start()
        try:
            assert app._loop is not None  # fetches gather live records (the defaults)
            fetcher = app._loop.consumer._fetcher
            assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (250, 1024 * 1024)
            store = app.store
            store.command("CREATE TABLE guard (fail UInt8) ENGINE = Memory")
            store.command("INSERT INTO guard VALUES (1)")
            store.command(
                "CREATE MATERIALIZED VIEW usage_guard ENGINE = Null AS SELECT "
                "throwIf((SELECT max(fail) FROM guard) = 1, 'injected insert failure') AS x "
                "FROM usage"
            )
            runner = asyncio.create_task(app.run())
            deadline = time.monotonic() + 60
            while app.handler.stats.insert_failures < 3:
                assert not runner.done(), "the sink stopped instead of retrying"
                assert time.monotonic() < deadline, "the sink did not retry 3 times in 60 s"
                await asyncio.sleep(0.1)
            during = await _ops_pages(app.http_port)
            store.command("TRUNCATE TABLE guard")
            total = sum(counts.values())
            while app.handler.stats.records < total or app.handler.stats.summaries < 1:
                assert time.monotonic() < deadline, (
                    f"only {app.handler.stats.records} of {total} records were inserted in 60 s"
                )
                await asyncio.sleep(0.1)
            while app.handler.retrying:  # until a checkpoint succeeded
                assert time.monotonic() < deadline, "no checkpoint succeeded after the guard"
                await asyncio.sleep(0.1)
            after = await _ops_pages(app.http_port)
            app.request_stop()
            await runner
            # the operations endpoint: ready throughout; retrying while inserts failed
            assert during["/healthz"] == (200, "ok\n")
            assert during["/readyz"] == (200, "ready\n")
            assert _sample(during, "inter1_sink_clickhouse_retrying") == 1
            assert _sample(during, "inter1_sink_insert_failures_total") >= 3
            assert _sample(after, "inter1_sink_clickhouse_retrying") == 0
            assert _sample(after, "inter1_sink_records_total") == total
            assert _sample(after, "inter1_sink_rows_inserted_total", table="usage") == 6
            assert _sample(after, "inter1_sink_rows_inserted_total", table="events") == 17
            failures = app.handler.stats.insert_failures
            rows = store.rows(
                "SELECT (SELECT count() FROM usage), (SELECT count() FROM usage FINAL), "
                "(SELECT count() FROM events), (SELECT sum(analysed_s + degraded_s) FROM usage)"
            )
        finally:
            await app.stop()
        return failures, rows

    failures, rows = asyncio.run(scenario())
    assert failures >= 3
    assert rows == [(6, 6, 17, 33.0)]


async def _ops_pages(port: int) -> dict[str, tuple[int, str]]:
    """``/healthz``, ``/readyz`` and ``/metrics`` of a sink: status and text."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        pages = {path: await client.get(path) for path in ("/healthz", "/readyz", "/metrics")}
    return {path: (r.status_code, r.text) for path, r in pages.items()}


def _sample(pages: dict[str, tuple[int, str]], name: str, **labels: str) -> float:
    status, text = pages["/metrics"]
    assert status == 200
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(found) == 1, (name, labels, text)
    return found[0]


def _late_events(count: int) -> list[dict[str, Any]]:
    """``count`` new events of session A (copies of its first event with new ids)."""
    first = next(d for key, name, d in sample_records() if name == "Inter1Event")
    return [
        {**first, "event_id": f"{first['event_id']}-late{i}", "event_seq": 1000 + i}
        for i in range(count)
    ]


TABLES = (
    "events",
    "signal_events",
    "engagement_events",
    "quality_overall",
    "quality_timeline",
    "coverage",
    "sessions_started",
    "sessions_ended",
    "usage",
    "cues",
)


@pytest.mark.parametrize("point", ["after_rows", "after_intent"])
def test_crash_inside_a_partial_batch_then_restart_stores_each_row_once(
    point: str, kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The sink dies (like kill -9) inside the first checkpoint's partial batch of the events
    partition: after its rows (none of its ledger row) or after its intent row (none of its
    rows). More events arrive while it is down, so the restart reads further than the crashed
    batch went; it re-cuts the announced range at the same offsets, and no table holds a row
    twice, not even before merges (raw counts equal FINAL counts)."""
    helpers = request.getfixturevalue("sink_helpers")
    topics = helpers.create_topics(f"sinkcut-{uuid.uuid4().hex[:8]}.")
    helpers.publish_sample(topics, garbage=False)
    group = f"sink-{uuid.uuid4().hex[:8]}"
    store_dir = tmp_path / "clickhouse"
    container = {"PIPELINE_SINK_CONTAINER_MIN_EVENTS": "1"}  # ClickHouse decodes the events
    first = helpers.SinkProcess(
        store_dir, topics, group, PIPELINE_SINK_CRASH_AT=f"{point}@events:0:0", **container
    )
    try:
        assert first.proc.wait(timeout=90) == CRASH_EXIT_CODE, first.tail()
    finally:
        if first.proc.poll() is None:
            first.kill9()
    assert f"fault injection: crashing {point} of the batch at " in first.tail()
    events_p0 = TopicPartition(topics.name("events"), 0)
    assert events_p0 not in helpers.committed(group)
    ledger_sql = (
        "SELECT first_offset AS first, last_offset AS last, max(records) AS records "
        f"FROM sink_batches WHERE topic = '{events_p0.topic}' AND partition = 0 "
        "GROUP BY first_offset, last_offset ORDER BY first_offset"
    )
    with opened(store_dir) as warehouse:
        (intent,) = warehouse.rows(ledger_sql)  # announced, not recorded as inserted
        stored = warehouse.rows("SELECT count() AS n FROM events")[0]["n"]
    assert (intent["first"], intent["records"]) == (0, 0)
    assert stored == (intent["last"] + 1 if point == "after_rows" else 0)
    late = _late_events(3)

    async def publish_late() -> None:
        producer = make_producer()
        await producer.start()
        try:
            for datum in late:
                value = get_codec().encode("Inter1Event", datum)
                await producer.send_and_wait(topics.name("events"), value, partition=0)
        finally:
            await producer.stop()

    asyncio.run(publish_late())
    second = helpers.SinkProcess(store_dir, topics, group, **container)
    try:
        helpers.wait_committed(group, topics)
        assert second.terminate() == 0, second.tail()
    finally:
        if second.proc.poll() is None:
            second.kill9()
    log = second.log.read_text()
    assert '"event": "replaying_ledgered_batches"' in log
    with opened(store_dir) as warehouse:
        counts = warehouse.rows(
            "SELECT "
            + ", ".join(
                f"(SELECT count() FROM {t}) AS {t}, (SELECT count() FROM {t} FINAL) AS {t}_final"
                for t in TABLES
            )
        )[0]
        ledger = warehouse.rows(ledger_sql)
    assert {t: counts[t] for t in TABLES} == {t: counts[f"{t}_final"] for t in TABLES}
    assert (counts["events"], counts["usage"], counts["sessions_ended"]) == (17 + 3, 6, 1)
    # the announced range was re-cut as it was (the late records came in a later batch),
    # and every range is recorded as inserted
    assert f'"intended": ["0-{intent["last"]}"]' in log
    assert (ledger[0]["first"], ledger[0]["last"], ledger[-1]["last"]) == (0, intent["last"], 19)
    assert [r["first"] for r in ledger[1:]] == [r["last"] + 1 for r in ledger[:-1]]
    assert [r["records"] for r in ledger] == [r["last"] - r["first"] + 1 for r in ledger]


def test_unreachable_server_then_it_appears(
    kafka_bootstrap: str, chdb_http: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A ClickHouse URL where nothing listens: the sink does not start (exit 69, the address
    named). Started while the server runs, then the server goes away (connection refused)
    while records arrive: the sink retries with backoff and commits nothing; the server
    comes back on the same port: every row lands once, offsets committed after."""
    helpers = request.getfixturevalue("sink_helpers")
    topics = helpers.create_topics(f"sinkdown-{uuid.uuid4().hex[:8]}.")
    group = f"sink-{uuid.uuid4().hex[:8]}"
    chdb_http.start()
    port = chdb_http.port
    chdb_http.stop()
    env = {
        "CLICKHOUSE_URL": f"http://127.0.0.1:{port}/",
        "PIPELINE_SINK_RETRY_INITIAL_S": "0.2",
        "PIPELINE_SINK_RETRY_MAX_S": "0.5",
    }
    refused = helpers.SinkProcess(tmp_path / "unused", topics, group, **env)
    assert refused.proc.wait(timeout=60) == 69, refused.tail()
    assert f"cannot reach ClickHouse at http://127.0.0.1:{port}/" in refused.tail()
    chdb_http.start()  # same port
    sink = helpers.SinkProcess(tmp_path / "unused", topics, group, **env)
    try:
        deadline = time.monotonic() + 60
        while '"event": "sink_started"' not in sink.log.read_text():
            assert sink.proc.poll() is None, sink.tail()
            assert time.monotonic() < deadline, f"the sink did not start in 60 s: {sink.tail()}"
            time.sleep(0.2)
        chdb_http.stop()  # nothing listens any more
        served = chdb_http.requests
        counts = helpers.publish_sample(topics, garbage=False)
        while sink.log.read_text().count("failed_retrying") < 3:
            assert sink.proc.poll() is None, sink.tail()
            assert time.monotonic() < deadline + 60, f"no 3 retries: {sink.tail()}"
            time.sleep(0.2)
        assert helpers.committed(group) == {}
        assert chdb_http.requests == served
        chdb_http.start()
        helpers.wait_committed(group, topics)
        assert sink.terminate() == 0, sink.tail()
    finally:
        if sink.proc.poll() is None:
            sink.kill9()
    log = sink.log.read_text()
    assert "Connection refused" in log
    total = sum(counts.values())
    assert total == 17 + 6 + 1 + 2
    rows = chdb_http.query(
        "SELECT "
        + ", ".join(
            f"(SELECT count() FROM {t}) AS {t}, (SELECT count() FROM {t} FINAL) AS {t}_final"
            for t in TABLES
        )
    )[0]
    assert {t: rows[t] for t in TABLES} == {t: rows[f"{t}_final"] for t in TABLES}
    assert (rows["events"], rows["usage"], rows["cues"], rows["sessions_ended"]) == (17, 6, 1, 1)
    assert chdb_http.query("SELECT count() AS n FROM session_summaries FINAL") == [{"n": 1}]


@pytest.mark.parametrize("container_min_events", [0, 1000], ids=["container", "decoded-here"])
def test_damaged_events_in_a_batch_are_dead_lettered_and_the_rest_loads(
    container_min_events: int,
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Two events with a valid Inter1Event header but a damaged body (a byte too many, a
    byte too few) sit in one batch between good events. Sent as a container, ClickHouse
    refuses the batch as bad data; the sink finds the two with fastavro, dead-letters them
    with the reason, and inserts the rest of the batch: every good row once, nothing else.
    A batch below ``container_min_events`` is decoded by the sink: the same outcome."""
    helpers = request.getfixturevalue("sink_helpers")
    topics = helpers.create_topics(f"sinkbad-{uuid.uuid4().hex[:8]}.")
    counts = helpers.publish_sample(topics, garbage=False)
    late = _late_events(3)
    codec = get_codec()
    good = [codec.encode("Inter1Event", d) for d in late]
    values = [good[0], good[1] + b"\x00", good[1][:-1], good[2]]  # offsets 17..20

    async def publish() -> None:
        producer = make_producer()
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(
                    topics.name("events"), value, key=b"sess-a", partition=0
                )
        finally:
            await producer.stop()

    asyncio.run(publish())
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", topics.prefix)
    load.cache_clear()
    load_topic_specs.cache_clear()
    settings = SinkSettings(
        group_id=f"sink-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.3,
        container_min_events=container_min_events,
    )

    async def scenario() -> tuple[Any, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        app = SinkApp(url=f"chdb://{tmp_path / 'clickhouse'}", settings=settings)
        await app.start()
        try:
            runner = asyncio.create_task(app.run())
            total = sum(counts.values()) + len(values)
            deadline = time.monotonic() + 60
            while app.handler.stats.records < total or app.handler.stats.summaries < 1:
                assert not runner.done(), "the sink stopped"
                assert time.monotonic() < deadline, "not every record was processed in 60 s"
                await asyncio.sleep(0.1)
            app.request_stop()
            await runner
            stats = app.handler.stats
            store = app.store
            events = store.rows(
                "SELECT source_offset, event_id FROM events WHERE source_offset >= 17 "
                "ORDER BY source_offset"
            )
            totals = store.rows(
                "SELECT (SELECT count() FROM events), (SELECT count() FROM events FINAL)"
            )
        finally:
            await app.stop()
        return stats, events, totals

    stats, events, totals = asyncio.run(scenario())
    assert events == [(17, late[0]["event_id"]), (20, late[2]["event_id"])]
    assert totals == [(19, 19)]  # the sample's 17 events + the 2 good late ones, once
    assert stats.dead_letters == 2
    if container_min_events == 0:
        assert stats.containers_refused >= 1  # found by ClickHouse, not before it
    else:
        assert stats.containers_refused == 0
    dead = sorted(helpers.dead_letters(topics, 2), key=lambda d: d["source_offset"])
    assert [
        (d["source_partition"], d["source_offset"], d["error_type"], d["value"], d["session_id"])
        for d in dead
    ] == [
        (0, 18, "CorruptRecordError", values[1], "sess-a"),
        (0, 19, "TruncatedRecordError", values[2], "sess-a"),
    ]
    assert dead[0]["error_message"] == (
        "Inter1Event record has 1 byte(s) left over after its body; it was not written with "
        "the schema its header names"
    )
    assert dead[1]["error_message"].startswith("Inter1Event record of ")
    assert dead[1]["error_message"].endswith(
        " bytes ends before its body is complete; the value was cut off or is not Avro"
    )
