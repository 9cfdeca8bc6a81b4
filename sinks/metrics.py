"""Prometheus metrics of the sink (``GET /metrics`` on ``PIPELINE_SINK_HTTP_PORT``).

The counters are read from the handler's :class:`~sinks.handler.SinkStats` at scrape time
(a custom collector), so the insert path carries no metric calls of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sinks.handler import SinkStats

__all__ = ["CONSUMER_LAG", "SinkCollector"]

CONSUMER_LAG = Gauge(
    "inter1_sink_consumer_lag_records", "Records behind the end", ["topic", "partition"]
)


class SinkCollector(Collector):
    """The sink's counters from ``stats()``; :meth:`register` / :meth:`unregister` it."""

    def __init__(self, stats: Callable[[], SinkStats], retrying: Callable[[], bool]) -> None:
        self._stats = stats
        self._retrying = retrying

    def register(self) -> None:
        """Add to the default registry."""
        REGISTRY.register(self)

    def unregister(self) -> None:
        """Remove from the default registry (idempotent)."""
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(self)

    def collect(self) -> Iterator[Metric]:
        """The current figures."""
        stats = self._stats()
        yield _counter("records", "Records consumed and batched", stats.records)
        yield _counter(
            "records_skipped",
            "Records not inserted again after a restart (their batch is in the ledger)",
            stats.skipped_already_inserted,
        )
        yield _counter(
            "batches_inserted", "Batches ClickHouse acknowledged", stats.batches_inserted
        )
        rows = CounterMetricFamily(
            "inter1_sink_rows_inserted",
            "Rows the sink inserted, by table (an event container counts as its events rows;"
            " the rows ClickHouse's views derive from it are not counted)",
            labels=["table"],
        )
        for table, count in sorted(stats.rows_per_table.items()):
            rows.add_metric([table], count)
        yield rows
        yield _counter(
            "insert_failures",
            "Failed ClickHouse calls (inserts, ledger reads), each retried with backoff",
            stats.insert_failures,
        )
        yield _counter(
            "dead_letters", "Undecodable records sent to the dead letters", stats.dead_letters
        )
        yield _counter("summaries", "Session summary rows written", stats.summaries)
        yield _counter("insert_seconds", "Wall time in ClickHouse inserts", stats.insert_s)
        age = GaugeMetricFamily(
            "inter1_sink_last_insert_age_seconds",
            "Seconds since ClickHouse last acknowledged a batch (absent before the first)",
        )
        if stats.last_insert_at is not None:
            age.add_metric([], time.monotonic() - stats.last_insert_at)
        yield age
        yield GaugeMetricFamily(
            "inter1_sink_clickhouse_retrying",
            "1 while inserts fail and are retried (consumption paused), else 0",
            value=1.0 if self._retrying() else 0.0,
        )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"inter1_sink_{name}", documentation, value=value)
