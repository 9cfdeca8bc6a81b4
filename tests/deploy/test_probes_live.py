"""Every probe and healthcheck of the deployment files, run against the real processes.

The topics job runs as compose and Kubernetes run it (`topics ensure`), then
`session-worker`, `sink` and `cues` start with the environment their Kubernetes manifests
give them (ports and group ids made unique, loopback hosts, the embedded ClickHouse for the
sink), against the test broker. The Kubernetes probes (httpGet and exec) and the compose
healthchecks are then executed as written, with only the ports swapped for the free ones;
finally each process gets SIGTERM and must exit 0 (its drain).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_files import ALL_ENV_NAMES, compose, container_env, find, k8s_objects, topics_toml

from deploy.processes import free_port
from runtime.kafka import make_admin

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

_MAIN = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()"]
_DEADLINE_S = 180.0  # a guard against a hung start on a loaded machine, not a measured figure
OBJECTS = k8s_objects(include_examples=True)


def _container(name: str) -> dict[str, Any]:
    (container,) = find(OBJECTS, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _base_env() -> dict[str, str]:
    """The test process's environment without any pipeline setting."""
    return {k: v for k, v in os.environ.items() if k not in ALL_ENV_NAMES}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError:
        return 0, b""


def _wait_for(
    what: str, check: Callable[[], bool], processes: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while not check():
        for name, process in processes.items():
            if process.poll() is not None:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"{name} exited {process.returncode} while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not answering after {_DEADLINE_S:.0f} s")
        time.sleep(0.5)


def _swap_ports(args: list[str], ports: dict[int, int]) -> list[str]:
    swapped = [sys.executable if arg == "python" else arg for arg in args]
    for old, new in ports.items():
        swapped = [arg.replace(f":{old}/", f":{new}/") for arg in swapped]
    return swapped


def _runs(args: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return subprocess.run(args, capture_output=True, check=False, timeout=30).returncode == 0

    return check


async def _delete_topics(prefix: str) -> None:
    admin = make_admin()
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    value = f"tprobe{uuid.uuid4().hex[:8]}."
    yield value
    asyncio.run(_delete_topics(value))


def test_probes_and_healthchecks_answer_on_running_processes(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    common = {
        **_base_env(),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
    }
    topics = subprocess.run(
        [*_MAIN, *compose()["services"]["topics"]["command"]],
        env=common,
        capture_output=True,
        text=True,
        check=False,
    )
    assert topics.returncode == 0, topics.stderr
    assert topics.stdout.count(": created") == len(topics_toml())

    port = {name: free_port() for name in ("session-worker", "sink", "sink-query", "cues")}
    overrides = {
        "session-worker": {
            "PIPELINE_WORKER_HTTP_HOST": "127.0.0.1",
            "PIPELINE_WORKER_HTTP_PORT": str(port["session-worker"]),
            "PIPELINE_WORKER_GROUP_ID": f"{prefix}workers",
            "INTER1_BASE_URL": "http://127.0.0.1:9",  # no chunk arrives: never dialled
        },
        "sink": {
            "CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
            "PIPELINE_SINK_QUERY_PORT": str(port["sink-query"]),
            "PIPELINE_SINK_HTTP_HOST": "127.0.0.1",
            "PIPELINE_SINK_HTTP_PORT": str(port["sink"]),
            "PIPELINE_SINK_GROUP_ID": f"{prefix}sink",
        },
        "cues": {
            "PIPELINE_CUES_WEB_HOST": "127.0.0.1",
            "PIPELINE_CUES_WEB_PORT": str(port["cues"]),
            "PIPELINE_CUES_APP_ID": f"{prefix}cues",
            "PIPELINE_STATE_DIR": str(tmp_path / "state"),
        },
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, extra in overrides.items():
            container = _container(name)
            env = {**common, **container_env(OBJECTS, container), **extra}
            env["KAFKA_TOPIC_PREFIX"] = prefix
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
            with (logs / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(
                    [*_MAIN, *container["args"]], env=env, stdout=log, stderr=subprocess.STDOUT
                )

        # Kubernetes probes, as the manifests declare them (ports swapped for the free ones).
        manifest_ports = {
            9464: port["session-worker"],
            6066: port["cues"],
            9465: port["sink"],
            8124: port["sink-query"],
        }
        for name in ("session-worker", "sink", "cues"):
            container = _container(name)
            named = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                get = container[probe]["httpGet"]
                url = f"http://127.0.0.1:{manifest_ports[named[get['port']]]}{get['path']}"
                _wait_for(
                    f"{name} {probe} {get['path']}",
                    lambda u=url: _get(u)[0] == 200,
                    processes,
                    logs,
                )

        # Compose healthchecks, as written (ports swapped).
        services = compose()["services"]
        for name in ("session-worker", "sink", "cues"):
            test = services[name]["healthcheck"]["test"]
            assert test[0] == "CMD"
            command = _swap_ports(list(test[1:]), manifest_ports)
            _wait_for(f"compose healthcheck of {name}", _runs(command), processes, logs)

        # What the endpoints answer.
        worker = f"http://127.0.0.1:{port['session-worker']}"
        assert _get(f"{worker}/healthz") == (200, b"ok\n")
        assert _get(f"{worker}/readyz") == (200, b"ready\n")
        assert _get(f"{worker}/nope") == (404, b"not found\n")
        status, body = _get(f"{worker}/metrics")
        assert status == 200
        assert b"\ninter1_worker_active_sessions 0.0\n" in body
        cues = f"http://127.0.0.1:{port['cues']}"
        assert _get(f"{cues}/healthz") == (200, b"ok\n")
        assert _get(f"{cues}/readyz") == (200, b"ready\n")
        status, body = _get(f"{cues}/metrics")
        assert status == 200
        assert b"\ninter1_cues_events_applied_total 0.0\n" in body
        sink = f"http://127.0.0.1:{port['sink']}"
        assert _get(f"{sink}/healthz") == (200, b"ok\n")
        assert _get(f"{sink}/readyz") == (200, b"ready\n")
        status, body = _get(f"{sink}/metrics")
        assert status == 200
        assert b"\ninter1_sink_clickhouse_retrying 0.0\n" in body
        assert _get(f"http://127.0.0.1:{port['sink-query']}/ping") == (200, b"ok\n")
    finally:
        codes = {}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                codes[name] = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
    tails = {n: (logs / f"{n}.log").read_text(errors="replace")[-2000:] for n in processes}
    assert codes == {"session-worker": 0, "sink": 0, "cues": 0}, tails
