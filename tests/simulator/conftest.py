"""Fixtures for the simulator tests: an in-process simulator on a free port, and its driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sim_helpers import Driver, SimulatorFactory, instant_config

from simulator.server import Simulator


@pytest.fixture
async def start_simulator() -> AsyncIterator[SimulatorFactory]:
    """Factory: ``await start_simulator(load=..., limits=...)`` -> a :class:`Driver`."""
    started: list[Simulator] = []

    async def factory(**changes: Any) -> Driver:
        sim = Simulator(instant_config(**changes))
        await sim.start()
        started.append(sim)
        return Driver(sim)

    yield factory
    for sim in started:
        await sim.stop()


@pytest.fixture
async def driver(start_simulator: SimulatorFactory) -> Driver:
    """A driver for a simulator with the default test configuration."""
    return await start_simulator()
