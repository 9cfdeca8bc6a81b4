"""Sink fixtures: prefixed topics on the real broker, the sample dataset, sink subprocesses.

Every wait has its own deadline and fails naming what did not arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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


class ChdbHttpFront:
    """ClickHouse's HTTP interface, the part clickhouse-connect uses, in front of the real
    engine (chDB, in this process): no ClickHouse server binary is obtainable here (Debian
    ships 18.16 from 2018, PyPI none), so tests reach a URL through this. Queries and
    statements run as sent; an insert's body (``INSERT ... FORMAT Native`` + Native data,
    lz4-compressed and chunked) is written to a file and inserted ``FROM INFILE`` with its
    ``insert_deduplication_token``. :meth:`stop` closes the port (nothing listens: connection
    refused), :meth:`start` listens again on the same port.
    """

    def __init__(self, data_dir: Path) -> None:
        import chdb

        self._conn = chdb.connect(str(data_dir))
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._clients: set[socket.socket] = set()
        self.port = 0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def setup(self) -> None:
                super().setup()
                front._clients.add(self.connection)

            def do_POST(self) -> None:  # http.server's naming
                front._handle(self)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening and drop the open (keep-alive) connections, like a dead server."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for sock in list(self._clients):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            self._clients.discard(sock)

    def close(self) -> None:
        self.stop()
        self._conn.close()

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query on the engine behind the front."""
        out = self._run(sql, "JSONEachRow")
        return [json.loads(line) for line in out.splitlines() if line]

    def _run(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> bytes:
        with self._lock:
            return bytes(self._conn.query(sql, fmt, params=params or None).bytes())

    @staticmethod
    def _body(req: BaseHTTPRequestHandler) -> bytes:
        if req.headers.get("Transfer-Encoding") == "chunked":
            chunks = []
            while size := int(req.rfile.readline().strip(), 16):
                chunks.append(req.rfile.read(size))
                req.rfile.readline()
            req.rfile.readline()
            body = b"".join(chunks)
        else:
            body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        if req.headers.get("Content-Encoding") == "lz4":
            import lz4.frame

            body = lz4.frame.decompress(body)
        return body

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        self.requests += 1
        params = dict(parse_qsl(urlsplit(req.path).query))
        body = self._body(req)
        try:
            sql, data = params.get("query", ""), b""
            if not sql:
                head, _, rest = body.partition(b"\n")
                if head.lstrip().upper().startswith(b"INSERT"):
                    sql, data = head.decode(), rest
                else:
                    sql = body.decode()
            fmt = params.get("default_format", "TabSeparated")
            found = re.search(r"\s+FORMAT\s+(\w+)\s*$", sql)
            if found:
                fmt, sql = found.group(1), sql[: found.start()]
            if data:
                token = params.get("insert_deduplication_token")
                extra = f" SETTINGS insert_deduplication_token = '{token}'" if token else ""
                with tempfile.NamedTemporaryFile(delete=False) as f:
                    f.write(data)
                try:
                    out = self._run(f"{sql} FROM INFILE '{f.name}'{extra} FORMAT {fmt}", "TSV")
                finally:
                    os.unlink(f.name)
            else:  # query parameters travel as param_<name>
                bound = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
                out = self._run(sql, fmt, bound)
            status, headers = 200, {"X-ClickHouse-Timezone": "UTC"}
        except Exception as exc:  # the engine's error goes back the way a server sends it
            out = str(exc).encode()
            code = re.search(r"Code: (\d+)", str(exc))
            status, headers = 500, {"X-ClickHouse-Exception-Code": code[1] if code else "1000"}
        req.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(out))}.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(out)


@pytest.fixture
def chdb_http(tmp_path: Path) -> Any:
    """A :class:`ChdbHttpFront` on a private store, closed after the test."""
    front = ChdbHttpFront(tmp_path / "served-clickhouse")
    try:
        yield front
    finally:
        front.close()
