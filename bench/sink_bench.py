"""Sink: events/s against a raw clickhouse-connect insert of the same rows; produced ->
queryable latency p50/p99.

Against the broker in ``KAFKA_BOOTSTRAP_SERVERS`` (or the running local stack, or a broker
started here) and a fresh embedded store, on fresh prefixed topics:

* Like with like: background merges are stopped while the raw inserts and the sink are
  measured (they would run in whichever measurement follows the inserts that made the
  parts). The backlog is published so that every events partition holds a whole
  number of the sink's batches (sessions are spread evenly over the 4 partitions, a
  session's events on one partition), so every batch closes on its size and no checkpoint
  timer sits inside the measured time.
* Raw baseline: the rows the sink writes for the backlog (built beforehand, not timed),
  inserted with plain ``client.insert`` in the same batches (per partition, per batch, per
  table), into copies of the sink's tables in the same store; row-oriented and
  column-oriented, each into fresh tables; the faster is the baseline. The sink still
  writes the same six tables (``events`` and the five derived ones, migration 0007 changed
  how its views compute them, not what they write), so the baseline inserts the same rows
  as before.
* Garbage collector: both measurements run with the settings ``inter1-pipeline sink``
  applies once started (:func:`runtime.garbage_collection.tune_for_throughput`), and
  neither holds the bench's own objects: the backlog's event dicts are dropped before the
  measurements and the raw side's prebuilt rows before the sink's (the collector's full
  passes traverse every live object, so the sink paid for the bench's heap).
* Sink: the same events, timed from the sink's first record to its last acknowledged
  insert (Kafka fetch, session id, Avro container, ClickHouse's Avro decoding and the
  materialized views that write the same rows, batching, dedup-token inserts, ledger).
  The embedded engine runs in this process, so its CPU counts on both sides.
* Floor of the former Python path: decoding the backlog alone (codec and the sink's
  decoder) and building rows, single-threaded, against the raw insert.
* Latency: events published live at a steady rate; per event, the time from its send to
  the moment it shows in ``events`` (polled every 20 ms).

Prints figures; asserts nothing. The machine may be shared: only ratios within one run mean
anything.

    .venv/bin/python bench/sink_bench.py [--events 20000] [--live 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer  # noqa: E402
from aiokafka.admin import NewTopic  # noqa: E402

from deploy.kafka_broker import LocalBroker  # noqa: E402
from deploy.kafka_jars import ensure_jars, jars_dir  # noqa: E402
from runtime.garbage_collection import tune_for_throughput  # noqa: E402
from runtime.kafka import client_options, make_admin, make_producer  # noqa: E402
from runtime.logs import configure_logging  # noqa: E402
from runtime.settings import KafkaSettings, SinkSettings, load  # noqa: E402
from runtime.topics import load_topic_specs  # noqa: E402
from schemas.codec import get_codec  # noqa: E402
from schemas.framing import SINGLE_OBJECT_HEADER_SIZE  # noqa: E402
from schemas.inter1_events import PAYLOAD_BRANCHES  # noqa: E402
from sinks.decoding import SinkDecoder  # noqa: E402
from sinks.event_container import (  # noqa: E402
    container_header,
    landing_schema,
    ocf_container,
    session_id_of,
)
from sinks.record_log import datum_json  # noqa: E402
from sinks.sink_app import SinkApp  # noqa: E402
from sinks.tables import COLUMNS, KafkaCoordinates, rows_for  # noqa: E402

PARTITIONS = 4
SESSIONS = 200
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
_KINDS = [
    ("signal.detected", {"signal_type": "interest", "start": 3.0, "probability": "medium",
                         "rationale": "Leans in.", "modality": ["video"]}),
    ("signal.ended", {"signal_type": "interest", "end": 9.0}),
    ("engagement.updated", {"state": "engaged", "start": 3.0}),
    ("conversation_quality.updated", {"overall": {
        "quality_index": 70.0, "clarity": 60.0, "authority": 55.0, "energy": 80.0,
        "rapport": 72.0, "learning": 50.0}, "timeline": None}),
]  # fmt: skip


def event(session: int, seq: int, tag: str) -> dict[str, Any]:
    kind, data = _KINDS[seq % len(_KINDS)]
    sid = f"bench-{tag}-{session:04d}"
    at = T0 + timedelta(seconds=seq)
    return {
        "event_id": f"{sid}:0:{seq:06d}",
        "session_id": sid,
        "api_version": "v1",
        "event_type": kind,
        "timestamp": at,
        "correlation_id": f"c-{seq}",
        "incarnation": 0,
        "event_seq": seq,
        "media_offset_s": 0.0,
        "chunk_seq": seq,
        "first_chunk_seq": 0,
        "received_at": at,
        "tenant": "acme",
        "app": "bench",
        "payload": (PAYLOAD_BRANCHES[kind], data),
    }


async def ensure_broker(stack: list[LocalBroker]) -> None:
    if load(KafkaSettings).bootstrap_servers:
        return
    from deploy.kafka_broker import read_bootstrap
    from runtime.settings import StackSettings

    address = read_bootstrap(load(StackSettings).state_dir)
    if address is None:
        state = Path(tempfile.mkdtemp(prefix="sink-bench-kafka-"))
        jars_dir(state).parent.mkdir(parents=True)
        jars_dir(state).symlink_to(ensure_jars(ROOT / ".stack").directory)
        broker = LocalBroker(state, heap_mb=512, start_timeout_s=180)
        address = await broker.start()
        stack.append(broker)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = address
    load.cache_clear()


async def create_topics(prefix: str) -> None:
    specs = load_topic_specs(prefix="")
    admin = make_admin()
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(prefix + specs[k].name, 4 if k == "events" else 1, 1)
                for k in ("events", "usage", "cues", "chunks", "dead_letter")
            ]
        )
    finally:
        await admin.close()
    await asyncio.sleep(1.0)


def partition_of(e: dict[str, Any]) -> int:
    """A session's events all go to one partition; sessions spread evenly."""
    return int(e["session_id"].rsplit("-", 1)[1]) % PARTITIONS


