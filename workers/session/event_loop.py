"""The worker's event loop: uvloop where installed (``PIPELINE_WORKER_EVENT_LOOP``), else asyncio.

uvloop (libuv) runs the same asyncio programs with less CPU per callback and socket read,
which is where the relay spends most of its time (see ``bench/session_worker_bench.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from runtime.logs import get_logger

__all__ = ["LoopFactory", "LoopName", "loop_factory", "loop_name", "run_on"]

_log = get_logger("workers.session.event_loop")
_T = TypeVar("_T")
LoopName = Literal["uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(requested: LoopName) -> tuple[LoopFactory, LoopName]:
    """The factory of the ``requested`` loop and the loop it makes (``asyncio`` when uvloop is
    requested but not installed, as on Windows; logged as a warning)."""
    if requested == "uvloop":
        try:
            import uvloop
        except ImportError:
            _log.warning(
                "uvloop_missing",
                hint="pip install uvloop, or set PIPELINE_WORKER_EVENT_LOOP=asyncio",
            )
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


def loop_name(loop: asyncio.AbstractEventLoop) -> LoopName:
    """``uvloop`` or ``asyncio``: which implementation ``loop`` is."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run_on(requested: LoopName, main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a new loop of the ``requested`` kind (``asyncio.run``
    semantics: the loop's async generators and executor are shut down after it)."""
    factory, _chosen = loop_factory(requested)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
