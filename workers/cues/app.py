"""The faust-streaming app behind ``inter1-pipeline cues``.

One agent consumes the events topic (``Inter1Event``, keyed by session id); per event it
loads the session's state from the ``sessions`` table, applies the rules on media time,
then, in this order:

1. publishes each firing as a ``Cue`` and waits for the broker's ack;
2. writes the state (with the event's offset as ``applied_offset``) to the table and waits
   for the changelog record's ack;
3. returns, and only then does faust ack the event (its offset becomes committable).

So a committed offset never runs ahead of the state in the changelog, whatever the load:
faust's own pre-commit producer flush gives up after 0.1 s without progress
(``ProducerBuffer.flush_atmost``) and can commit offsets whose table writes are still in
its buffer. A crash between 1 and 2 replays the event on the older state and re-sends the
same cues (deterministic ids: duplicates consumers drop by id); a crash between 2 and 3
replays it on a state whose ``applied_offset`` makes it a no-op. A session's state is never
deleted at its end but shrinks to an ended marker, removed only after the group committed
past it (``workers.cues.ended``), so replaying a session's tail cannot start it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.types import TP
from mode.types.signals import BaseSignalT

from deploy.topics import topic_layouts
from runtime.errors import ConfigError, PipelineError, ServiceUnavailableError
from runtime.kafka import bootstrap_servers, client_options, make_admin
from runtime.logs import get_logger
from runtime.settings import CuesSettings, KafkaSettings, StackSettings, load
from runtime.topics import topic_name
from schemas.codec import Codec, codec_from_settings
from schemas.exceptions import CodecError
from workers.cues import metrics
from workers.cues.cue import cue_record
from workers.cues.ended import EndedMarkers
from workers.cues.evaluate import apply_event
from workers.cues.exceptions import ForeignRecordError
from workers.cues.faults import CrashPoint, Point, parse_crash_at
from workers.cues.gaps import OffsetGuard, committed_offset
from workers.cues.rules import RuleSet
from workers.cues.state import LastCue, SessionState
from workers.cues.store import SessionsTable
from workers.cues.web import register_web

__all__ = ["CuesConfig", "build_app", "resolve_config", "run_worker"]


@dataclass(frozen=True)
class CuesConfig:
    """Everything the app needs, resolved before it starts (topics, layout, web)."""

    app_id: str
    events_topic: str
    cues_topic: str
    dead_letter_topic: str
    partitions: int
    """The events topic's partition count (the sessions table is co-partitioned)."""
    replication_factor: int
    web_host: str
    web_port: int
    session_timeout_s: float
    ended_retention_s: float
    datadir: Path
    crash_at: CrashPoint | None = None
    """Fault injection for crash drills (``PIPELINE_CUES_CRASH_AT``); None in production."""


async def resolve_config(settings: CuesSettings, web_port: int | None = None) -> CuesConfig:
    """Ask the cluster for the events topic's layout and the broker count.

    Raises:
        ConfigError: the events or cues topic does not exist.
        ServiceUnavailableError: Kafka cannot be reached.
    """
    names = {key: topic_name(key) for key in ("events", "cues", "dead_letter")}
    admin = make_admin()
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        layouts = await topic_layouts(admin, list(names.values()))
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"Kafka at {bootstrap_servers()} is not reachable: {exc!r}"
        ) from exc
    finally:
        await admin.close()
    missing = sorted(name for name in names.values() if name not in layouts)
    if missing:
        raise ConfigError(
            f"topic(s) {missing} do not exist: create them with `inter1-pipeline topics ensure`"
        )
    return CuesConfig(
        app_id=settings.app_id,
        events_topic=names["events"],
        cues_topic=names["cues"],
        dead_letter_topic=names["dead_letter"],
        partitions=layouts[names["events"]].partitions,
        replication_factor=min(settings.replication_factor, max(brokers, 1)),
        web_host=settings.web_host,
        web_port=web_port or settings.web_port,
        session_timeout_s=settings.session_timeout_s,
        ended_retention_s=settings.ended_retention_s,
        datadir=load(StackSettings).state_dir / "cues" / settings.app_id,
        crash_at=parse_crash_at(settings.crash_at),
    )


def _broker_options() -> dict[str, Any]:
    options = client_options(load(KafkaSettings))
    servers = [s.strip() for s in str(options["bootstrap_servers"]).split(",") if s.strip()]
    result: dict[str, Any] = {"broker": [f"kafka://{server}" for server in servers]}
    if "sasl_mechanism" in options:
        result["broker_credentials"] = faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=options.get("ssl_context"),
        )
    elif "ssl_context" in options:
        result["broker_credentials"] = options["ssl_context"]
    return result


