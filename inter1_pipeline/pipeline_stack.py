"""The whole pipeline on one machine, as supervised units; shared by ``demo`` and ``run``.

:func:`start_stack` brings it up in this order, narrating each step through ``say``:

1. Kafka: ``KAFKA_BOOTSTRAP_SERVERS``, or the local broker (started and supervised here;
   one already started by ``stack up`` is used and left running), while the ClickHouse
   migrations run (``inter1-pipeline migrate``: the embedded chDB under the state
   directory, or ``CLICKHOUSE_URL``).
2. ``topics ensure``.
3. Together, each waited for until ready: the Inter-1 simulator (``simulate`` on a free
   port; skipped when ``INTER1_API_KEY`` and ``INTER1_BASE_URL`` are set), the session
   worker(s) (``/readyz``: partitions assigned), the sink (its query endpoint's ``/ping``;
   analyst commands find it through ``<store>.endpoint.json``) and the cues app (its web
   server). Each is the production command (``python -m inter1_pipeline ...``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy import processes
from deploy.kafka_broker import LocalBroker
from deploy.topics import ensure_topics
from inter1_pipeline.kafka_address import with_bootstrap
from inter1_pipeline.supervisor import (
    ChildProcess,
    Exit,
    ProcessSpec,
    Supervisor,
    SupervisorError,
    Unit,
    http_ready,
    port_ready,
)
from runtime.errors import ConfigError
from runtime.kafka import make_admin
from runtime.redact import redact_url
from runtime.settings import (
    Inter1Settings,
    KafkaSettings,
    SessionWorkerSettings,
    StackSettings,
    load,
)
from runtime.topics import load_topic_specs
from sinks.clickhouse_client import clickhouse_url

__all__ = ["BrokerUnit", "PipelineStack", "Say", "check_not_running", "start_stack", "status_file"]

Say = Callable[[str], None]
SIM_KEY = "sim-key"
_HOST = "127.0.0.1"


def status_file(state_dir: Path) -> Path:
    """Where a running ``demo``/``run`` keeps its units' pids and states (JSON)."""
    return state_dir / "pipeline.json"


