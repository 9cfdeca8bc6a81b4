"""`inter1-pipeline run`: analyst commands from another process, a killed worker restarted,
Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import FIXTURE_DIR

from deploy.processes import pid_running

_WAIT_S = 150.0  # an upper bound for each wait below, never an assertion on timing


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inter1_pipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _units(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        snapshot = json.loads((state_dir / "pipeline.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {unit["name"]: unit for unit in snapshot["units"]}


def _wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not condition():
        assert proc.poll() is None, f"`run` exited ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.25)


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.mark.kafka
@pytest.mark.clickhouse
@pytest.mark.slow
def test_run_serves_queries_restarts_a_killed_worker_and_stops_on_ctrl_c(
    kafka_bootstrap: str,
    tmp_path: Path,
    processes_of: Callable[[Path], list[tuple[int, str]]],
) -> None:
    state = tmp_path / "stack"
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": f"run-{tag}.",
        "PIPELINE_STATE_DIR": str(state),
        "PIPELINE_WORKER_GROUP_ID": f"run-workers-{tag}",
        "PIPELINE_WORKER_SESSION_TIMEOUT_S": "6",
        "PIPELINE_SINK_GROUP_ID": f"run-sink-{tag}",
        "PIPELINE_CUES_APP_ID": f"run-cues-{tag}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    for name in ("CLICKHOUSE_URL", "INTER1_API_KEY", "INTER1_BASE_URL"):
        env.pop(name, None)
    stdout, stderr = tmp_path / "run.out", tmp_path / "run.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inter1_pipeline", "run"],
            stdout=out,
            stderr=err,
            env=env,
            text=True,
        )
    seen_pids: set[int] = set()
    try:
        names = ["simulator", "session-worker", "sink", "cues"]
        _wait_for(
            lambda: [u["state"] for u in _units(state).values()] == ["ready"] * 4,
            "every process to be ready",
            proc,
        )
        units = _units(state)
        assert list(units) == names
        seen_pids |= {int(u["pid"]) for u in units.values()}
        assert stdout.read_text().splitlines()[:2] == [
            f"kafka: {kafka_bootstrap} (KAFKA_BOOTSTRAP_SERVERS)",
            f"clickhouse: chdb://{state}/clickhouse: 7 migration(s) applied, schema up to date",
        ]

        # a session through the running pipeline, read back by `query` from another process
        session = f"run-{tag}"
        produced = _cli(
            "produce",
            "--no-progress",
            "--session-id",
            session,
            str(FIXTURE_DIR / "clip_b.mp4"),
            env=env,
        )
        assert produced.returncode == 0, produced.stderr
        sql = (
            "SELECT s.session_id AS session_id, s.end_reason AS end_reason, s.chunks AS chunks, "
            "s.media_seconds AS media_s, u.accounted_s AS accounted_s "
            "FROM sessions AS s INNER JOIN (SELECT session_id, "
            "round(sum(analysed_s + dropped_s), 3) AS accounted_s FROM usage FINAL "
            "GROUP BY session_id) AS u ON s.session_id = u.session_id "
            f"WHERE s.session_id = '{session}'"
        )
        # every media second of the 14 s clip accounted for (analysed or dropped)
        expected = (
            '"session_id","end_reason","chunks","media_s","accounted_s"\n'
            f'"{session}","completed",7,14,14\n'
        )
        answers: list[str] = []

        def loaded() -> bool:
            done = _cli("query", "--format", "csv", sql, env=env)
            assert done.returncode == 0, done.stderr
            answers.append(done.stdout)
            return done.stdout == expected

        try:
            _wait_for(loaded, "the session to be loaded", proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {answers[-1:]}") from None
        assert answers[-1] == expected

        # kill -9 the session worker: restarted, the restart logged with its exit code
        worker_pid = int(units["session-worker"]["pid"])
        os.kill(worker_pid, signal.SIGKILL)
        _wait_for(
            lambda: (
                (w := _units(state)["session-worker"])["restarts"] == 1 and w["state"] == "ready"
            ),
            "the session worker to be restarted",
            proc,
        )
        restarted = _units(state)["session-worker"]
        assert restarted["pid"] != worker_pid
        assert restarted["last_exit_code"] == -9
        seen_pids.add(int(restarted["pid"]))
        logged = [
            (e["event"], e.get("exit_code", e.get("previous_exit_code")))
            for e in _events(stderr)
            if e.get("process") == "session-worker" and e["event"].startswith("process_")
        ]
        assert logged == [
            ("process_ready", None),
            ("process_exited", -9),
            ("process_restarted", -9),
            ("process_ready", None),
        ]
        exited = next(e for e in _events(stderr) if e["event"] == "process_exited")
        assert exited["exit"] == "killed by SIGKILL (exit code -9)"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 130, stderr.read_text()[-3000:]
    assert stdout.read_text().splitlines()[-1] == "stopped: session-worker, sink, cues, simulator"
    assert [pid for pid in seen_pids if pid_running(pid)] == []
    assert processes_of(state) == []
    assert not (state / "pipeline.json").exists()
