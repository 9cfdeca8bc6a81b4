"""``inter1-pipeline sink``: events, usage, cues and session records into ClickHouse, once.

:class:`SinkApp` is the process: it opens the store (the embedded engine or a server),
applies the migrations, checks the schema (a missing table or column is named), serves
read-only queries for the analyst commands, and drives :class:`sinks.handler.SinkHandler`
with the shared :class:`runtime.consume_loop.ConsumeLoop` over the events, usage, cues and
chunk topics; ``/healthz``, ``/readyz`` and ``/metrics`` beside it. What happens to each
record, and on each failure, is in :mod:`sinks.handler`.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

from runtime.batch_handler import run_blocking
from runtime.consume_loop import ConsumeLoop, LoopOptions, LoopStats
from runtime.garbage_collection import tune_for_throughput
from runtime.logs import get_logger
from runtime.ops_http import OpsServer, consumer_lag
from runtime.settings import SinkSettings, load
from runtime.topics import topic_name
from schemas.codec import codec_from_settings
from sinks.clickhouse_client import clickhouse_url, make_client
from sinks.handler import SinkHandler, SinkStats, check_schema
from sinks.metrics import CONSUMER_LAG, SinkCollector
from sinks.migrations import migrate
from sinks.query_server import QueryServer
from sinks.store import Store

__all__ = ["SinkApp", "run_sink", "sink_topics"]

_log = get_logger("sinks.sink_app")


def sink_topics() -> list[str]:
    """The topics the sink consumes: events, usage, cues, chunks (session records)."""
    return [topic_name(key) for key in ("events", "usage", "cues", "chunks")]


def _data_dir(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(parts.path) if parts.scheme == "chdb" and parts.path else None


class SinkApp:
    """The sink process: store, migrations, schema check, query endpoint, consume loop.

    No I/O in the constructor; :meth:`start` / :meth:`stop` are idempotent; ``async with``
    starts and stops it.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        settings: SinkSettings | None = None,
        apply_migrations: bool = True,
    ) -> None:
        self.settings = settings or load(SinkSettings)
        self.url = url or clickhouse_url()
        self._migrate = apply_migrations
        self._stack: AsyncExitStack | None = None
        self._store: Store | None = None
        self._handler: SinkHandler | None = None
        self._loop: ConsumeLoop | None = None
        self._server: QueryServer | None = None
        self.http_port = 0
        """Port of ``/healthz``, ``/readyz`` and ``/metrics`` (after :meth:`start`)."""

    @property
    def store(self) -> Store:
        """The store (after :meth:`start`)."""
        if self._store is None:
            raise RuntimeError("sink is not started")
        return self._store

    @property
    def handler(self) -> SinkHandler:
        """The batch handler (after :meth:`start`)."""
        if self._handler is None:
            raise RuntimeError("sink is not started")
        return self._handler

    @property
    def query_url(self) -> str:
        """The read-only query endpoint (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("sink is not started")
        return self._server.url

    async def __aenter__(self) -> SinkApp:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the store, migrate, check the schema, serve reads, join the group."""
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            store = Store(
                await run_blocking(make_client, self.url),
                reader=await run_blocking(make_client, self.url),
            )
            stack.callback(store.close)
            if self._migrate:
                await run_blocking(migrate, store.client)
            await run_blocking(check_schema, store)
            settings = self.settings
            server = QueryServer(
                store, settings.query_host, settings.query_port, _data_dir(self.url)
            )
            server.start()
            stack.callback(server.stop)
            handler = SinkHandler(store, codec_from_settings(), topic_name("dead_letter"), settings)
            await handler.start()
            stack.push_async_callback(handler.stop)
            loop = ConsumeLoop(
                handler,
                sink_topics(),
                group_id=settings.group_id,
                options=LoopOptions(
                    commit_interval_s=settings.flush_interval_s,
                    commit_every=0,
                    poll_timeout_ms=200,
                ),
                session_timeout_ms=int(settings.session_timeout_s * 1000),
                heartbeat_interval_ms=1000,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                fetch_min_bytes=settings.fetch_min_bytes,
            )
            await loop.start()
            stack.push_async_callback(loop.stop)
            collector = SinkCollector(lambda: handler.stats, lambda: handler.retrying)
            collector.register()
            stack.callback(collector.unregister)
            ops = OpsServer(
                settings.http_host,
                settings.http_port,
                ready=lambda: bool(loop.consumer.assignment()),
                before_metrics=lambda: consumer_lag(loop.consumer, CONSUMER_LAG, with_topic=True),
            )
            await ops.start()
            stack.push_async_callback(ops.stop)
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self._store, self._handler = stack, store, handler
        self._loop, self._server, self.http_port = loop, server, ops.port
        _log.info(
            "sink_started", topics=sink_topics(), query_endpoint=server.url, http_port=ops.port
        )

    async def run(
        self,
        *,
        timeout_s: float | None = None,
        max_records: int | None = None,
        handle_signals: bool = False,
    ) -> LoopStats:
        """Consume until stopped (SIGTERM/SIGINT with ``handle_signals``) or the bounds."""
        if self._loop is None:
            raise RuntimeError("sink is not started")
        if handle_signals:
            self._loop.handle_signals()
        return await self._loop.run(timeout_s=timeout_s, max_records=max_records)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current batch."""
        if self._loop is not None:
            self._loop.request_stop()

    async def stop(self) -> None:
        """Checkpoint (flush + commit), leave the group, stop serving, close (idempotent)."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        await stack.aclose()
        if self._handler is not None:
            stats = self._handler.stats
            _log.info(
                "sink_stopped",
                records=stats.records,
                batches=stats.batches_inserted,
                rows=stats.rows_inserted,
            )
        self._loop = self._server = None
        self._store = None


async def run_sink(
    *, url: str | None = None, settings: SinkSettings | None = None, apply_migrations: bool = True
) -> SinkStats:
    """Run the sink until SIGTERM/SIGINT; returns its stats."""
    async with SinkApp(url=url, settings=settings, apply_migrations=apply_migrations) as app:
        tune_for_throughput()
        await app.run(handle_signals=True)
        return app.handler.stats
