"""Start-up checks of the worker process: websockets C speedups, the file-descriptor limit,
and the per-partition consumer-lag gauge read from a real consumer."""

from __future__ import annotations

import asyncio
import builtins
import resource
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from runtime.errors import ConfigError
from runtime.kafka import make_consumer, make_producer
from runtime.settings import SessionWorkerSettings, load
from workers.session.app import check_fd_limit, check_speedups, update_lag
from workers.session.event_loop import LoopName, loop_factory, loop_name, run_on


def test_the_speedups_are_in_use_here() -> None:
    with capture_logs() as logs:
        assert check_speedups() is True
    assert logs == []


def test_missing_speedups_are_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_speedups(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "websockets.speedups":
            raise ImportError("no C extension in this build")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_speedups)
    with capture_logs() as logs:
        assert check_speedups() is False
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("websockets_speedups_missing", "warning")
    ]


@pytest.fixture
def fd_limits() -> Iterator[tuple[int, int]]:
    """The process's fd limits, restored afterwards."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_soft_fd_limit_is_raised_to_the_hard_one(fd_limits: tuple[int, int]) -> None:
    _, hard = fd_limits
    if hard == resource.RLIM_INFINITY or hard < 300:
        pytest.skip(f"needs a finite hard fd limit of at least 300 (it is {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    with capture_logs() as logs:
        assert check_fd_limit(10) == hard
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert logs == [
        {
            "component": "workers.session.app",
            "event": "fd_limit",
            "log_level": "info",
            "soft_was": 256,
            "soft": hard,
            "hard": hard,
            "needed": 84,
        }
    ]


def test_too_low_a_hard_fd_limit_fails_naming_the_number(fd_limits: tuple[int, int]) -> None:
    _, hard = fd_limits
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the hard fd limit is unlimited here")
    sessions = hard  # two descriptors each: always over the hard limit
    with pytest.raises(ConfigError) as info:
        check_fd_limit(sessions)
    assert str(info.value) == (
        f"PIPELINE_WORKER_MAX_SESSIONS={sessions} needs {64 + 2 * sessions} file descriptors; "
        f"the hard limit is {hard}: raise it (ulimit -Hn) or lower the setting"
    )
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == fd_limits


@pytest.mark.kafka
async def test_lag_is_high_watermark_minus_position_per_partition(
    kafka_topic: Callable[..., str],
) -> None:
    topic = kafka_topic(2)
    producer = make_producer()
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"x", partition=0, key=str(i).encode())
        await producer.send_and_wait(topic, b"y", partition=1)
    finally:
        await producer.stop()
    consumer = make_consumer(group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = dict.fromkeys(tps, 0)
        while got[tps[0]] < 2 or got[tps[1]] < 1:  # two of five on 0, all of 1
            want = [tp for tp in tps if got[tp] < (2 if tp.partition == 0 else 1)]
            limit = 2 - got[tps[0]] if tps[0] in want else 1
            batches = await consumer.getmany(*want, timeout_ms=1000, max_records=limit)
            for tp, records in batches.items():
                got[tp] += len(records)
        assert got == {tps[0]: 2, tps[1]: 1}
        update_lag(consumer)
    finally:
        await consumer.stop()
    lag = {
        p: REGISTRY.get_sample_value("inter1_worker_consumer_lag_records", {"partition": p})
        for p in ("0", "1")
    }
    assert lag == {"0": 3.0, "1": 0.0}


async def test_these_tests_run_on_the_default_loop() -> None:
    assert loop_name(asyncio.get_running_loop()) == "uvloop"


@pytest.mark.parametrize("requested", ["uvloop", "asyncio"])
def test_run_on_the_requested_loop(requested: LoopName) -> None:
    async def which() -> str:
        return loop_name(asyncio.get_running_loop())

    assert run_on(requested, which()) == requested


def test_uvloop_missing_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an import finds on Windows
    with capture_logs() as logs:
        factory, name = loop_factory("uvloop")
    assert (factory, name) == (asyncio.new_event_loop, "asyncio")
    assert [(e["event"], e["log_level"]) for e in logs] == [("uvloop_missing", "warning")]


def test_an_unknown_event_loop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_WORKER_EVENT_LOOP", "trio")
    load.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            load(SessionWorkerSettings)
    finally:
        load.cache_clear()
    assert str(caught.value) == (
        "invalid setting(s): PIPELINE_WORKER_EVENT_LOOP: 'trio' is not one of 'uvloop', 'asyncio'"
    )
