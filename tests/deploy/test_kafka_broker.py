"""The local broker: start, readiness, restart, stop, and every way starting can fail."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic

from deploy import processes
from deploy.exceptions import (
    BrokerDiedError,
    BrokerStartTimeoutError,
    JavaNotFoundError,
    PortInUseError,
)
from deploy.kafka_broker import BrokerStatus, LocalBroker, read_bootstrap
from deploy.kafka_config import BrokerLayout
from runtime.errors import ExitCode
from runtime.kafka import make_admin
from runtime.settings import KafkaSettings

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).with_name("inter1-pipeline"))
INSTALL_HINT = "install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=env, timeout=240, check=False
    )


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_start_restart_stop_leaves_nothing_behind(stack_state_dir: Path) -> None:
    layout = BrokerLayout.under(stack_state_dir)
    broker = LocalBroker(stack_state_dir, start_timeout_s=180)
    assert broker.status() == BrokerStatus(running=False, pid=None, bootstrap=None)

    address = await broker.start()
    port = int(address.rsplit(":", 1)[1])
    pid = broker.status().pid
    assert pid is not None
    assert broker.status() == BrokerStatus(running=True, pid=pid, bootstrap=address)
    assert read_bootstrap(stack_state_dir) == address == f"127.0.0.1:{port}"
    assert layout.pid_file.read_text() == f"{pid}\n"
    assert "Kafka Server started" in layout.server_log.read_text()
    assert await broker.start() == address  # already running: a no-op
    assert broker.status().pid == pid

    admin = make_admin(KafkaSettings(bootstrap_servers=address))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        await admin.create_topics([NewTopic("kept", 2, 1)])
    finally:
        await admin.close()
    assert cluster["brokers"] == [{"node_id": 1, "host": "127.0.0.1", "port": port, "rack": None}]

    assert await broker.stop() is True
    assert _pid_gone(pid)
    assert read_bootstrap(stack_state_dir) is None
    assert not layout.pid_file.exists()
    assert not layout.bootstrap_file.exists()
    assert await broker.stop() is False  # not running: a no-op

    # Restart on the same state: same address (ports reused), data kept, no re-format.
    async with LocalBroker(stack_state_dir, start_timeout_s=180) as again:
        restarted_pid = again.status().pid
        assert restarted_pid is not None
        assert read_bootstrap(stack_state_dir) == address
        admin = make_admin(KafkaSettings(bootstrap_servers=address))
        await admin.start()
        try:
            assert "kept" in await admin.list_topics()
        finally:
            await admin.close()
    assert _pid_gone(restarted_pid)
    assert broker.status() == BrokerStatus(running=False, pid=None, bootstrap=None)


async def test_port_taken_is_a_clear_error(stack_state_dir: Path, listening_socket: int) -> None:
    broker = LocalBroker(stack_state_dir, port=listening_socket)
    with pytest.raises(PortInUseError) as caught:
        await broker.start()
    assert str(caught.value) == (
        f"port {listening_socket} on 127.0.0.1 is already in use (PIPELINE_KAFKA_PORT): "
        "stop what listens there or choose another port (0 picks a free one)"
    )
    assert caught.value.exit_code == ExitCode.CONFIG
    assert not BrokerLayout.under(stack_state_dir).pid_file.exists()


async def test_java_missing_from_path(
    stack_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(JavaNotFoundError) as caught:
        await LocalBroker(stack_state_dir).start()
    assert str(caught.value) == f"Java not found on PATH and JAVA_HOME is not set: {INSTALL_HINT}"
    assert caught.value.exit_code == ExitCode.UNAVAILABLE


async def test_java_home_without_java(
    stack_state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(JavaNotFoundError) as caught:
        await LocalBroker(stack_state_dir).start()
    assert str(caught.value) == (
        f"Java not found: JAVA_HOME={tmp_path} has no bin/java; "
        f"fix or unset JAVA_HOME, or {INSTALL_HINT}"
    )


def test_cli_up_without_java_exits_69(stack_state_dir: Path, tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "PIPELINE_STATE_DIR": str(stack_state_dir), "LOG_LEVEL": "ERROR"}
    done = _cli("stack", "up", env=env)
    assert done.returncode == ExitCode.UNAVAILABLE
    assert done.stdout == ""
    assert done.stderr == (
        f"error: Java not found on PATH and JAVA_HOME is not set: {INSTALL_HINT}\n"
    )


async def test_broker_that_dies_while_starting_shows_its_log(stack_state_dir: Path) -> None:
    layout = BrokerLayout.under(stack_state_dir)
    layout.data_dir.mkdir(parents=True)
    # Storage formatted for another node id: the broker refuses to start and exits.
    layout.formatted_marker.write_text(
        "version=1\nnode.id=7\ncluster.id=it3lErTpSD671-W_EKVO7Q\n"
        "directory.id=UGk8x-OES7K3hWm3HW9BwQ\n"
    )
    with pytest.raises(BrokerDiedError) as caught:
        await LocalBroker(stack_state_dir, start_timeout_s=180).start()
    message = str(caught.value)
    first_line, *log_lines = message.splitlines()
    assert first_line.startswith("the Kafka broker (pid ")
    assert first_line.endswith(f"exited while starting; last lines of {layout.logs_dir}:")
    assert (
        "  java.lang.RuntimeException: Stored node id 7 doesn't match previous node id 1 in "
        f"{layout.formatted_marker}. If you moved your data, make sure your configured node id "
        "matches. If you intend to create a new node, you should remove all data in your data "
        "directories."
    ) in log_lines
    pid = int(first_line.split("pid ")[1].split(")")[0])
    assert _pid_gone(pid)
    assert not layout.pid_file.exists()


async def test_start_timeout_stops_the_broker(stack_state_dir: Path) -> None:
    layout = BrokerLayout.under(stack_state_dir)
    # No JVM answers Kafka metadata requests 10 ms after it was spawned.
    broker = LocalBroker(stack_state_dir, start_timeout_s=0.01)
    with pytest.raises(BrokerStartTimeoutError) as caught:
        await broker.start()
    first_line = str(caught.value).splitlines()[0]
    pid = int(first_line.split("pid ")[1].split(")")[0])
    assert first_line == (
        f"the Kafka broker (pid {pid}) did not answer metadata requests within 0.01 s "
        f"(PIPELINE_KAFKA_START_TIMEOUT_S) and was stopped; last lines of {layout.logs_dir}:"
    )
    assert caught.value.retriable is True
    assert _pid_gone(pid)
    assert broker.status() == BrokerStatus(running=False, pid=None, bootstrap=None)
    assert not layout.pid_file.exists()


def test_cli_up_status_down(stack_state_dir: Path) -> None:
    env = {**os.environ, "PIPELINE_STATE_DIR": str(stack_state_dir), "LOG_LEVEL": "ERROR"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    not_running = (
        f"error: the local Kafka broker is not running (state dir {stack_state_dir}); "
        "start it with `inter1-pipeline stack up`\n"
    )
    status = _cli("stack", "status", env=env)
    assert (status.returncode, status.stdout, status.stderr) == (69, "", not_running)

    up = _cli("stack", "up", env=env)
    assert up.returncode == 0, up.stderr
    address = read_bootstrap(stack_state_dir)
    pid = LocalBroker(stack_state_dir).status().pid
    assert address is not None
    assert pid is not None
    assert up.stdout.startswith(f"kafka broker running at {address} (pid {pid}, ready in ")
    assert up.stdout.endswith(f" s)\n  export KAFKA_BOOTSTRAP_SERVERS={address}\n")

    again = _cli("stack", "up", env=env)
    assert again.stdout == (
        f"kafka broker already running at {address} (pid {pid})\n"
        f"  export KAFKA_BOOTSTRAP_SERVERS={address}\n"
    )
    status = _cli("stack", "status", env=env)
    assert (status.returncode, status.stdout) == (0, f"{address}\n")

    down = _cli("stack", "down", env=env)
    assert (down.returncode, down.stdout) == (0, f"kafka broker stopped (pid {pid})\n")
    # The broker outlived the `stack up` process; where no init reaps orphans it may linger
    # as a zombie, which is not a running process.
    assert not processes.pid_running(pid)
    down = _cli("stack", "down", env=env)
    assert (down.returncode, down.stdout) == (0, "kafka broker was not running\n")
    status = _cli("stack", "status", env=env)
    assert (status.returncode, status.stderr) == (69, not_running)


def test_fetch_reports_cached_jars(stack_state_dir: Path, kafka_jars: Path) -> None:
    env = {**os.environ, "PIPELINE_STATE_DIR": str(stack_state_dir), "LOG_LEVEL": "ERROR"}
    done = _cli("stack", "fetch", env=env)
    count = len(list(kafka_jars.glob("*.jar")))
    assert (done.returncode, done.stdout) == (
        0,
        f"kafka jars: {count} jars in {stack_state_dir / 'kafka' / 'jars'} (already up to date)\n",
    )
