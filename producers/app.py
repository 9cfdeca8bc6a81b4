"""Run many sources in one process: one session each, shared publisher, clean shutdown.

SIGINT and SIGTERM set a stop flag: every running session ends with reason ``stopped``
(its SessionEnded record is still published) and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from producers.delivery import OutagePolicy
from producers.exceptions import ProducerError
from producers.progress import ProgressBars
from producers.publisher import DryRunPublisher, KafkaPublisher, Publisher
from producers.reader import ReaderOptions
from producers.records import SessionMeta
from producers.replay import ReplayResult, replay_spool
from producers.session import RecordEncoder, SessionConfig, SessionResult, SessionRunner
from producers.sources import parse_source
from producers.spool import SpoolBudget, orphan_spools
from runtime.errors import ExitCode, PipelineError
from runtime.logs import get_logger
from runtime.settings import KafkaSettings, ProducerSettings, load

__all__ = ["ProduceOptions", "ProduceReport", "exit_code", "produce", "producer_id"]

_log = get_logger("producers.app")


@dataclass(frozen=True)
class ProduceOptions:
    """Everything ``inter1-pipeline produce`` was asked to do."""

    sources: tuple[str, ...]
    reader: ReaderOptions = field(default_factory=ReaderOptions)
    session_id: str | None = None
    meta: SessionMeta = field(default_factory=SessionMeta)
    max_record_bytes: int | None = None
    max_in_flight: int = 32
    dry_run: bool = False
    progress: bool | None = None
    kafka: KafkaSettings | None = None
    """Kafka settings (None: from the environment; the CLI passes the local stack's)."""
    producer: ProducerSettings | None = None
    """Outage and spool settings (None: from the environment)."""


@dataclass
class ProduceReport:
    """Per-source results in command-line order, and whether a signal stopped the run."""

    results: list[SessionResult]
    elapsed_s: float
    signal_name: str | None = None
    replayed: list[ReplayResult] = field(default_factory=list)
    """Spools left by an earlier producer, published at this start."""


def producer_id() -> str:
    """``$POD_NAME`` when set (Kubernetes), else ``host/pid``."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}/{os.getpid()}"


async def produce(
    options: ProduceOptions,
    *,
    publisher: Publisher | None = None,
    encoder: RecordEncoder | None = None,
    stop: asyncio.Event | None = None,
) -> ProduceReport:
    """Ingest every source concurrently; never raises for a bad source (see the results)."""
    if options.session_id is not None and len(options.sources) != 1:
        raise ProducerError("--session-id needs exactly one source")
    stop = stop or asyncio.Event()
    started = time.monotonic()
    if encoder is None:
        from schemas.codec import get_codec

        encoder = get_codec()
    if publisher is None:
        if options.dry_run:
            publisher = DryRunPublisher()
        else:
            from runtime.topics import topic_name

            publisher = KafkaPublisher(
                topic_name("chunks"), max_in_flight=options.max_in_flight, settings=options.kafka
            )
    max_record = options.max_record_bytes or (options.kafka or load(KafkaSettings)).max_record_bytes
    policy = _outage_policy(options, spooling=isinstance(publisher, KafkaPublisher))
    config = SessionConfig(
        reader=options.reader,
        max_record_bytes=max_record,
        producer_id=producer_id(),
        meta=options.meta,
        outage=policy,
    )
    bars = ProgressBars(enabled=options.progress)
    received: list[str] = []
    async with AsyncExitStack() as stack:
        _install_signals(stack, stop, received)
        await publisher.start()
        stack.push_async_callback(publisher.stop, timeout_s=policy.stop_timeout_s)
        stack.callback(bars.close)
        left = orphan_spools(policy.spool_dir) if policy.spool_dir is not None else []
        replays = asyncio.gather(
            *(
                replay_spool(path, publisher, encoder=encoder, policy=policy, stop=stop)
                for path in left
            )
        )
        results = await asyncio.gather(
            *(
                _one(
                    text,
                    options=options,
                    config=config,
                    publisher=publisher,
                    encoder=encoder,
                    stop=stop,
                    bars=bars,
                )
                for text in options.sources
            )
        )
        replayed = await replays
    return ProduceReport(
        list(results),
        time.monotonic() - started,
        received[0] if received else None,
        list(replayed),
    )


def _outage_policy(options: ProduceOptions, *, spooling: bool) -> OutagePolicy:
    """The sessions' outage settings; a spool only when publishing to Kafka."""
    settings = options.producer or load(ProducerSettings)
    policy = OutagePolicy(
        ack_timeout_s=settings.ack_timeout_s,
        stop_timeout_s=settings.stop_timeout_s,
        budget=SpoolBudget(settings.spool_max_bytes),
    )
    if not spooling:  # no spool, so no dropped chunks to name on the dead-letter topic
        return policy
    from runtime.topics import topic_name  # reads deploy/topics.toml

    return dataclasses.replace(
        policy, spool_dir=settings.spool_path(), dead_letter_topic=topic_name("dead_letter")
    )


async def _one(
    text: str,
    *,
    options: ProduceOptions,
    config: SessionConfig,
    publisher: Publisher,
    encoder: RecordEncoder,
    stop: asyncio.Event,
    bars: ProgressBars,
) -> SessionResult:
    session_id = options.session_id or str(uuid.uuid4())
    try:
        spec = parse_source(text)
    except PipelineError as exc:
        return SessionResult(source=text, session_id=session_id, error=exc)
    runner = SessionRunner(
        spec,
        session_id,
        config=config,
        publisher=publisher,
        encoder=encoder,
        stop=stop,
        observer=bars,
    )
    return await runner.run()


def _install_signals(stack: AsyncExitStack, stop: asyncio.Event, received: list[str]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):

        def handler(signum: signal.Signals = signum) -> None:
            if not received:
                _log.warning("stopping", signal=signum.name)
            received.append(signum.name)
            stop.set()

        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        stack.callback(loop.remove_signal_handler, signum)


def exit_code(report: ProduceReport) -> int:
    """0 when every source completed; the first failure's code otherwise (130 on a signal)."""
    if report.signal_name is not None:
        return ExitCode.INTERRUPTED
    for result in report.results:
        if not result.ok:
            return result.error.exit_code if result.error is not None else ExitCode.FAILURE
    return ExitCode.OK
