"""Fixtures shared by the whole suite: one real Kafka broker per session, fresh topics.

``kafka_bootstrap`` starts the project's own local broker (``deploy.kafka_broker``) in a
temporary state directory, once per session, unless ``KAFKA_BOOTSTRAP_SERVERS`` already
names a cluster; it exports ``KAFKA_BOOTSTRAP_SERVERS`` so ``runtime.kafka`` and CLI
subprocesses use it. Broker jars come from the project's cache (``.stack/kafka/jars``,
filled by ``make setup``), fetched there first if missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from aiokafka.admin import NewTopic

from deploy.kafka_broker import LocalBroker
from deploy.kafka_jars import ensure_jars, jars_dir
from deploy.processes import pid_running
from deploy.topics import wait_for_topics
from runtime.kafka import make_admin
from runtime.settings import load

ROOT = Path(__file__).resolve().parent.parent


def _register_helpers(relative: str) -> None:
    """Make ``tests/<relative>`` importable by its stem (the suite uses importlib import mode)."""
    path = (
        Path(__file__)
        .with_name(relative.split("/", maxsplit=1)[0])
        .joinpath(*relative.split("/")[1:])
    )
    name = path.stem
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register_helpers("kafka_helpers.py")
_register_helpers("simulator/sim_helpers.py")
_register_helpers("sinks/sink_process.py")
_register_helpers("workers/session/worker_process.py")
_register_helpers("workers/cues/cues_app.py")
_T = TypeVar("_T")
_TEST_TOPIC_CONFIG = {"max.message.bytes": "9437184"}
_SESSION_BROKER_STATE: list[Path] = []  # state dir of the broker ``kafka_bootstrap`` started


def project_state_dir() -> Path:
    """The project's state directory (``$PIPELINE_STATE_DIR``, default ``<root>/.stack``)."""
    configured = Path(os.environ.get("PIPELINE_STATE_DIR") or ".stack")
    return configured if configured.is_absolute() else ROOT / configured


def run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion on a private loop in a thread.

    Works from sync tests and from inside a running event loop (async tests) alike.
    """
    result: list[_T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-run-async")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """The project's broker jar cache, fetched with Maven if it is missing or stale."""
    return ensure_jars(project_state_dir()).directory


@pytest.fixture
def stack_state_dir(tmp_path: Path, kafka_jars: Path) -> Path:
    """A fresh stack state directory whose jar cache links to the project's cache."""
    state = tmp_path / "stack"
    jars_dir(state).parent.mkdir(parents=True)
    jars_dir(state).symlink_to(kafka_jars, target_is_directory=True)
    return state


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real Kafka broker: ``KAFKA_BOOTSTRAP_SERVERS``, or one started here."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    jars = ensure_jars(project_state_dir()).directory
    state = tmp_path_factory.mktemp("kafka-session")
    jars_dir(state).parent.mkdir(parents=True)
    jars_dir(state).symlink_to(jars, target_is_directory=True)
    broker = LocalBroker(state, heap_mb=512, start_timeout_s=180)
    address = run_async(broker.start)
    pid = broker.status().pid
    _SESSION_BROKER_STATE.append(state)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = address
    load.cache_clear()
    try:
        yield address
    finally:
        os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        load.cache_clear()
        run_async(broker.stop)
        # The suite's own promise: no broker process outlives it.
        assert pid is not None
        assert not pid_running(pid), f"the test broker (pid {pid}) is still running after stop"


@pytest.fixture
def kafka_stack_dir(kafka_bootstrap: str) -> Path:
    """State directory of the local broker this session started (as ``stack up`` leaves it).

    Skipped, with the reason shown, when ``KAFKA_BOOTSTRAP_SERVERS`` names an external cluster.
    """
    if not _SESSION_BROKER_STATE:
        pytest.skip(f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap} is external: no local stack")
    return _SESSION_BROKER_STATE[0]


class TopicFactory(Protocol):
    """``kafka_topic(partitions=3)`` -> the name of a new, empty topic."""

    def __call__(self, partitions: int = 1, *, config: dict[str, str] | None = None) -> str: ...


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Factory creating uniquely named topics (deleted after the test); returns the name.

    Topics allow 9 MiB records like the declared chunk topic (``config`` overrides that)
    and are ready when returned: every partition is in the broker's metadata.
    """
    created: list[str] = []
    test_name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]

    def create(partitions: int = 1, *, config: dict[str, str] | None = None) -> str:
        name = f"test.{test_name}.{uuid.uuid4().hex[:10]}"

        async def go() -> None:
            admin = make_admin()
            await admin.start()
            try:
                response = await admin.create_topics(
                    [NewTopic(name, partitions, 1, None, {**_TEST_TOPIC_CONFIG, **(config or {})})]
                )
                for topic, code, message in response.topic_errors:
                    assert code == 0, f"creating test topic {topic} failed: {code} {message}"
                await wait_for_topics(admin, {name: partitions})
            finally:
                await admin.close()

        run_async(go)
        created.append(name)
        return name

    yield create
    if created:

        async def delete() -> None:
            admin = make_admin()
            await admin.start()
            try:
                await admin.delete_topics(created)
            finally:
                await admin.close()

        run_async(delete)
