"""Run ``inter1-pipeline cues`` as a real process and talk to it through Kafka and HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from deploy.topics import ensure_topics
from runtime.kafka import make_admin, make_consumer, make_producer
from runtime.topics import load_topic_specs
from schemas.codec import get_codec

__all__ = ["CuesRun", "read_cues", "wait_until_consumed"]

_CLI = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CuesRun:
    """One app id and one set of freshly declared topics (prefixed), and the app's process."""

    workdir: Path
    rules: Path
    prefix: str = field(default_factory=lambda: f"test-cues-{uuid.uuid4().hex[:8]}.")
    app_id: str = field(default_factory=lambda: f"test-cues-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the app's process (e.g. another ``KAFKA_BOOTSTRAP_SERVERS``)."""

    @property
    def topics(self) -> dict[str, str]:
        specs = load_topic_specs(prefix=self.prefix)
        return {key: specs[key].name for key in ("events", "cues", "dead_letter")}

    async def ensure_topics(self) -> None:
        specs = load_topic_specs(prefix=self.prefix)
        admin = make_admin()
        await admin.start()
        try:
            await ensure_topics(admin, [specs[k] for k in ("events", "cues", "dead_letter")])
        finally:
            await admin.close()

    def start(self, crash_at: str | None = None) -> None:
        """Start the app; ``crash_at`` arms its fault injection (``PIPELINE_CUES_CRASH_AT``)."""
        env = {
            **os.environ,
            "KAFKA_TOPIC_PREFIX": self.prefix,
            "PIPELINE_CUES_APP_ID": self.app_id,
            "PIPELINE_CUES_SESSION_TIMEOUT_S": "6",
            "PIPELINE_STATE_DIR": str(self.workdir / "state"),
            "LOG_FORMAT": "json",
            **self.env,
        }
        env.pop("PIPELINE_CUES_CRASH_AT", None)
        if crash_at is not None:
            env["PIPELINE_CUES_CRASH_AT"] = crash_at
        self.log_path = self.workdir / f"cues-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*_CLI, "cues", "--rules", str(self.rules), "--web-port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def wait_for_exit(self, timeout_s: float = 90.0) -> int:
        """Wait for the app to exit on its own (an injected crash); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def log_events(self) -> list[dict[str, Any]]:
        """The structured log lines of the latest start (JSON objects only)."""
        assert self.log_path is not None
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            start = line.find("{")
            if start >= 0:
                try:
                    lines.append(dict(json.loads(line[start:])))
                except ValueError:
                    continue
        return lines

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=60)

    async def publish(self, events: list[dict[str, Any]]) -> None:
        producer = make_producer()
        await producer.start()
        try:
            for event in events:
                data = get_codec().encode("Inter1Event", event)
                await producer.send_and_wait(
                    self.topics["events"], data, key=event["session_id"].encode()
                )
        finally:
            await producer.stop()

    def session(self, session_id: str, deadline_s: float = 90.0) -> dict[str, Any]:
        """``GET /sessions/{id}``, retried until the app answers 200 (or the deadline)."""
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, "the cues app exited"
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/sessions/{session_id}")
                if response.status_code == 200:
                    return dict(response.json())
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"GET /sessions/{session_id} did not answer 200 in time: {last}")


async def _end_offsets(topic: str) -> dict[TopicPartition, int]:
    consumer = make_consumer(group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def wait_until_consumed(run: CuesRun, deadline_s: float = 90.0) -> None:
    """Wait until the app's group has committed every event published so far."""
    import asyncio

    ends = {tp: off for tp, off in (await _end_offsets(run.topics["events"])).items() if off}
    admin = make_admin()
    await admin.start()
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                committed = await admin.list_consumer_group_offsets(run.app_id)
            except KafkaError as exc:
                # e.g. the group coordinator moving while the app (re)joins: ask again
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            behind = {
                tp.partition: (committed[tp].offset if tp in committed else None, end)
                for tp, end in ends.items()
                if tp not in committed or committed[tp].offset < end
            }
            if not behind:
                return
            assert time.monotonic() < deadline, (
                f"the cues app did not commit the published events in time; "
                f"partition: (committed, end) = {behind}"
            )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def read_cues(run: CuesRun) -> list[dict[str, Any]]:
    """Every Cue on the run's cues topic (decoded), in partition/offset order."""
    topic = run.topics["cues"]
    ends = await _end_offsets(topic)
    consumer = make_consumer(group_id=None)
    await consumer.start()
    cues: list[dict[str, Any]] = []
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning()
        remaining = {tp: end for tp, end in ends.items() if end}
        deadline = time.monotonic() + 30
        while remaining:
            assert time.monotonic() < deadline, f"cues up to {remaining} did not arrive"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    assert record.value is not None
                    decoded = get_codec().decode(record.value)
                    assert decoded.name == "Cue"
                    cues.append(decoded.datum)
                    if record.offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
    finally:
        await consumer.stop()
    return cues
