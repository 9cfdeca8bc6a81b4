"""The local Apache Kafka broker: start, stop and inspect one KRaft node in the state directory.

Everything lives under ``<state_dir>/kafka``: jars, data, logs, generated config, a pid
file and a file holding the bootstrap address. ``start`` is ready only when the port
accepts connections and the broker answers a metadata request; ``stop`` sends SIGTERM,
then SIGKILL after a bound, and leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy import processes
from deploy.exceptions import (
    BrokerDiedError,
    BrokerStartTimeoutError,
    BrokerStopError,
    PortInUseError,
    StorageFormatError,
)
from deploy.java import find_java, java_major_version
from deploy.kafka_config import (
    HOST,
    BrokerLayout,
    new_cluster_id,
    render_log4j2,
    render_server_properties,
)
from deploy.kafka_jars import ensure_jars
from runtime.logs import get_logger
from runtime.settings import StackSettings

__all__ = ["BrokerStatus", "LocalBroker", "read_bootstrap"]

_MAIN_CLASS = "kafka.Kafka"
_POLL_S = 0.25
_TAIL_LINES = 15
_KILL_WAIT_S = 10.0


def _log() -> structlog.stdlib.BoundLogger:
    # Looked up per call: a logger bound at import time would miss configure_logging().
    return get_logger("deploy.kafka_broker")


@dataclass(frozen=True)
class BrokerStatus:
    """What ``stack status`` reports."""

    running: bool
    pid: int | None
    bootstrap: str | None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _broker_pid(layout: BrokerLayout) -> int | None:
    """The recorded pid if that process is alive and is this state directory's broker."""
    pid = _read_int(layout.pid_file)
    if pid is None or not processes.pid_running(pid):
        return None
    cmdline = processes.process_cmdline(pid)
    if _MAIN_CLASS not in cmdline or str(layout.server_properties) not in cmdline:
        return None  # the pid was reused by an unrelated process
    return pid


def read_bootstrap(state_dir: Path) -> str | None:
    """``host:port`` of the local broker in ``state_dir``, or None when it is not running."""
    layout = BrokerLayout.under(state_dir)
    if _broker_pid(layout) is None:
        return None
    try:
        return layout.bootstrap_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


