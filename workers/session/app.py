"""The session worker process: settings -> Kafka clients, handler, loop, HTTP; SIGTERM drain.

:func:`run_worker` checks the websockets C speedups and the file-descriptor limit, starts
the idempotent producer, the consume loop (chunk topic, consumer group), a publisher that
flushes the outbox ``publish_linger_s`` after a live session's record starts waiting in it
(and everything at least every ``publish_interval_s``), and ``/metrics``, ``/healthz``,
``/readyz``. On SIGTERM/SIGINT it stops polling, closes every Inter-1 connection gracefully
within ``shutdown_timeout_s``, publishes, commits and leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer

from runtime.consume_loop import ConsumeLoop, LoopOptions, LoopStats
from runtime.errors import ConfigError
from runtime.kafka import make_producer, start_client
from runtime.logs import get_logger
from runtime.ops_http import OpsServer, consumer_lag
from runtime.settings import Inter1Settings, KafkaSettings, SessionWorkerSettings
from schemas.codec import codec_from_settings
from workers.session import metrics
from workers.session.event_loop import loop_name
from workers.session.faults import parse_crash_at
from workers.session.handler import SessionHandler
from workers.session.outbox import Outbox, WorkerTopics
from workers.session.readback import end_offsets
from workers.session.session import SessionOptions

__all__ = [
    "WorkerRuntime",
    "check_fd_limit",
    "check_speedups",
    "run_worker",
    "session_options",
    "update_lag",
]

_log = get_logger("workers.session.app")
_SIM_KEY = "sim-key"
_FDS_PER_SESSION = 2  # one WebSocket, plus headroom for its DNS/TLS setup
_FDS_BASE = 64  # Kafka connections, HTTP server, logs


def check_speedups() -> bool:
    """Whether the ``websockets`` C speedups (frame masking) are importable; logged."""
    try:
        import websockets.speedups  # noqa: F401
    except ImportError:
        _log.warning("websockets_speedups_missing", hint="reinstall websockets from a wheel")
        return False
    return True


def check_fd_limit(max_sessions: int) -> int:
    """Raise the soft fd limit to the hard one (logged), or fail naming the number needed
    when even the hard limit is below what ``max_sessions`` need; returns the soft limit."""
    needed = _FDS_BASE + _FDS_PER_SESSION * max_sessions
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"PIPELINE_WORKER_MAX_SESSIONS={max_sessions} needs {needed} file descriptors; "
            f"the hard limit is {hard}: raise it (ulimit -Hn) or lower the setting"
        )
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    _log.info("fd_limit", soft_was=soft, soft=target, hard=hard, needed=needed)
    return target


def session_options(worker: SessionWorkerSettings, inter1: Inter1Settings) -> SessionOptions:
    """Per-session options from the settings (no key and no URL: the local simulator's key)."""
    key = inter1.api_key.get_secret_value() if inter1.api_key else _SIM_KEY
    return SessionOptions(
        api_key=key,
        base_url=inter1.base_url,
        api_version=inter1.api_version,
        model=worker.model,
        include=tuple(worker.include_list()),
        goal_dimensions=tuple(worker.goal_dimension_list()),
        window_s=worker.window_s,
        hop_s=worker.hop_s,
        context_s=worker.context_s,
        drain_timeout_s=worker.drain_timeout_s,
        idle_timeout_s=worker.idle_timeout_s,
        reconnect_attempts=worker.reconnect_attempts,
        reconnect_base_s=worker.reconnect_base_s,
        reconnect_max_s=worker.reconnect_max_s,
        queue_chunks=worker.session_queue_chunks,
        live_max_lag_s=worker.live_max_lag_s,
        recorded_pace=worker.recorded_pace,
    )


@dataclass
class WorkerRuntime:
    """What a running worker exposes (tests and the HTTP endpoints read it)."""

    loop: ConsumeLoop
    handler: SessionHandler
    outbox: Outbox
    http_port: int = 0


def _update_lag(loop: ConsumeLoop) -> None:
    try:
        consumer = loop.consumer
    except RuntimeError:
        return
    update_lag(consumer)


def update_lag(consumer: AIOKafkaConsumer) -> None:
    """Set the lag gauge of every assigned partition: high watermark - position (partitions
    not fetched yet, whose high watermark is unknown, are left as they are)."""
    consumer_lag(consumer, metrics.CONSUMER_LAG)


async def _publisher(runtime: WorkerRuntime, interval_s: float, linger_s: float) -> None:
    """Publish the outbox ``linger_s`` after a live session's record starts waiting in it,
    and at least every ``interval_s``; a failure stops the loop (never skipped)."""
    outbox = runtime.outbox
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(outbox.records_waiting(), interval_s)
            await asyncio.sleep(linger_s)  # the rest of the window's events come with it
        try:
            await outbox.publish()
            await runtime.handler.prune()
        except Exception:
            _log.exception("publish_failed")
            runtime.loop.request_stop()
            raise


async def run_worker(
    topics: WorkerTopics,
    *,
    worker: SessionWorkerSettings,
    inter1: Inter1Settings,
    kafka: KafkaSettings | None = None,
    timeout_s: float | None = None,
    started: asyncio.Event | None = None,
    runtime_out: list[WorkerRuntime] | None = None,
) -> LoopStats:
    """Run the worker until SIGTERM/SIGINT (or ``timeout_s``, for tests); returns the stats."""
    _log.info("event_loop", loop=loop_name(asyncio.get_running_loop()), requested=worker.event_loop)
    check_speedups()
    check_fd_limit(worker.max_sessions)
    codec = codec_from_settings()
    codec.prepare(
        {
            "Inter1Event": topics.events,
            "UsageRecord": topics.usage,
            "DeadLetter": topics.dead_letter,
        }
    )
    options = session_options(worker, inter1)
    async with AsyncExitStack() as stack:
        # no linger: the outbox hands over whole per-partition batches (runtime.batch_send)
        producer = make_producer(kafka, linger_ms=0)
        await start_client(producer, kafka)
        stack.push_async_callback(producer.stop)
        outbox = Outbox(
            producer,
            codec,
            topics,
            end_offsets=functools.partial(end_offsets, settings=kafka),
            crash_at=parse_crash_at(worker.crash_at),
        )
        await outbox.prime()
        handler = SessionHandler(
            options, outbox, codec, kafka=kafka, max_sessions=worker.max_sessions
        )
        loop = ConsumeLoop(
            handler,
            [topics.chunks],
            group_id=worker.group_id,
            options=LoopOptions(commit_interval_s=worker.commit_interval_s, poll_timeout_ms=200),
            settings=kafka,
            session_timeout_ms=int(worker.session_timeout_s * 1000),
            heartbeat_interval_ms=min(3000, int(worker.session_timeout_s * 1000) // 3),
            fetch_max_wait_ms=worker.fetch_max_wait_ms,
            fetch_min_bytes=worker.fetch_min_bytes,
        )
        runtime = WorkerRuntime(loop, handler, outbox)
        ops = OpsServer(
            worker.http_host,
            worker.http_port,
            ready=lambda: bool(loop.consumer.assignment()),
            before_metrics=lambda: _update_lag(loop),
        )
        runtime.http_port = await ops.start()
        stack.push_async_callback(ops.stop)
        await loop.start()
        handler.attach(loop.consumer)
        publisher = asyncio.create_task(
            _publisher(runtime, worker.publish_interval_s, worker.publish_linger_s)
        )
        if runtime_out is not None:
            runtime_out.append(runtime)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.handle_signals()
        _log.info(
            "session_worker_started",
            chunks=topics.chunks,
            group_id=worker.group_id,
            http_port=runtime.http_port,
            api_version=options.api_version,
            base_url=options.base_url,
        )
        if started is not None:
            started.set()
        try:
            stats = await loop.run(timeout_s=timeout_s)
        except BaseException:
            publisher.cancel()
            await handler.abort()
            await loop.abort()
            raise
        await handler.shutdown(worker.shutdown_timeout_s)
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        await loop.stop()
        await outbox.publish()
        _log.info("session_worker_stopped", records=stats.records, published=outbox.published)
        return stats