async def publish(topic: str, events: list[dict[str, Any]], sent: dict[str, float] | None,
                  rate: float | None = None) -> None:  # fmt: skip
    codec = get_codec()
    producer = make_producer()
    await producer.start()
    try:
        futures = []
        for e in events:
            value = codec.encode("Inter1Event", e, topic=topic)
            if sent is not None:
                sent[e["event_id"]] = time.monotonic()
            futures.append(
                await producer.send(
                    topic, value, key=e["session_id"].encode(), partition=partition_of(e)
                )
            )
            if rate:
                await asyncio.sleep(1.0 / rate)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def sink_batches(events: list[dict[str, Any]], batch: int) -> list[dict[str, list[list[Any]]]]:
    """The sink's batches of ``events`` (per partition, ``batch`` offsets each): rows per table."""
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_partition.setdefault(partition_of(e), []).append(e)
    out = []
    for partition, evs in sorted(by_partition.items()):
        for start in range(0, len(evs), batch):
            tables: dict[str, list[list[Any]]] = {}
            for offset, e in enumerate(evs[start : start + batch], start):
                at = KafkaCoordinates("t", partition, offset)
                for table, rows in (rows_for("Inter1Event", e, at) or {}).items():
                    tables.setdefault(table, []).extend(rows)
            out.append(tables)
    return out


def raw_insert_seconds(
    app: SinkApp, batches: list[dict[str, list[list[Any]]]], database: str, columnar: bool
) -> float:
    """Insert the sink's batches with plain client.insert into fresh copies; returns seconds."""
    client = app.store.client
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for table in COLUMNS:
        client.command(f"CREATE TABLE IF NOT EXISTS {database}.{table} AS default.{table}")
    data = [
        {t: [list(c) for c in zip(*rows, strict=True)] if columnar else rows
         for t, rows in tables.items()}
        for tables in batches
    ]  # fmt: skip
    started = time.process_time()
    for tables in data:
        for table, rows in sorted(tables.items()):
            client.insert(
                f"{database}.{table}",
                rows,
                column_names=list(COLUMNS[table]),
                column_oriented=columnar,
            )
    return time.process_time() - started


def floor_seconds(events: list[dict[str, Any]], rounds: int = 3) -> dict[str, float]:
    """CPU seconds of decoding and row building of the backlog alone (no Kafka, no insert),
    single-threaded; the least of ``rounds``."""
    codec = get_codec()
    values = [codec.encode("Inter1Event", e) for e in events]
    decoder = SinkDecoder(codec)
    out: dict[str, float] = {}

    def least(label: str, work: Any) -> Any:
        result = None
        for _ in range(rounds):
            started = time.process_time()
            result = work()
            spent = time.process_time() - started
            out[label] = min(out.get(label, spent), spent)
        return result

    least("codec.decode", lambda: [codec.decode(v) for v in values])
    decoded = least("sink decoder", lambda: [decoder.decode(v) for v in values])
    least(
        "rows",
        lambda: [
            rows_for(name, datum or {}, KafkaCoordinates("t", 0, offset))
            for offset, (name, datum) in enumerate(decoded)
        ],
    )
    return out