async def _answers_metadata(bootstrap: str) -> bool:
    """Ready means: metadata lists the broker and a group coordinator is available.

    The second part makes the broker create ``__consumer_offsets`` before ``stack up``
    returns, so the first consumer commit does not meet ``GroupCoordinatorNotAvailable``.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="inter1-pipeline-stack", request_timeout_ms=5000
    )
    try:
        await admin.start()
        await admin.find_coordinator("inter1-pipeline-readiness")
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


class LocalBroker:
    """One local single-node KRaft broker whose state lives in ``state_dir``.

    Construction does no I/O. ``start``/``stop`` are idempotent; ``async with`` stops on
    exit only a broker this object started.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 0,
        heap_mb: int = 512,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.layout = BrokerLayout.under(state_dir)
        self.state_dir = state_dir
        self.port = port
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._started_here = False

    @classmethod
    def from_settings(cls, settings: StackSettings) -> LocalBroker:
        """A broker configured from ``PIPELINE_*`` settings."""
        return cls(
            settings.state_dir,
            port=settings.kafka_port,
            heap_mb=settings.kafka_heap_mb,
            start_timeout_s=settings.kafka_start_timeout_s,
        )

    def status(self) -> BrokerStatus:
        """Whether the broker runs, its pid and its bootstrap address."""
        pid = _broker_pid(self.layout)
        return BrokerStatus(pid is not None, pid, read_bootstrap(self.state_dir) if pid else None)

    async def start(self) -> str:
        """Start the broker (fetching jars and formatting storage the first time); its address.

        A no-op returning the address when it already runs.

        Raises:
            JavaNotFoundError, JavaVersionError, MavenNotFoundError, JarFetchError,
            PortInUseError, StorageFormatError, BrokerDiedError, BrokerStartTimeoutError.
        """
        current = self.status()
        if current.running and current.bootstrap:
            _log().info(
                "kafka broker already running", bootstrap=current.bootstrap, pid=current.pid
            )
            return current.bootstrap
        if current.running:  # alive but never became ready: replace it
            await self.stop()
        java = find_java()
        await asyncio.to_thread(java_major_version, java)
        jars = await asyncio.to_thread(ensure_jars, self.state_dir)
        port, controller_port = self._choose_ports()
        self._write_config(port, controller_port)
        if not self.layout.formatted_marker.exists():
            await asyncio.to_thread(self._format_storage, java, jars.classpath)
        started = time.monotonic()
        log_offset = self._server_log_size()
        pid = self._spawn(java, jars.classpath)
        self._started_here = True
        bootstrap = f"{HOST}:{port}"
        try:
            await self._wait_ready(pid, port, log_offset)
        except BaseException:
            await self._terminate(pid)
            self._clear_files()
            raise
        self.layout.bootstrap_file.write_text(bootstrap + "\n", encoding="utf-8")
        _log().info(
            "kafka broker ready",
            bootstrap=bootstrap,
            pid=pid,
            elapsed_s=round(time.monotonic() - started, 2),
        )
        return bootstrap

    async def stop(self) -> bool:
        """Stop the broker: SIGTERM, then SIGKILL after ``stop_timeout_s``; True if one ran.

        Raises:
            BrokerStopError: the process survived SIGKILL.
        """
        pid = _broker_pid(self.layout)
        self._started_here = False
        if pid is None:
            self._clear_files()
            return False
        await self._terminate(pid)
        self._clear_files()
        _log().info("kafka broker stopped", pid=pid)
        return True

    async def __aenter__(self) -> LocalBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            await self.stop()

    def _choose_ports(self) -> tuple[int, int]:
        recorded = (
            self.layout.ports_file.read_text().split() if self.layout.ports_file.exists() else []
        )
        last_port, last_controller = (int(p) for p in recorded) if len(recorded) == 2 else (0, 0)
        if self.port:
            if not processes.port_free(self.port, HOST):
                raise PortInUseError(
                    f"port {self.port} on {HOST} is already in use "
                    "(PIPELINE_KAFKA_PORT): stop what listens there or choose another port "
                    "(0 picks a free one)"
                )
            port = self.port
        elif last_port and processes.port_free(last_port, HOST):
            port = last_port
        else:
            port = processes.free_port(HOST)
        if (
            last_controller
            and last_controller != port
            and processes.port_free(last_controller, HOST)
        ):
            controller = last_controller
        else:
            controller = processes.free_port(HOST, avoid=frozenset({port}))
        return port, controller

    def _write_config(self, port: int, controller_port: int) -> None:
        for directory in (self.layout.config_dir, self.layout.logs_dir, self.layout.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.layout.ports_file.write_text(f"{port} {controller_port}\n", encoding="utf-8")
        self.layout.server_properties.write_text(
            render_server_properties(self.layout, port, controller_port), encoding="utf-8"
        )
        self.layout.log4j2_properties.write_text(render_log4j2(self.layout), encoding="utf-8")

    def _jvm_properties(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.layout.log4j2_properties}",
            f"-Dkafka.logs.dir={self.layout.logs_dir}",
            "-Djava.awt.headless=true",
        ]

    def _format_storage(self, java: Path, classpath: str) -> None:
        command = [
            str(java),
            *self._jvm_properties(),
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.layout.server_properties),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            output = " | ".join(line for line in (done.stdout + done.stderr).splitlines() if line)
            raise StorageFormatError(
                f"formatting Kafka storage in {self.layout.data_dir} failed "
                f"(exit {done.returncode}): {output[-2000:]}"
            )

    def _server_log_size(self) -> int:
        try:
            return self.layout.server_log.stat().st_size
        except OSError:
            return 0

    def _spawn(self, java: Path, classpath: str) -> int:
        argv = [
            str(java),
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            *self._jvm_properties(),
            "-cp",
            classpath,
            _MAIN_CLASS,
            str(self.layout.server_properties),
        ]
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        pid = os.posix_spawn(
            argv[0],
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(self.layout.console_log), flags, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # its own session: Ctrl-C in the shell that ran `stack up` spares it
        )
        self.layout.pid_file.write_text(f"{pid}\n", encoding="utf-8")
        return pid

    def _log_tail(self, log_offset: int) -> str:
        lines = processes.tail_lines(self.layout.console_log, _TAIL_LINES)
        lines += processes.tail_lines(self.layout.server_log, _TAIL_LINES, log_offset)
        shown = "\n  ".join(lines[-_TAIL_LINES:]) or "(empty)"
        return f"last lines of {self.layout.logs_dir}:\n  {shown}"

    async def _wait_ready(self, pid: int, port: int, log_offset: int) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if not processes.pid_running(pid):
                if not processes.port_free(port, HOST):
                    raise PortInUseError(
                        f"the Kafka broker exited because port {port} on {HOST} was taken "
                        "while it started; run `inter1-pipeline stack up` again"
                    )
                raise BrokerDiedError(
                    f"the Kafka broker (pid {pid}) exited while starting; "
                    + self._log_tail(log_offset)
                )
            if processes.port_open(port, HOST) and await _answers_metadata(f"{HOST}:{port}"):
                return
            await asyncio.sleep(_POLL_S)
        raise BrokerStartTimeoutError(
            f"the Kafka broker (pid {pid}) did not answer metadata requests within "
            f"{self.start_timeout_s:g} s (PIPELINE_KAFKA_START_TIMEOUT_S) and was stopped; "
            + self._log_tail(log_offset)
        )

    async def _terminate(self, pid: int) -> None:
        for sig, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, _KILL_WAIT_S)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not processes.pid_running(pid):
                    return
                await asyncio.sleep(_POLL_S / 2)
            _log().warning("kafka broker did not exit", pid=pid, signal=sig.name, waited_s=wait_s)
        raise BrokerStopError(f"the Kafka broker (pid {pid}) survived SIGKILL")

    def _clear_files(self) -> None:
        for path in (self.layout.pid_file, self.layout.bootstrap_file):
            path.unlink(missing_ok=True)
