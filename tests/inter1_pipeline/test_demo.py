"""`inter1-pipeline demo` end to end against the test session's real broker and chDB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sinks.migrations import discover


@pytest.mark.kafka
@pytest.mark.clickhouse
def test_demo_round_trips_every_schema_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": f"demo-{uuid.uuid4().hex[:8]}.",
        "PIPELINE_STATE_DIR": str(tmp_path),
        "LOG_FORMAT": "json",
    }
    env.pop("CLICKHOUSE_URL", None)
    env.pop("SCHEMA_REGISTRY_URL", None)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "inter1_pipeline", "demo"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"kafka: {kafka_bootstrap}"
    prefix = env["KAFKA_TOPIC_PREFIX"]
    assert lines[1:7] == [
        f"topics: {prefix}inter1.video-chunks created",
        f"topics: {prefix}inter1.events created",
        f"topics: {prefix}inter1.usage created",
        f"topics: {prefix}inter1.dead-letter created",
        f"topics: {prefix}inter1.session-state created",
        f"topics: {prefix}inter1.cues created",
    ]
    migrations = len(discover())  # every migration file applies to the fresh store
    assert lines[7] == (
        f"clickhouse: chdb://{tmp_path}/clickhouse ({migrations} migration(s) applied)"
    )
    assert lines[8] == (
        "published: 20 records (Cue 1, DeadLetter 1, Inter1Event 14, SessionEnded 1, "
        "SessionStarted 1, UsageRecord 1, VideoChunk 1)"
    )
    assert lines[9] == "consumed: 20 records, every one decoded equal to what was sent"
    assert re.fullmatch(
        r"clickhouse: record_log holds each record once after \d+ retried batch insert\(s\): "
        r"Cue 1, DeadLetter 1, Inter1Event 14, SessionEnded 1, SessionStarted 1, UsageRecord 1, "
        r"VideoChunk 1",
        lines[10],
    )
    session = re.fullmatch(
        r"produced: session (demo-[0-9a-f-]{36}): 3 chunks, 12.0 media s "
        r"\(SessionEnded 1, SessionStarted 1, VideoChunk 3\)",
        lines[11],
    )
    assert session is not None, lines[11]
    # The simulator's analysis of the generated clip is deterministic.
    assert re.fullmatch(
        r"analysed by the local Inter-1 simulator at http://127.0.0.1:\d+: 23 events "
        r"\(conversation_quality.updated 3, engagement.updated 1, feedback.generated 3, "
        r"session.closing 1, session.ended 1, session.ready 1, session.updated 1, "
        r"signal.detected 3, signal.ended 3, signal.updated 6\)",
        lines[12],
    )
    assert re.fullmatch(
        r"demo: ok in [\d.]+s: 20 records published, 20 consumed, 20 rows in ClickHouse; "
        rf"session {session.group(1)}: 3 chunks, 23 Inter-1 events",
        lines[13],
    )

    # Second run: topics and schema already there, the same records land once more each.
    second = run()
    assert second.returncode == 0, second.stderr
    again = second.stdout.splitlines()
    assert again[1:7] == [line.replace(" created", " unchanged") for line in lines[1:7]]
    assert again[7] == f"clickhouse: chdb://{tmp_path}/clickhouse (0 migration(s) applied)"
    assert again[8:10] == lines[8:10]
