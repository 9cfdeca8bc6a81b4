"""The faust-streaming app behind ``inter1-pipeline cues``.

One agent consumes the events topic (``Inter1Event``, keyed by session id); per event it
loads the session's state from the ``sessions`` table, applies the rules on media time,
publishes each firing as a ``Cue`` (waiting for the broker's ack), then writes the state
back. The table is changelog-backed and co-partitioned with the events topic, and faust
flushes the producer (cues and changelog) before it commits offsets, so after a crash the
state is at least as new as the committed offset; the state's ``applied_offset`` makes
events it already holds a no-op, and deterministic cue ids make re-sent cues duplicates
consumers drop by id.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError

from deploy.topics import topic_layouts
from runtime.errors import ConfigError, PipelineError, ServiceUnavailableError
from runtime.kafka import bootstrap_servers, client_options, make_admin
from runtime.logs import get_logger
from runtime.settings import CuesSettings, KafkaSettings, StackSettings, load
from runtime.topics import topic_name
from schemas.codec import Codec, codec_from_settings
from schemas.exceptions import CodecError
from workers.cues.cue import cue_record
from workers.cues.evaluate import apply_event
from workers.cues.exceptions import ForeignRecordError
from workers.cues.rules import RuleSet
from workers.cues.state import LastCue, SessionState
from workers.cues.web import EndedSessions, register_web

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
        ended: EndedSessions,
    ) -> None:
        self._config = config
        self._rules = rules
        self._codec = codec
        self._table = table
        self._topics = topics
        self._ended = ended

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
            return
        datum = decoded.datum
        session_id = str(datum["session_id"])
        log = log.bind(session_id=session_id)
        key = session_id.encode()
        raw = self._table.get(key)
        if raw is None:
            self._ended.discard(session_id)
        state = SessionState.from_bytes(raw) if raw else SessionState(session_id=session_id)
        if message.offset <= state.applied_offset:
            log.info("event already applied (replay); skipped")
            return
        for firing in apply_event(state, datum, self._rules):
            record = cue_record(firing, datum, datetime.now(UTC))
            data = self._codec.encode("Cue", record, topic=self._config.cues_topic)
            pending = await self._topics["cues"].send(key=key, value=data)
            await pending  # the cue is durable before the state that says it was sent
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
        state.applied_offset = message.offset
        if state.ended:
            self._ended.add(state.public())
            if key in self._table:
                del self._table[key]
            log.info("session ended; live state removed", cues=state.cues, events=state.events)
        else:
            self._table[key] = state.to_bytes()

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
    table = app.Table(
        "sessions",
        default=None,
        partitions=config.partitions,
        key_type=bytes,
        value_type=bytes,
        help="Live state of each session (JSON), keyed by session id.",
    )
    ended = EndedSessions(config.ended_retention_s)
    processor = _Processor(
        config=config, rules=rules, codec=codec, table=table, topics=topics, ended=ended
    )

    @app.agent(events, name="cues")
    async def cues_agent(stream: Any) -> None:
        async for event in stream.events():
            await processor.process(event)

    register_web(app, table, ended)
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