def per_change(app: SinkApp, events: list[dict[str, Any]], rounds: int = 3) -> dict[str, float]:
    """CPU seconds of each step the sink changed, old way and new way, on the same events
    (least of ``rounds``): decode, payload JSON, insert shape and timestamp type."""
    codec = get_codec()
    values = [codec.encode("Inter1Event", e) for e in events]
    decoder = SinkDecoder(codec)
    payloads = [{"branch": e["payload"][0], "data": e["payload"][1]} for e in events]
    out: dict[str, float] = {}

    def least(label: str, work: Any) -> None:
        for _ in range(rounds):
            started = time.process_time()
            work()
            spent = time.process_time() - started
            out[label] = min(out.get(label, spent), spent)

    least("decode: codec (datetimes)", lambda: [codec.decode(v) for v in values])
    least("decode: SinkDecoder (µs ints)", lambda: [decoder.decode(v) for v in values])
    least(
        "payload JSON: json.dumps",
        lambda: [json.dumps(p, separators=(",", ":"), sort_keys=True) for p in payloads],
    )
    least("payload JSON: one JSONEncoder", lambda: [datum_json(p) for p in payloads])
    header = container_header(landing_schema(codec.catalog.current("Inter1Event").schema))
    start = SINGLE_OBJECT_HEADER_SIZE
    least(
        "event path, Python side: session id + Avro container",
        lambda: (
            [session_id_of(v, start) for v in values],
            ocf_container(header, "t", 0, [(i, v[start:]) for i, v in enumerate(values)]),
        ),
    )
    with_dt = [rows_for("Inter1Event", e, KafkaCoordinates("t", 0, i)) or {} for i, e in
               enumerate(events)]  # fmt: skip
    with_us = [
        rows_for("Inter1Event", d or {}, KafkaCoordinates("t", 0, i))
        for i, (_, d) in enumerate(decoder.decode(v) for v in values)
    ]
    client = app.store.client
    for label, rowsets, columnar in (
        ("insert: rows, datetimes", with_dt, False),
        ("insert: rows, µs ints", with_us, False),
        ("insert: columns (transposed in the timing), µs ints", with_us, True),
    ):
        tables: dict[str, list[list[Any]]] = {}
        for rowset in rowsets:
            for table, rows in (rowset or {}).items():
                tables.setdefault(table, []).extend(rows)
        for n in range(rounds):
            database = f"ab_{len(out)}_{n}"
            client.command(f"CREATE DATABASE {database}")
            for table in tables:
                client.command(f"CREATE TABLE {database}.{table} AS default.{table}")
            started = time.process_time()
            for table, rows in tables.items():
                data: Any = list(zip(*rows, strict=True)) if columnar else rows
                client.insert(
                    f"{database}.{table}",
                    data,
                    column_names=list(COLUMNS[table]),
                    column_oriented=columnar,
                )
            spent = time.process_time() - started
            out[label] = min(out.get(label, spent), spent)
    return out


async def _assigned_consumer(topic: str) -> AIOKafkaConsumer:
    """A started consumer of ``topic`` from the earliest offset, holding its partitions."""
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **client_options())
    await consumer.start()
    await consumer.getmany(timeout_ms=1)
    while not consumer.assignment():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return consumer


async def raw_consume_seconds(topic: str, events: int, batch: int) -> float:
    """CPU seconds of a plain aiokafka consume of the backlog (the records, nothing done with
    them): the part of the sink's work no choice of decoding or inserting removes."""
    consumer = await _assigned_consumer(topic)
    try:
        started = time.process_time()
        seen = 0
        while seen < events:
            fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
            seen += sum(len(records) for records in fetched.values())
        return time.process_time() - started
    finally:
        await consumer.stop()


