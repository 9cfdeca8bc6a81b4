"""Run ``inter1-pipeline session-worker`` as a real process (for kill -9 drills)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiokafka.admin import NewTopic

from deploy.topics import wait_for_topics
from runtime.kafka import make_admin
from workers.session.outbox import WorkerTopics

_CLI = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()", "session-worker"]
_NAMES = {
    "chunks": "inter1.video-chunks",
    "events": "inter1.events",
    "usage": "inter1.usage",
    "dead_letter": "inter1.dead-letter",
    "session_state": "inter1.session-state",
}


async def create_prefixed_topics(prefix: str) -> WorkerTopics:
    """The worker's declared topics under ``prefix`` (small: 2 partitions, 1 for usage)."""
    names = {key: prefix + name for key, name in _NAMES.items()}
    admin = make_admin()
    await admin.start()
    try:
        specs = []
        for key, name in names.items():
            config = {"max.message.bytes": "9437184"}
            if key == "session_state":
                config["cleanup.policy"] = "compact"
            specs.append(
                NewTopic(name, 1 if key in ("usage", "dead_letter") else 2, 1, None, config)
            )
        await admin.create_topics(specs)
        await wait_for_topics(admin, {s.name: s.num_partitions for s in specs})
    finally:
        await admin.close()
    return WorkerTopics(**names)


async def delete_topics(topics: WorkerTopics) -> None:
    admin = make_admin()
    await admin.start()
    try:
        await admin.delete_topics(list(vars(topics).values()))
    finally:
        await admin.close()


@dataclass
class WorkerProcess:
    """One worker process; its output goes to a log file shown when a test fails."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                _CLI, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    async def wait_started(self, within_s: float = 30.0) -> None:
        """Wait until the worker logged that it runs (partitions are assigned by then)."""
        deadline = time.monotonic() + within_s
        while "session_worker_started" not in self.output():
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.1)

    async def exited(self, within_s: float = 60.0) -> int:
        """Wait (without blocking the event loop) for the process to exit on its own."""
        assert self.process is not None
        deadline = time.monotonic() + within_s
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not exit:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.05)
        return code

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    async def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, then wait without blocking the event loop (the simulator runs on it)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while (code := self.process.poll()) is None:
            assert time.monotonic() < deadline, f"the worker did not exit within {timeout_s:g} s"
            await asyncio.sleep(0.05)
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WorkerStarter(Protocol):
    """Starts one worker process; keyword arguments override its environment."""

    def __call__(self, **overrides: str) -> WorkerProcess: ...


@contextmanager
def worker_processes(
    tmp_path: Path, prefix: str, base_url: str, **extra: str
) -> Iterator[WorkerStarter]:
    """Factory of worker processes sharing one group (keyword arguments: environment
    variables of that process only); all are stopped on exit."""
    env = {
        **os.environ,
        "KAFKA_TOPIC_PREFIX": prefix,
        "INTER1_BASE_URL": base_url,
        "INTER1_API_KEY": "sim-key",
        "PIPELINE_WORKER_GROUP_ID": f"drill-{uuid.uuid4().hex[:8]}",
        "PIPELINE_WORKER_HTTP_PORT": "0",
        "PIPELINE_WORKER_COMMIT_INTERVAL_S": "0.3",
        "PIPELINE_WORKER_PUBLISH_INTERVAL_S": "0.1",
        "PIPELINE_WORKER_SESSION_TIMEOUT_S": "6",
        "PIPELINE_WORKER_RECORDED_PACE": "0",  # instant simulator model: never sheds
        "LOG_FORMAT": "json",
        **extra,
    }
    started: list[WorkerProcess] = []

    def factory(**overrides: str) -> WorkerProcess:
        worker = WorkerProcess({**env, **overrides}, tmp_path / f"worker-{len(started)}.log")
        worker.start()
        started.append(worker)
        return worker

    try:
        yield factory
    finally:
        for worker in started:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(timeout=30)
