"""``inter1-pipeline sink`` as a subprocess on a private store, group and topics.

Shared by the sink tests and the whole-pipeline drills (``tests/e2e``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import httpx

from sinks.query_server import endpoint_file

ROOT = Path(__file__).resolve().parents[2]


class Prefixed(Protocol):
    """Anything naming the topic prefix the sink reads (``SinkTopics``, a drill's topics)."""

    @property
    def prefix(self) -> str: ...


class SinkProcess:
    """``inter1-pipeline sink`` as a subprocess on a private store, group and topics."""

    def __init__(self, store_dir: Path, topics: Prefixed, group: str, **env: str) -> None:
        self.store_dir = store_dir
        self.log = store_dir.parent / f"sink-{uuid.uuid4().hex[:6]}.log"
        self.env = {
            **os.environ,
            "KAFKA_TOPIC_PREFIX": topics.prefix,
            "CLICKHOUSE_URL": f"chdb://{store_dir}",
            "PIPELINE_SINK_GROUP_ID": group,
            "PIPELINE_SINK_SESSION_TIMEOUT_S": "6",
            "PIPELINE_SINK_FLUSH_INTERVAL_S": "0.3",
            "LOG_FORMAT": "json",
            **env,
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inter1_pipeline", "sink"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def endpoint(self, within_s: float = 60.0) -> str:
        """The query endpoint URL, once the sink serves it."""
        path = endpoint_file(self.store_dir)
        deadline = time.monotonic() + within_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"sink exited with {self.proc.returncode}: {self.tail()}")
            if path.exists():
                info = json.loads(path.read_text())
                if info["pid"] == self.proc.pid:
                    return str(info["url"])
            if time.monotonic() > deadline:
                raise AssertionError(f"sink served no query endpoint within {within_s:g} s")
            time.sleep(0.2)

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query through the sink's endpoint."""
        response = httpx.post(
            f"{self.endpoint()}/query", content=sql, params={"format": "JSONEachRow"}, timeout=30
        )
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines() if line]

    def wait_rows(self, sql: str, expected: Any, within_s: float = 60.0) -> None:
        """Wait until ``sql`` (one value) returns ``expected``."""
        deadline = time.monotonic() + within_s
        last: Any = None
        while True:
            rows = self.query(sql)
            last = next(iter(rows[0].values())) if rows else None
            if last == expected:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{sql!r} gave {last!r}, not {expected!r}, within {within_s:g} s"
                )
            time.sleep(0.2)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def terminate(self, within_s: float = 60.0) -> int:
        """SIGTERM and wait for a clean exit (checkpoint, commit)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(
                f"sink did not stop within {within_s:g} s: {self.tail()}"
            ) from None

    def kill9(self) -> None:
        """SIGKILL: no flush, no commit, no cleanup."""
        self.proc.kill()
        self.proc.wait(timeout=30)
