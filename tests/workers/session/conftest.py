"""Fixtures for the session-worker tests: topics, a simulator, in-process workers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_helpers import WorkerFactory, make_topics, start_worker
from sim_helpers import instant_config

from runtime.settings import SessionWorkerSettings
from simulator.server import Simulator
from workers.session.event_loop import LoopFactory, loop_factory
from workers.session.outbox import WorkerTopics


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, LoopFactory]:
    """These tests run on the worker's loop: uvloop by default, the standard loop with
    ``PIPELINE_WORKER_EVENT_LOOP=asyncio`` (aiokafka, the SDK's websockets, aiohttp and the
    /metrics server all run on it)."""
    factory, name = loop_factory(SessionWorkerSettings().event_loop)
    return {name: factory}


@pytest.fixture
def worker_topics(kafka_topic: Callable[..., str]) -> WorkerTopics:
    """Fresh chunk, events, usage, dead-letter and session-state topics."""
    return make_topics(kafka_topic)


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    """An in-process simulator with an instant model (events never depend on timing)."""
    sim = Simulator(instant_config())
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def workers() -> AsyncIterator[WorkerFactory]:
    """Factory starting in-process workers; all are stopped (gracefully) at the end."""
    started: list = []

    async def factory(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        handle = await start_worker(*args, **kwargs)
        started.append(handle)
        return handle

    yield factory
    for handle in started:
        await handle.stop()
