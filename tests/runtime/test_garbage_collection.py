"""The collector settings a long-running worker applies once started."""

from __future__ import annotations

import gc
import weakref

from runtime.garbage_collection import YOUNG_THRESHOLD, tune_for_throughput


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_startup_objects_are_frozen_the_young_threshold_raised_cycles_still_collected() -> None:
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        made_at_start = _Node()
        tune_for_throughput()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, threshold[1], threshold[2])
        assert gc.get_freeze_count() > frozen
        assert gc.is_tracked(made_at_start)
        assert not any(made_at_start is o for o in gc.get_objects())  # frozen: not traversed

        a, b = _Node(), _Node()  # a cycle made later: reference counting never frees it
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
