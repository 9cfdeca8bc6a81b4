"""One model backend shared by all sessions: fair shedding and refusing new sessions."""

from __future__ import annotations

import pytest
from interhumanai import InterhumanError
from sim_helpers import CLIP_A, Driver, SimulatorFactory, compact, frames_of

from simulator.backend import ModelBackend, Slot
from simulator.config import LoadConfig


def test_wait_is_the_backlog_draining_at_capacity() -> None:
    backend = ModelBackend(2.0, max_wait_s=4.0, refuse_wait_s=8.0)

    assert backend.reserve("a", 2.5, now=0.0, earliest=0.0, latest=10.0) == Slot(0.0, 2.5)
    assert backend.reserve("b", 2.5, now=0.0, earliest=0.0, latest=10.0) == Slot(1.25, 3.75)
    assert backend.wait_s(1.0) == 1.5
    assert backend.reserve("a", 2.5, now=1.0, earliest=3.0, latest=10.0) == Slot(3.0, 5.5)


def test_a_window_that_would_start_too_late_is_lag() -> None:
    backend = ModelBackend(1.0, max_wait_s=10.0, refuse_wait_s=20.0)
    backend.reserve("a", 3.0, now=0.0, earliest=0.0, latest=8.0)

    assert backend.reserve("b", 3.0, now=0.0, earliest=0.0, latest=2.0) == "lag"
    assert backend.wait_s(0.0) == 3.0  # the shed window took no capacity


def test_new_sessions_are_refused_past_the_refuse_backlog() -> None:
    backend = ModelBackend(1.0, max_wait_s=100.0, refuse_wait_s=8.0)
    for _ in range(3):
        backend.reserve("a", 3.0, now=0.0, earliest=0.0, latest=100.0)

    assert not backend.accepts_sessions(0.5)  # 8.5 s of backlog
    assert backend.accepts_sessions(1.0)  # 8.0 s


def test_overload_is_shed_across_sessions_not_all_or_nothing() -> None:
    # 8 sessions each offer a 2.4 model-second window every 3 s (0.8 model-s/s each):
    # 6.4 model-s/s of demand against a backend of 3.2, twice its capacity.
    backend = ModelBackend(3.2, max_wait_s=4.0, refuse_wait_s=8.0)
    sessions = [f"s{i}" for i in range(8)]
    for name in sessions:
        backend.join(name)
    served = dict.fromkeys(sessions, 0)
    for round_ in range(40):
        for name in sessions:  # every round in the same order: the worst case for FIFO
            now = 3.0 * round_
            slot = backend.reserve(name, 2.4, now=now, earliest=now, latest=now + 8.0)
            served[name] += isinstance(slot, Slot)

    assert sorted(served.values()) == [19, 20, 20, 20, 21, 21, 21, 21]


async def test_saturated_backend_sheds_windows_and_refuses_new_sessions(
    start_simulator: SimulatorFactory,
) -> None:
    # Each window costs 0.01 x 8 s = 0.08 model-seconds; at 0.001 model-s/s the first one
    # leaves 80 s of backlog: every later window is shed and new sessions are refused.
    load = LoadConfig(
        processing_ratio=0.01, max_lag_s=3600.0, backend_capacity_s=0.001, backend_max_wait_s=4.0
    )
    driver = await start_simulator(load=load)

    first = await driver.run(frames_of(CLIP_A))
    refused = await _refusal(driver)

    assert [compact(e) for e in first.events if e.type.startswith("coverage")] == [
        ("coverage.dropped", ((8.0, 11.0),)),
        ("coverage.dropped", ((11.0, 14.0),)),
        ("coverage.dropped", ((14.0, 14.2),)),
    ]
    usage = await driver.usage(first.session_id)
    assert (usage["analysed_ms"], usage["dropped_ms"], usage["windows_dropped"]) == (
        8000, 6200, 3,
    )  # fmt: skip
    assert refused == (
        "Stream connection closed before the session became ready (code 1013, reason "
        "'ih1003'). The server reported ih1003: The model backend is saturated; retry later."
    )


async def _refusal(driver: Driver) -> str:
    stream = driver.client().stream()
    await stream.connect()
    with pytest.raises(InterhumanError) as caught:
        await stream.wait_for_session_ready()
    return str(caught.value)