def check_not_running(state_dir: Path) -> None:
    """Refuse to start a second pipeline on the same state directory (one chDB owner)."""
    try:
        pid = int(json.loads(status_file(state_dir).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    command = " ".join(processes.process_cmdline(pid)) if processes.pid_running(pid) else ""
    if pid != os.getpid() and "inter1" in command:  # alive, and not a reused pid
        raise ConfigError(
            f"a pipeline already runs on {state_dir} (pid {pid}): stop it first, or set "
            "PIPELINE_STATE_DIR to another directory"
        )


class BrokerUnit(Unit):
    """The local Kafka broker as a supervised unit (started and stopped by
    :class:`LocalBroker`, which also waits for it to answer metadata requests)."""

    name = "kafka"
    tier = 0
    stop_grace_s = 30.0

    def __init__(self, broker: LocalBroker) -> None:
        self._broker = broker
        self.ready_timeout_s = broker.start_timeout_s + 5
        self.log_path = broker.layout.server_log
        self._pid: int | None = None
        self._exit: Exit | None = None
        self.bootstrap = ""

    async def launch(self) -> None:
        self._exit = None
        self.bootstrap = await self._broker.start()
        self._pid = self._broker.status().pid

    @property
    def pid(self) -> int | None:
        return self._pid

    def poll(self) -> Exit | None:
        pid = self._pid
        if pid is None:
            return self._exit
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere, or started by `stack up`: code unknown
            if processes.pid_running(pid):
                return None
            self._exit = Exit(None)
        else:
            if reaped == 0:
                return None
            self._exit = Exit(os.waitstatus_to_exitcode(status))
        self._pid = None
        return self._exit

    async def wait_exit(self) -> Exit:
        # not necessarily our child (a broker `stack up` started): poll its pid
        while (ended := self.poll()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        return ended

    async def ready(self) -> bool:
        return True  # launch() returned: it answers metadata requests

    async def stop(self, grace_s: float) -> Exit | None:
        was_running = self.poll() is None and self._pid is not None
        await self._broker.stop()
        self._pid = None
        return Exit(None) if was_running else None


@dataclass
class PipelineStack:
    """What :func:`start_stack` started and where it listens."""

    supervisor: Supervisor
    kafka: KafkaSettings
    state_dir: Path
    log_dir: Path
    inter1: str = ""
    clickhouse: str = ""
    query_url: str = ""
    cues_url: str = ""
    worker_urls: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Environment for further pipeline commands (e.g. ``produce``) against this stack."""

    def command(self, *args: str) -> tuple[str, ...]:
        """argv of an ``inter1-pipeline`` subcommand run by this Python."""
        return (sys.executable, "-m", "inter1_pipeline", *args)


async def start_stack(
    supervisor: Supervisor, say: Say, *, state_dir: Path, session_workers: int = 1
) -> PipelineStack:
    """Start everything (see the module docstring); returns once every unit is ready.

    Raises:
        SupervisorError: a unit could not be started.
        ConfigError: another pipeline runs on ``state_dir`` (an absolute path).
    """
    check_not_running(state_dir)
    log_dir = state_dir / "logs"
    kafka: KafkaSettings = load(KafkaSettings)
    stack = PipelineStack(supervisor, kafka, state_dir, log_dir)
    stack.env = {"PIPELINE_STATE_DIR": str(state_dir)}
    url = clickhouse_url()
    stack.clickhouse = redact_url(url)
    migrate = asyncio.ensure_future(
        supervisor.run_task(
            ProcessSpec("migrate", stack.command("migrate"), env=dict(stack.env)), log_dir
        )
    )
    try:
        await _kafka(stack, say)
    finally:
        ended, output = await migrate
    if ended.code != 0:
        raise SupervisorError(f"migrate failed ({ended.describe()}): {output.strip()[-2000:]}")
    say(f"clickhouse: {output.strip().splitlines()[-1] if output.strip() else stack.clickhouse}")
    admin = make_admin(stack.kafka)
    await admin.start()
    try:
        outcomes = await ensure_topics(admin, load_topic_specs().values())
    finally:
        await admin.close()
    actions: dict[str, int] = {}
    for outcome in outcomes:
        actions[outcome.action] = actions.get(outcome.action, 0) + 1
    say(
        f"topics: {len(outcomes)} ensured ("
        + ", ".join(f"{n} {a}" for a, n in sorted(actions.items()))
        + ")"
    )
    units = [ChildProcess(spec, log_dir) for spec in _specs(stack, session_workers)]
    names = ", ".join(unit.name for unit in units)
    say(f"starting: {names} (logs in {log_dir})")
    await supervisor.start(units)
    say(f"ready: {names}; Inter-1 is {stack.inter1}")
    return stack


async def _kafka(stack: PipelineStack, say: Say) -> None:
    if stack.kafka.bootstrap_servers:
        say(f"kafka: {stack.kafka.bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)")
    else:
        broker = LocalBroker.from_settings(load(StackSettings).replace(state_dir=stack.state_dir))
        running = broker.status()
        if running.running and running.bootstrap:
            stack.kafka = with_bootstrap(stack.kafka, running.bootstrap)
            say(f"kafka: {running.bootstrap} (the local broker `stack up` started; left running)")
        else:
            say("kafka: starting the local broker (Apache Kafka 4.1, KRaft)...")
            unit = BrokerUnit(broker)
            await stack.supervisor.start([unit])
            stack.kafka = with_bootstrap(stack.kafka, unit.bootstrap)
            say(f"kafka: {unit.bootstrap} (local broker, pid {unit.pid})")
    stack.env["KAFKA_BOOTSTRAP_SERVERS"] = stack.kafka.bootstrap_servers


def _specs(stack: PipelineStack, session_workers: int) -> list[ProcessSpec]:
    used: set[int] = set()

    def port() -> int:
        chosen = processes.free_port(_HOST, avoid=frozenset(used))
        used.add(chosen)
        return chosen

    specs: list[ProcessSpec] = []
    inter1 = load(Inter1Settings)
    if inter1.api_key and inter1.base_url:
        stack.inter1 = f"Inter-1 at {redact_url(inter1.base_url)}"
    else:
        sim_port = port()
        base_url = f"http://{_HOST}:{sim_port}"
        stack.env.update({"INTER1_BASE_URL": base_url, "INTER1_API_KEY": SIM_KEY})
        stack.inter1 = f"the local Inter-1 simulator at {base_url}"
        specs.append(
            ProcessSpec(
                "simulator",
                stack.command("simulate", "--host", _HOST, "--port", str(sim_port)),
                env=dict(stack.env),
                ready=port_ready(sim_port),
                tier=1,
                stop_grace_s=10.0,
            )
        )
    drain_s = load(SessionWorkerSettings).shutdown_timeout_s + 5
    for index in range(session_workers):
        http_port = port()
        stack.worker_urls.append(f"http://{_HOST}:{http_port}")
        specs.append(
            ProcessSpec(
                "session-worker" if session_workers == 1 else f"session-worker-{index + 1}",
                stack.command("session-worker", "--http-port", str(http_port)),
                env=dict(stack.env),
                ready=http_ready(f"http://{_HOST}:{http_port}/readyz"),
                tier=2,
                ready_timeout_s=90.0,
                stop_grace_s=drain_s,
            )
        )
    query_port = port()
    stack.query_url = f"http://{_HOST}:{query_port}"
    specs.append(
        ProcessSpec(
            "sink",
            stack.command("sink", "--no-migrate", "--query-port", str(query_port)),
            env=dict(stack.env),
            ready=http_ready(f"{stack.query_url}/ping"),
            tier=2,
            ready_timeout_s=90.0,
            stop_grace_s=30.0,
        )
    )
    web_port = port()
    stack.cues_url = f"http://{_HOST}:{web_port}"
    specs.append(
        ProcessSpec(
            "cues",
            stack.command("cues", "--web-port", str(web_port)),
            env={**stack.env, "PIPELINE_CUES_WEB_HOST": _HOST},
            ready=http_ready(f"{stack.cues_url}/sessions"),
            tier=2,
            ready_timeout_s=90.0,
            stop_grace_s=20.0,
        )
    )
    return specs
