"""The supervisor with small Python child processes: restart, give up, stop, escalate."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from deploy.processes import pid_running
from inter1_pipeline.supervisor import (
    ChildProcess,
    Exit,
    ProcessSpec,
    ReadyCheck,
    RestartPolicy,
    Supervisor,
    SupervisorError,
    UnitStatus,
    port_ready,
)

_FAST = RestartPolicy(initial_backoff_s=0.05, max_backoff_s=0.2)


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _file_ready(path: Path) -> ReadyCheck:
    async def check() -> bool:
        return await asyncio.to_thread(path.exists)

    return check


async def _until(condition: object, what: str) -> None:
    """Wait for ``condition()`` (the test's own timeout bounds it)."""
    assert callable(condition)
    while not condition():  # noqa: ASYNC110 - polls another process's effects
        await asyncio.sleep(0.05)


async def test_a_process_that_exits_is_restarted_and_the_restart_logged(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # first run exits 3; later runs stay up
    code = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(runs)!r})\n"
        "n = len(p.read_text().splitlines()) if p.exists() else 0\n"
        "p.write_text('run\\n' * (n + 1))\n"
        "sys.exit(3) if n == 0 else time.sleep(60)\n"
    )
    supervisor = Supervisor(_FAST, status_file=tmp_path / "pipeline.json")
    unit = ChildProcess(ProcessSpec("worker", _python(code), stop_grace_s=5), tmp_path / "logs")
    with capture_logs() as logs:
        await supervisor.start([unit])
        await _until(lambda: supervisor.statuses()[0].restarts == 1, "a restart")
        await _until(lambda: supervisor.statuses()[0].state == "ready", "ready again")
        await _until(lambda: runs.read_text() == "run\nrun\n", "the second run")
        pid = unit.pid
        stopped = await supervisor.stop()
    assert runs.read_text() == "run\nrun\n"
    events = [(e["event"], e.get("exit_code", e.get("previous_exit_code"))) for e in logs]
    assert ("process_exited", 3) in events
    assert ("process_restarted", 3) in events
    restarted = next(e for e in logs if e["event"] == "process_restarted")
    assert (restarted["process"], restarted["restarts"]) == ("worker", 1)
    assert stopped == [("worker", Exit(-15))]  # SIGTERM ended the sleeping second run
    assert pid is not None
    assert not pid_running(pid)
    log_text = (tmp_path / "logs" / "worker.log").read_text()
    assert log_text.count(" launch ") == 2
    assert not (tmp_path / "pipeline.json").exists()


async def test_a_configuration_exit_code_is_not_retried(tmp_path: Path) -> None:
    supervisor = Supervisor(_FAST)
    unit = ChildProcess(
        ProcessSpec(
            "sink",
            _python("print('bad setting X'); raise SystemExit(78)"),
            ready=_file_ready(tmp_path / "never"),
        ),
        tmp_path / "logs",
    )
    with pytest.raises(SupervisorError) as caught:
        await supervisor.start([unit])
    assert str(caught.value).startswith("sink: exit code 78; not restarting it; last lines of ")
    assert str(caught.value).endswith("bad setting X")
    assert supervisor.failure is not None
    assert supervisor.failure.done()
    assert [(s.name, s.state, s.restarts) for s in supervisor.statuses()] == [("sink", "failed", 0)]
    await supervisor.stop()


async def test_restarts_are_capped_by_the_policy(tmp_path: Path) -> None:
    supervisor = Supervisor(RestartPolicy(initial_backoff_s=0.01, max_restarts=2))
    unit = ChildProcess(
        ProcessSpec(
            "flaky",
            _python("raise SystemExit(1)"),
            ready=_file_ready(tmp_path / "never"),
        ),
        tmp_path / "logs",
    )
    with pytest.raises(SupervisorError, match=r"^flaky: exit code 1 after 2 restart\(s\)"):
        await supervisor.start([unit])
    assert supervisor.statuses()[0].restarts == 2
    assert unit.launches == 3
    await supervisor.stop()


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(initial_backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_stop_escalates_to_sigkill_and_takes_the_process_group(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    child_pid = tmp_path / "grandchild.pid"
    code = (
        "import pathlib, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"pathlib.Path({str(child_pid)!r}).write_text(str(g.pid))\n"
        f"pathlib.Path({str(ready)!r}).write_text('ok')\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor(_FAST)
    unit = ChildProcess(
        ProcessSpec("stubborn", _python(code), ready=_file_ready(ready), stop_grace_s=0.5),
        tmp_path / "logs",
    )
    await supervisor.start([unit])
    grandchild = int(child_pid.read_text())
    with capture_logs() as logs:
        stopped = await supervisor.stop()
    assert stopped == [("stubborn", Exit(-9))]
    assert [e["event"] for e in logs if e["event"] == "process_kill"] == ["process_kill"]
    assert Exit(-9).describe() == "killed by SIGKILL (exit code -9)"
    # killed with the group (a zombie until its new parent reaps it counts as gone)
    await _until(lambda: not pid_running(grandchild), "the grandchild to be gone")


async def test_units_stop_in_reverse_tier_order(tmp_path: Path) -> None:
    order: list[str] = []

    def changed(status: UnitStatus) -> None:
        if status.state == "stopped":
            order.append(status.name)

    supervisor = Supervisor(_FAST, on_change=changed)
    specs = [
        ProcessSpec(name, _python("import time; time.sleep(60)"), tier=tier, stop_grace_s=5)
        for name, tier in (("broker", 0), ("simulator", 1), ("worker", 2))
    ]
    await supervisor.start([ChildProcess(spec, tmp_path / "logs") for spec in specs])
    await supervisor.stop()
    assert order == ["worker", "simulator", "broker"]


async def test_port_ready_sees_a_listener(tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert await port_ready(port)() is True
    server.close()
    await server.wait_closed()
    assert await port_ready(port)() is False


async def test_a_program_that_cannot_start_fails_with_its_error(tmp_path: Path) -> None:
    supervisor = Supervisor(RestartPolicy(initial_backoff_s=0.01, max_restarts=1))
    missing = tmp_path / "no-such-program"
    unit = ChildProcess(ProcessSpec("ghost", (str(missing),)), tmp_path / "logs")
    with pytest.raises(SupervisorError) as caught:
        await supervisor.start([unit])
    assert str(caught.value).startswith(
        f"ghost: failed to start: [Errno 2] No such file or directory: '{missing}' "
        "after 1 restart(s); not restarting it"
    )
    await supervisor.stop()
