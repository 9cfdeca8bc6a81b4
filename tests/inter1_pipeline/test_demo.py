"""`inter1-pipeline demo` end to end: its own broker, the real workers, sink and cues app."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.processes import free_port

CLIPS = ("presenter", "listener", "warming-up")
_ROW = re.compile(
    r"^  (?P<clip>\S+)\s+(?P<session>[0-9a-f]{8})\s+(?P<media>[\d.]+)\s+(?P<events>\d+)\s+"
    r"(?P<signals>\d+) \((?P<types>\d+)\)\s+(?P<engaged>\d+)%\s+(?P<quality>[\d.]+)\s+"
    r"(?P<analysed>[\d.]+)\s+(?P<dropped>[\d.]+)\s+(?P<billed>[\d.]+)\s+"
    r"(?P<p50>[\d.]+) s\s+(?P<p99>[\d.]+) s\s+(?P<cues>\d+)$"
)


def _demo(state_dir: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``inter1-pipeline demo`` in ``state_dir``, starting its own broker and ClickHouse;
    Inter-1 is the demo's simulator unless ``settings`` name another (and a key)."""
    env = {**os.environ, "PIPELINE_STATE_DIR": str(state_dir), "LOG_FORMAT": "json"}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "INTER1_API_KEY", "LOG_LEVEL"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "inter1_pipeline", "demo", "--timeout", "240"],
        capture_output=True,
        text=True,
        env={**env, **settings},
        timeout=300,
        check=False,
    )


@pytest.mark.kafka
@pytest.mark.clickhouse
@pytest.mark.slow
def test_demo_runs_the_pipeline_prints_the_summary_and_leaves_nothing_running(
    stack_state_dir: Path, processes_of: Callable[[Path], list[tuple[int, str]]]
) -> None:
    # the demo starts its own broker and simulator, like `make demo`
    done = _demo(stack_state_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "kafka: starting the local broker (Apache Kafka 4.1, KRaft)..."
    assert re.fullmatch(r"kafka: 127\.0\.0\.1:\d+ \(local broker, pid \d+\)", lines[1])
    assert lines[2] == (
        f"clickhouse: chdb://{stack_state_dir}/clickhouse: 7 migration(s) applied, "
        "schema up to date"
    )
    assert lines[3] == "topics: 6 ensured (6 created)"
    assert lines[4] == (
        f"starting: simulator, session-worker, sink, cues (logs in {stack_state_dir}/logs)"
    )
    assert "caught up: the cues app consumed every event; the sink loaded every record" in lines

    rows = {m["clip"]: m for line in lines if (m := _ROW.match(line))}
    assert sorted(rows) == sorted(CLIPS)
    assert {clip: float(rows[clip]["media"]) for clip in CLIPS} == {
        "presenter": 14.0,
        "listener": 14.0,
        "warming-up": 20.0,
    }
    for clip, row in rows.items():
        figures = {k: float(row[k]) for k in ("events", "signals", "quality", "p50", "p99")}
        assert all(value > 0 for value in figures.values()), (clip, figures)
        # every media second is analysed or dropped, and billed when analysed
        assert float(row["analysed"]) > 0, clip
        assert float(row["analysed"]) + float(row["dropped"]) == float(row["media"]), clip
        assert float(row["billed"]) == float(row["analysed"]), clip
        assert float(row["p99"]) >= float(row["p50"]), clip
    # different content, different analysis
    assert len({(r["signals"], r["engaged"], r["quality"]) for r in rows.values()}) == 3

    cue_lines = lines[lines.index("cues:") + 1 :]
    for clip in CLIPS:
        count = int(rows[clip]["cues"])
        mine = [line for line in cue_lines if line.startswith(f"  {clip}: ")]
        assert len(mine) == max(count, 1), (clip, mine)
        if count == 0:
            assert mine == [f"  {clip}: no cues"]
    assert sum(int(r["cues"]) for r in rows.values()) > 0

    report = next(line for line in lines if line.startswith("report: "))
    html = Path(report.removeprefix("report: ").split(" (and ")[0])
    assert html.parent == stack_state_dir / "demo"
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert html.with_suffix(".png").stat().st_size > 0

    assert lines[-2] == "stopped: session-worker, sink, cues, simulator, kafka"
    assert re.fullmatch(r"demo: ok in [\d.]+ s: 3 sessions, \d+ events, \d+ cues", lines[-1])
    assert processes_of(stack_state_dir) == []
    assert not (stack_state_dir / "pipeline.json").exists()


@pytest.mark.kafka
@pytest.mark.clickhouse
@pytest.mark.slow
def test_demo_fails_naming_the_cause_when_inter1_refuses_the_key(
    stack_state_dir: Path, processes_of: Callable[[Path], list[tuple[int, str]]]
) -> None:
    """A wrong API key: every session fails with 401; the demo says so and exits 69 (it
    used to print "demo: ok" with 0 events)."""
    port = free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "inter1_pipeline", "simulate", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        done = _demo(
            stack_state_dir,
            INTER1_API_KEY="not-a-key",
            INTER1_BASE_URL=f"http://127.0.0.1:{port}",
        )
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)
    assert done.returncode == 69, done.stdout + done.stderr
    assert "demo: ok" not in done.stdout
    log = stack_state_dir / "logs" / "session-worker.log"
    assert done.stderr.splitlines()[-1] == (
        "error: 3 of 3 sessions could not be analysed (presenter, listener, warming-up): "
        "Inter-1 ended them with close code 401 (unauthorized); check INTER1_API_KEY and "
        f"INTER1_BASE_URL (session worker log: {log})"
    )
    assert done.stdout.splitlines()[-1] == "stopped: session-worker, sink, cues, kafka"
    assert processes_of(stack_state_dir) == []