async def raw_pipeline_seconds(app: SinkApp, topic: str, events: int, batch: int) -> float:
    """Plain aiokafka consume + codec decode + rows + client.insert of the same events (no
    batching rules, tokens, ledger or commits), into the raw copies; returns seconds."""
    client = app.store.client
    client.command("CREATE DATABASE IF NOT EXISTS bench_raw")
    for table in COLUMNS:
        client.command(f"CREATE TABLE IF NOT EXISTS bench_raw.{table} AS default.{table}")
    codec = get_codec()
    consumer = await _assigned_consumer(topic)
    try:
        started = time.process_time()
        seen = 0
        pending: dict[str, list[list[Any]]] = {}
        while seen < events:
            fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
            for records in fetched.values():
                for r in records:
                    d = codec.decode(r.value)
                    at = KafkaCoordinates(r.topic, r.partition, r.offset)
                    for table, rows in (rows_for(d.name, d.datum, at) or {}).items():
                        pending.setdefault(table, []).extend(rows)
                    seen += 1
            if sum(len(v) for v in pending.values()) >= batch or seen >= events:
                for table, rows in pending.items():
                    client.insert(f"bench_raw.{table}", rows, column_names=list(COLUMNS[table]))
                pending = {}
        return time.process_time() - started
    finally:
        await consumer.stop()