class _Processor:
    """Applies events to session state and publishes the cues."""

    def __init__(
        self,
        *,
        config: CuesConfig,
        rules: RuleSet,
        codec: Codec,
        table: Any,
        topics: dict[str, Any],
        committed: Callable[[TP], int | None],
    ) -> None:
        self._config = config
        self._rules = rules
        self._codec = codec
        self._table = table
        self._topics = topics
        self._committed = committed
        self.ended = EndedMarkers(config.ended_retention_s)

    def _crash_point(self, point: Point, offset: int) -> None:
        if self._config.crash_at is not None:
            self._config.crash_at.check(point, offset)

    async def process(self, event: Any) -> None:
        message = event.message
        log = get_logger(
            "workers.cues",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
        try:
            decoded = self._codec.decode(message.value, topic=message.topic)
            if decoded.name != "Inter1Event":
                raise ForeignRecordError(f"expected an Inter1Event record, got {decoded.name}")
        except (CodecError, ForeignRecordError) as exc:
            log.warning("undecodable event sent to the dead letters", error=str(exc))
            await self._dead_letter(message, exc)
            metrics.DEAD_LETTERS.inc()
            return
        datum = decoded.datum
        session_id = str(datum["session_id"])
        log = log.bind(session_id=session_id)
        key = session_id.encode()
        partition = int(message.partition)
        self._index_markers(partition)
        raw = self._table.get(key)
        stored = SessionState.from_bytes(raw) if raw else None
        if stored is not None and message.offset <= stored.applied_offset:
            log.info("event already applied (replay); skipped")
            metrics.EVENTS_SKIPPED.labels("replayed_offset").inc()
            return
        if stored is None or stored.ended:
            # A new session, or its id starting again after its end.
            self.ended.discard(partition, key)
            state = SessionState(session_id=session_id, partition=partition)
        else:
            state = stored
        applied = state.events
        for firing in apply_event(state, datum, self._rules):
            record = cue_record(firing, datum, datetime.now(UTC))
            data = self._codec.encode("Cue", record, topic=self._config.cues_topic)
            pending = await self._topics["cues"].send(key=key, value=data)
            await pending  # the cue is durable before the state that says it was sent
            metrics.CUES_FIRED.labels(firing.rule, firing.severity).inc()
            metrics.CUE_LATENCY.observe(
                max(0.0, (datetime.now(UTC) - datum["received_at"]).total_seconds())
            )
            state.cues += 1
            state.last_cue = LastCue(
                cue_id=record["cue_id"],
                rule=firing.rule,
                severity=firing.severity,
                message=firing.message,
                media_start_s=firing.media_start_s,
                media_end_s=firing.media_end_s,
            )
            log.info("cue fired", rule=firing.rule, cue_id=record["cue_id"])
        if state.events == applied:
            log.info("event id already applied (window published again); skipped")
            metrics.EVENTS_SKIPPED.labels("repeated_event_id").inc()
        else:
            metrics.EVENTS_APPLIED.inc()
        self._crash_point("after_cue", message.offset)
        state.applied_offset = message.offset
        if state.ended:
            state = state.ended_marker()
            self.ended.add(partition, key, message.offset)
            log.info("session ended", cues=state.cues, events=state.events)
        await self._write(partition, key, state.to_bytes())
        self._crash_point("after_state", message.offset)
        self._remove_expired_markers(partition, message.topic)

    async def _write(self, partition: int, key: bytes, value: bytes) -> None:
        """Write the state's changelog record, wait for its ack, then set the table value.

        ``table[key] = value`` would queue the changelog record in faust's producer buffer
        and return; faust's pre-commit flush does not reliably wait for that buffer, so the
        event's offset could be committed before its state is durable. The record goes out
        like a cue instead (straight to the producer, acked before we go on); its offset is
        recorded in the store with the value (``workers.cues.store``), which sends nothing,
        remembers the key's partition (dropped with it when a rebalance moves it away) and
        ignores older records of the key that a later recovery reads.
        """
        changelog = self._table.changelog_topic
        pending = await changelog.send(
            key=key,
            value=value,
            partition=partition,
            key_serializer="raw",
            value_serializer="raw",
        )
        metadata = await pending
        self._table.data.put(TP(changelog.get_topic_name(), partition), metadata.offset, key, value)

    def _index_markers(self, partition: int) -> None:
        """After a start or a rebalance: find the ended markers the table recovered."""
        if not self.ended.needs_index(partition):
            return
        markers = []
        for key, raw in list(self._table.data.items()):
            if raw:
                state = SessionState.from_bytes(raw)
                if state.ended and state.partition == partition:
                    markers.append((state.applied_offset, bytes(key)))
        for offset, key in sorted(markers):
            self.ended.add(partition, key, offset)
        self.ended.indexed(partition)

    def _remove_expired_markers(self, partition: int, topic: str) -> None:
        for key in self.ended.expired(partition, self._committed(TP(topic, partition))):
            raw = self._table.get(key)
            if raw and SessionState.from_bytes(raw).ended:
                del self._table[key]
                get_logger("workers.cues", session_id=key.decode(errors="replace")).info(
                    "ended session removed from the live state"
                )

    async def _dead_letter(self, message: Any, exc: PipelineError) -> None:
        record = {
            "stage": "cues",
            "source_topic": message.topic,
            "source_partition": message.partition,
            "source_offset": message.offset,
            "key": message.key,
            "value": message.value,
            "error_type": type(exc).__name__,
            "error_code": None,
            "error_message": str(exc),
            "retriable": exc.retriable,
            "session_id": message.key.decode(errors="replace") if message.key else None,
            "failed_at": datetime.now(UTC),
            "headers": {name: bytes(value) for name, value in (message.headers or [])},
        }
        data = self._codec.encode("DeadLetter", record, topic=self._config.dead_letter_topic)
        await (await self._topics["dead_letter"].send(key=message.key, value=data))


_STALL_CHECK_S = 5.0
"""How often a partition whose events stopped arriving short of its end is sought back."""


def build_app(config: CuesConfig, rules: RuleSet, codec: Codec | None = None) -> faust.App:
    """The faust app: events agent, sessions table, web pages. No I/O until it starts."""
    codec = codec or codec_from_settings()
    app = faust.App(
        config.app_id,
        **_broker_options(),
        store="memory://",
        autodiscover=False,
        datadir=str(config.datadir),
        topic_replication_factor=config.replication_factor,
        topic_partitions=config.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        producer_acks=-1,
        web_bind=config.web_host,
        web_host=config.web_host,
        web_port=config.web_port,
        canonical_url=f"http://{config.web_host}:{config.web_port}",
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw"}
    events = app.topic(config.events_topic, value_serializer="raw", **raw)
    topics = {
        "cues": app.topic(config.cues_topic, value_serializer="raw", **raw),
        "dead_letter": app.topic(config.dead_letter_topic, value_serializer="raw", **raw),
    }
    table = app.tables.add(
        SessionsTable(
            app,
            name="sessions",
            default=None,
            partitions=config.partitions,
            key_type=bytes,
            value_type=bytes,
            help="Live state of each session (JSON), keyed by session id.",
            beacon=app.tables.beacon,
        )
    )

    def committed(tp: TP) -> int | None:
        # The monitor is created when the app starts; look it up per call.
        return app.monitor.tp_committed_offsets.get(tp)

    processor = _Processor(
        config=config, rules=rules, codec=codec, table=table, topics=topics, committed=committed
    )

    async def group_committed(tp: TP) -> int | None:
        # Asked once per partition after a rebalance: where faust's seek put the consumer.
        return await committed_offset(app.conf.id, tp)

    guard = OffsetGuard(group_committed)

    async def refetch_stalled() -> None:
        for tp in app.consumer.assignment():
            if tp.topic == config.events_topic:
                await guard.refetch_if_stalled(app, tp)

    app.timer(interval=_STALL_CHECK_S)(refetch_stalled)

    def _partitions_moved(
        sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
    ) -> None:
        processor.ended.reset()
        guard.reset()

    app.on_partitions_revoked.connect(_partitions_moved)

    @app.agent(events, name="cues")
    async def cues_agent(stream: Any) -> None:
        async for event in stream.events():
            if await guard.admit(app, event):
                await processor.process(event)
                guard.handled(event)

    register_web(app, table, ready=lambda: bool(app.consumer.assignment()))
    return app


def run_worker(app: faust.App, log_level: str) -> None:
    """Run ``app`` until SIGTERM/SIGINT (faust's worker stops it cleanly); exits the process."""
    Path(app.conf.datadir).mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = faust.Worker(
        app, loglevel=log_level.lower(), override_logging=False, quiet=True, loop=loop
    )
    get_logger("workers.cues").info(
        "cues app starting", app_id=app.conf.id, web=str(app.conf.canonical_url)
    )
    worker.execute_from_commandline()
