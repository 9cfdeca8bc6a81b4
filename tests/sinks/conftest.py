"""Sink fixtures: prefixed topics on the real broker, the sample dataset, sink subprocesses.

Every wait has its own deadline and fails naming what did not arrive.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from sink_process import ROOT, SinkProcess

from runtime.kafka import client_options, make_admin, make_producer
from runtime.topics import load_topic_specs
from schemas.codec import get_codec
from sinks.sample_dataset import sample_records

__all__ = ["SinkProcess"]  # re-exported: the tests reach it through ``sink_helpers``

GARBAGE = b"\xc3\x01not-avro-at-all"
# partitions per logical topic in the sink tests (events spread over two)
PARTITIONS = {"events": 2, "usage": 1, "cues": 1, "chunks": 1, "dead_letter": 1}


@dataclass(frozen=True)
class SinkTopics:
    """A private set of the sink's topics (names get ``prefix``)."""

    prefix: str

    def name(self, key: str) -> str:
        return self.prefix + load_topic_specs(prefix="")[key].name


def create_topics(prefix: str) -> SinkTopics:
    """Create the sink's topics under a fresh prefix (ready when returned)."""
    topics = SinkTopics(prefix)

    async def go() -> None:
        admin = make_admin()
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(topics.name(k), n, 1) for k, n in PARTITIONS.items()]
            )
        finally:
            await admin.close()
        deadline = time.monotonic() + 30
        consumer = AIOKafkaConsumer(**client_options())
        await consumer.start()
        try:
            while True:
                have = {k: consumer.partitions_for_topic(topics.name(k)) for k in PARTITIONS}
                if all(have[k] and len(have[k] or ()) == n for k, n in PARTITIONS.items()):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"topics {prefix}* not in metadata within 30 s: {have}")
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        finally:
            await consumer.stop()

    asyncio.run(go())
    return topics


def publish_sample(topics: SinkTopics, *, garbage: bool = True) -> dict[str, int]:
    """Publish the sample dataset (and one undecodable record on events); count per topic."""
    codec = get_codec()
    counts: dict[str, int] = {}

    async def go() -> None:
        producer = make_producer()
        await producer.start()
        try:
            for key, name, datum in sample_records():
                topic = topics.name(key)
                value = codec.encode(name, datum, topic=topic)
                await producer.send_and_wait(topic, value, key=datum["session_id"].encode())
                counts[topic] = counts.get(topic, 0) + 1
            if garbage:
                await producer.send_and_wait(topics.name("events"), GARBAGE, key=b"sess-x")
                counts[topics.name("events")] += 1
        finally:
            await producer.stop()

    asyncio.run(go())
    return counts


def end_offsets(topics: SinkTopics) -> dict[TopicPartition, int]:
    """End offset of every partition of the consumed topics."""

    async def go() -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(**client_options())
        await consumer.start()
        try:
            tps = [
                TopicPartition(topics.name(k), p)
                for k in ("events", "usage", "cues", "chunks")
                for p in range(PARTITIONS[k])
            ]
            return dict(await consumer.end_offsets(tps))
        finally:
            await consumer.stop()

    return asyncio.run(go())


def committed(group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets."""

    async def go() -> dict[TopicPartition, int]:
        admin = make_admin()
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(group)
            return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
        finally:
            await admin.close()

    return asyncio.run(go())


def wait_committed(group: str, topics: SinkTopics, within_s: float = 60.0) -> None:
    """Wait until ``group`` committed every consumed partition to its end."""
    want = end_offsets(topics)
    deadline = time.monotonic() + within_s
    while True:
        have = committed(group)
        if all(have.get(tp, 0) == off for tp, off in want.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"sink group {group} did not commit to the end within {within_s:g} s: "
                f"committed {have}, end offsets {want}"
            )
        time.sleep(0.3)


def dead_letters(topics: SinkTopics, count: int, within_s: float = 30.0) -> list[dict[str, Any]]:
    """Exactly ``count`` decoded DeadLetter records from the dead-letter topic."""
    codec = get_codec()

    async def go() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topics.name("dead_letter"), auto_offset_reset="earliest", **client_options()
        )
        await consumer.start()
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + within_s
        try:
            while len(out) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"only {len(out)} of {count} dead letters arrived within {within_s:g} s"
                    )
                batches = await consumer.getmany(timeout_ms=300)
                for batch in batches.values():
                    out.extend(codec.decode(r.value).datum for r in batch)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(go())


@dataclass(frozen=True)
class Dataset:
    """The sample dataset as a clean sink run left it."""

    store_dir: Path
    topics: SinkTopics
    group: str
    dead_letters: list[dict[str, Any]]
    endpoint_rows: list[dict[str, Any]]
    cli_results: list[subprocess.CompletedProcess[str]]
    endpoint_url: str


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``inter1-pipeline ARGS`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "inter1_pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def sample_store(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A clean sink run over the sample dataset: its store directory, stopped."""
    topics = create_topics(f"sinkdata-{uuid.uuid4().hex[:8]}.")
    publish_sample(topics)
    store_dir = tmp_path_factory.mktemp("sample-store") / "clickhouse"
    group = f"sink-{uuid.uuid4().hex[:8]}"
    sink = SinkProcess(store_dir, topics, group)
    try:
        wait_committed(group, topics)
        # while the sink holds the store, the analyst path goes through its endpoint
        rows = sink.query("SELECT count() AS n FROM events FINAL")
        url = sink.endpoint()
        sql = "SELECT tenant, billable_s FROM billing_daily ORDER BY tenant"
        env = {**sink.env, "LOG_FORMAT": "json"}
        cli = [run_cli("query", sql, "--format", fmt, env=env) for fmt in ("table", "csv", "json")]
        cli.append(run_cli("query", "INSERT INTO cues (cue_id) VALUES ('x')", env=env))
        vendor = store_dir.parent / "vendor.csv"
        vendor.write_text("session_id,billed_seconds\nsess-a,27\nsess-b,9\n")
        cli.append(run_cli("reconcile", "--vendor-usage", str(vendor), env=env))
        report = store_dir.parent / "live-report.html"
        cli.append(run_cli("report", "sess-a", "--output", str(report), env=env))
        assert sink.terminate() == 0, sink.tail()
    finally:
        if sink.proc.poll() is None:
            sink.kill9()
    return Dataset(store_dir, topics, group, dead_letters(topics, 1), rows, cli, url)


@pytest.fixture(scope="session")
def sink_helpers() -> Any:
    """This module's helpers for the tests (the suite imports test files by path)."""
    return sys.modules[__name__]