async def main() -> None:  # noqa: PLR0915  # one scenario, top to bottom
    """Run the three measurements and print them."""
    configure_logging("WARNING", "console")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--live", type=int, default=200, help="events sent live for latency")
    parser.add_argument("--rate", type=float, default=50.0, help="live events per second")
    parser.add_argument("--flush-interval", type=float, default=0.25, help="sink checkpoints")
    args = parser.parse_args()
    brokers: list[LocalBroker] = []
    await ensure_broker(brokers)
    prefix = f"sinkbench-{uuid.uuid4().hex[:6]}."
    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    load.cache_clear()
    load_topic_specs.cache_clear()
    try:
        await create_topics(prefix)
        topic = prefix + load_topic_specs(prefix="")["events"].name
        backlog = [event(i % SESSIONS, i // SESSIONS, "backlog") for i in range(args.events)]
        await publish(topic, backlog, None)
        settings = load(SinkSettings).replace(
            group_id=f"bench-{prefix}", flush_interval_s=args.flush_interval
        )
        batch = settings.batch_records
        if args.events % (PARTITIONS * batch):
            print(
                f"note: {args.events} events are not a multiple of {PARTITIONS} partitions x "
                f"{batch} (PIPELINE_SINK_BATCH_RECORDS): the last batches wait for a checkpoint"
            )
        floor = floor_seconds(backlog)
        batches = sink_batches(backlog, batch)
        batch_count = len(batches)
        # neither measurement holds the other's objects or the bench's: the garbage
        # collector's full passes traverse every live object, and the backlog (nested dicts)
        # cost the sink 0.2-0.3 s of them at 80,000 events; rebuilt for the per-change figures
        del backlog
        gc.collect()
        store = Path(tempfile.mkdtemp(prefix="sink-bench-store-")) / "clickhouse"
        async with SinkApp(url=f"chdb://{store}", settings=settings) as app:
            # what `inter1-pipeline sink` does once started (run_sink); both sides run with it
            tune_for_throughput()
            # background merges would run in whichever measurement follows the inserts that
            # made the parts (the raw copies' merges inside the sink's window): off for both
            app.store.command("SYSTEM STOP MERGES")
            raw_rows_s = await asyncio.to_thread(raw_insert_seconds, app, batches, "raw_r", False)
            raw_cols_s = await asyncio.to_thread(raw_insert_seconds, app, batches, "raw_c", True)
            raw_s = min(raw_rows_s, raw_cols_s)
            raw_rows_s2 = await asyncio.to_thread(raw_insert_seconds, app, batches, "raw_r2", False)
            raw_cols_s2 = await asyncio.to_thread(raw_insert_seconds, app, batches, "raw_c2", True)
            raw_rows_s, raw_cols_s = min(raw_rows_s, raw_rows_s2), min(raw_cols_s, raw_cols_s2)
            raw_s = min(raw_rows_s, raw_cols_s)
            del batches
            gc.collect()
            runner = asyncio.create_task(app.run())
            stats = app.handler.stats
            # done when every event's row is inserted (the last partial batches at a checkpoint)
            while stats.rows_per_table.get("events", 0) < args.events:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            # from the first record consumed (group join excluded) to the last acknowledged insert
            assert stats.first_record_at is not None
            assert stats.last_insert_at is not None
            sink_wall_s = stats.last_insert_at - stats.first_record_at
            assert stats.first_record_cpu_s is not None
            assert stats.last_insert_cpu_s is not None
            sink_s = stats.last_insert_cpu_s - stats.first_record_cpu_s
            split = (stats.prepare_s, stats.insert_s, stats.batches_inserted)
            threads = (stats.prepare_cpu_s, stats.insert_cpu_s)
            app.store.command("SYSTEM START MERGES")
            consume_s = await raw_consume_seconds(topic, args.events, batch)
            pipeline_s = await raw_pipeline_seconds(app, topic, args.events, batch)
            backlog = [event(i % SESSIONS, i // SESSIONS, "backlog") for i in range(args.events)]
            changes = await asyncio.to_thread(per_change, app, backlog)
            sent: dict[str, float] = {}
            live = [event(i % 10, 100000 + i, "live") for i in range(args.live)]
            publisher = asyncio.create_task(publish(topic, live, sent, args.rate))
            seen: dict[str, float] = {}
            deadline = time.monotonic() + args.live / args.rate + 30
            while len(seen) < len(live) and time.monotonic() < deadline:
                ids = [e["event_id"] for e in live if e["event_id"] in sent.keys() - seen.keys()]
                if ids:
                    found = await asyncio.to_thread(
                        app.store.rows,
                        "SELECT event_id FROM events WHERE has({ids:Array(String)}, event_id)",
                        {"ids": ids},
                    )
                    now = time.monotonic()
                    for (eid,) in found:
                        seen.setdefault(str(eid), now)
                await asyncio.sleep(0.02)
            await publisher
            app.request_stop()
            await runner
        latencies = sorted(seen[k] - sent[k] for k in seen)
        raw_rate = args.events / raw_s
        sink_rate = args.events / sink_s
        print(
            f"events: {args.events} (each: an events row and one derived row), "
            f"{batch_count} batches of {batch}"
        )
        print("figures are process CPU seconds (the machine is shared; wall time in brackets)")
        print(
            f"raw clickhouse-connect insert of the same rows in the same batches (best of 2): "
            f"row-oriented {raw_rows_s:.3f} s, column-oriented {raw_cols_s:.3f} s; "
            f"baseline {raw_s:.3f} s, {raw_rate:,.0f} ev/s"
        )
        print(
            f"sink (fetch, Avro container, ClickHouse decode + views, batches, tokens, ledger): "
            f"{sink_s:.3f} s "
            f"[{sink_wall_s:.3f} s], {sink_rate:,.0f} ev/s"
        )
        print(f"ratio sink / raw insert: {sink_rate / raw_rate:.2f} (target >= 0.8)")
        print(
            f"  raw aiokafka consume of the same records alone: {consume_s:.3f} s, "
            f"{consume_s * 1e6 / args.events:.1f} µs per event (sink minus consume: "
            f"{(sink_s - consume_s) * 1e6 / args.events:.1f} µs per event)"
        )
        print(
            f"  sink wall-time split (threads overlap and wait for the GIL): decode+rows+"
            f"batching {split[0]:.3f} s, inserts {split[1]:.3f} s in {split[2]} batches"
        )
        print(
            f"  sink CPU per event: decode+batching thread {threads[0] * 1e6 / args.events:.1f}"
            f" µs, inserting thread {threads[1] * 1e6 / args.events:.1f} µs, the rest (the "
            f"engine's own threads, the consume loop) "
            f"{(sink_s - sum(threads)) * 1e6 / args.events:.1f} µs"
        )
        per = {k: v * 1e6 / args.events for k, v in floor.items()}
        print(
            "former Python path (decode + rows) floor, single-threaded per event: "
            + ", ".join(f"{k} {v:.1f} µs" for k, v in per.items())
            + f"; raw insert {raw_s * 1e6 / args.events:.1f} µs; best possible ratio with "
            f"the sink decoder and rows on one core: "
            f"{raw_s / (raw_s + floor['sink decoder'] + floor['rows']):.2f}"
        )
        print("per change, old -> new, CPU µs per event (same events, least of 3):")
        for label, spent in changes.items():
            print(f"  {label}: {spent * 1e6 / args.events:.1f}")
        pipeline_rate = args.events / pipeline_s
        print(
            f"raw pipeline (aiokafka + decode + rows + insert, no tokens/ledger/commits): "
            f"{pipeline_s:.3f} s, {pipeline_rate:,.0f} ev/s; ratio sink / raw pipeline: "
            f"{sink_rate / pipeline_rate:.2f}"
        )
        if latencies:
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"produced -> queryable latency over {len(latencies)} live events at "
                f"{args.rate:g}/s (flush interval {settings.flush_interval_s:g} s): "
                f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (target p99 < 2000 ms)"
            )
        else:
            print("no live event became queryable")
    finally:
        for broker in brokers:
            await broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
