"""Garbage-collector settings for a long-running worker that holds many records in flight.

CPython collects its youngest generation every 700 new container objects, and every few
collections it traverses everything older again. A sink holds up to a batch per partition
of Kafka records (tens of thousands of objects) and allocates several per record, so those
passes kept visiting the same in-flight records and every object made at import time
(bench/sink_bench.py, 80,000 events in 20,000-record batches: 0.26 s of 0.91 s of CPU).
Reference counting frees almost all of them anyway; the collector is only there for cycles.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "tune_for_throughput"]

YOUNG_THRESHOLD = 10_000
"""New container objects between two collections of the youngest generation (CPython: 700)."""


def tune_for_throughput(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Collect once, freeze what exists (modules, schemas, clients made at start: never
    traversed again) and collect the youngest generation every ``young_threshold`` new
    objects. Call once the process has started, before it handles records."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, oldest)
