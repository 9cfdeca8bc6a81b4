"""Fixtures for the session-worker tests: topics, a simulator, in-process workers."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from session_helpers import WorkerFactory, make_topics, start_worker
from sim_helpers import instant_config

from simulator.server import Simulator
from workers.session.outbox import WorkerTopics


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
