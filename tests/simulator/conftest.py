"""Fixtures for the simulator tests: an in-process simulator on a free port, and its driver."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from simulator.server import Simulator


def _load_helpers() -> Any:
    """Register ``sim_helpers`` (next to this file) so the test modules can import it."""
    name = "sim_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_helpers = _load_helpers()
Driver = _helpers.Driver
instant_config = _helpers.instant_config

SimulatorFactory = _helpers.SimulatorFactory


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
