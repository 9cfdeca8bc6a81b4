"""Settings from the environment (and a ``.env`` file), grouped by concern and validated at start.

Every setting is an environment variable; the names are part of the public surface
(see the README's settings table). Secrets are :class:`SecretStr` and never printed.

The groups are ``msgspec`` structs converted from the environment's strings
(``msgspec.convert(..., strict=False)``): one definition gives the types, bounds, defaults
and the README's reference. It replaced pydantic-settings, whose import and validator
building took about 0.1 s of every command's start (a ``produce`` of a file is a short
process; see bench/producer_bench.py).
"""

from __future__ import annotations

import os
import re
import typing
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

import msgspec
from msgspec import Meta

from runtime.errors import ConfigError

__all__ = [
    "ALL_GROUPS",
    "ClickHouseSettings",
    "CuesSettings",
    "Inter1Settings",
    "KafkaSettings",
    "LogSettings",
    "ProducerSettings",
    "SchemaSettings",
    "SecretStr",
    "SessionWorkerSettings",
    "Settings",
    "SinkSettings",
    "StackSettings",
    "load",
    "validate_all",
]

ENV_FILE = ".env"
"""Read from the working directory when present; the environment wins over it."""


class SecretStr:
    """A secret setting: shown as ``**********``; the value only through
    :meth:`get_secret_value`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself (never log it)."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __repr__(self) -> str:
        return f"SecretStr({str(self)!r})"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every settings group: ``env_prefix`` + the field name (upper case) is the
    variable."""

    env_prefix: ClassVar[str] = ""

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of ``field``."""
        return f"{cls.env_prefix}{field}".upper()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Self:
        """Build the group from ``environ`` (default: the process environment over
        ``.env``), validated; a bad value raises :class:`ConfigError` naming its variable."""
        source = _environment() if environ is None else {k.upper(): v for k, v in environ.items()}
        trimmed = _trimmed_fields(cls)
        values = {
            name: source[key].strip() if name in trimmed else source[key]
            for name in cls.__struct_fields__
            if (key := cls.env_name(name)) in source
        }
        try:
            return msgspec.convert(values, cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid setting(s): {_explain(cls, str(exc), values)}") from None

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (programmatic overrides; not validated again)."""
        return msgspec.structs.replace(self, **changes)


def _environment() -> dict[str, str]:
    """The process environment over the ``.env`` file, names upper-cased (matching is
    case-insensitive, as it was with pydantic-settings)."""
    values: dict[str, str] = {}
    if os.path.isfile(ENV_FILE):
        from dotenv import dotenv_values  # only when there is a file to read

        values = {k.upper(): v for k, v in dotenv_values(ENV_FILE).items() if v is not None}
    values.update((k.upper(), v) for k, v in os.environ.items())
    return values


@cache
def _options(kind: type[Settings]) -> dict[str, tuple[Any, ...]]:
    """Per field, the types it accepts: its annotation and, for a union, each member."""
    return {
        name: (hint, *(typing.get_args(hint) if typing.get_origin(hint) is not Literal else ()))
        for name, hint in typing.get_type_hints(kind).items()
    }


@cache
def _trimmed_fields(kind: type[Settings]) -> frozenset[str]:
    """Fields whose values are read without surrounding blanks (numbers and choices; text,
    paths and secrets are taken as given)."""
    return frozenset(
        name
        for name, options in _options(kind).items()
        if any(o in (int, float) or typing.get_origin(o) is Literal for o in options)
    )


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    if kind is SecretStr and isinstance(value, str):
        return SecretStr(value)
    raise NotImplementedError


_PLAIN = {
    "Expected `int`": "expected an integer",
    "Expected `float`": "expected a number",
    "Expected `str`": "expected text",
    "Expected `bool`": "expected true or false",
    "Expected": "expected",
}
_AT_FIELD = re.compile(r" - at `\$\.(\w+)`$")


def _explain(kind: type[Settings], message: str, values: dict[str, str]) -> str:
    """msgspec's message with the variable instead of the field path, and the value given
    (never a secret's)."""
    found = _AT_FIELD.search(message)
    if not found:
        return message
    field = found.group(1)
    given = values.get(field)
    allowed = _literal_values(kind, field)
    if allowed and message.startswith("Invalid enum value"):
        return f"{kind.env_name(field)}: {given!r} is not one of {', '.join(allowed)}"
    problem = message[: found.start()].replace(", got `str`", "")
    for word, plain in _PLAIN.items():
        problem = problem.replace(word, plain)
    shown = "" if _is_secret(kind, field) else f" (got {given!r})"
    return f"{kind.env_name(field)}: {problem}{shown}"


def _literal_values(kind: type[Settings], field: str) -> list[str]:
    """The allowed values of a ``Literal`` field (quoted), else an empty list."""
    for option in _options(kind).get(field, ()):
        if typing.get_origin(option) is Literal:
            return [repr(value) for value in typing.get_args(option)]
    return []


def _is_secret(kind: type[Settings], field: str) -> bool:
    return SecretStr in _options(kind).get(field, ())


class StackSettings(Settings, frozen=True, kw_only=True):
    """Where local state lives (broker data, jar cache, embedded ClickHouse, logs)."""

    env_prefix: ClassVar[str] = "PIPELINE_"

    state_dir: Path = Path(".stack")
    kafka_port: Annotated[int, Meta(ge=0, le=65535)] = 0
    kafka_heap_mb: Annotated[int, Meta(ge=128)] = 512
    kafka_start_timeout_s: Annotated[float, Meta(gt=0)] = 60.0


class KafkaSettings(Settings, frozen=True, kw_only=True):
    """How to reach Kafka. No bootstrap servers is an error (only the CLI finds a local stack)."""

    env_prefix: ClassVar[str] = "KAFKA_"

    bootstrap_servers: str = ""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    client_id: str = "inter1-pipeline"
    topic_prefix: str = ""
    max_record_bytes: Annotated[int, Meta(gt=0)] = 8 * 1024 * 1024


class ProducerSettings(Settings, frozen=True, kw_only=True):
    """``inter1-pipeline produce``: outage detection and the on-disk spool of live sources."""

    env_prefix: ClassVar[str] = "PIPELINE_PRODUCER_"

    spool_dir: Path | None = None
    """Where live sessions spool during a Kafka outage (unset: ``$PIPELINE_STATE_DIR/spool``)."""
    spool_max_bytes: Annotated[int, Meta(ge=0)] = 1024 * 1024 * 1024
    """Record bytes the spool may hold across all sessions; a chunk that does not fit is dropped."""
    ack_timeout_s: Annotated[float, Meta(gt=0.0)] = 10.0
    """A record not acknowledged (or not accepted by the client) this long means an outage."""
    stop_timeout_s: Annotated[float, Meta(ge=0.0)] = 10.0
    """On SIGINT/SIGTERM, longest wait for Kafka to take the spool before leaving it on disk."""

    def spool_path(self) -> Path:
        """The spool directory (``spool_dir``, else ``spool`` under the stack's state directory)."""
        return self.spool_dir or load(StackSettings).state_dir / "spool"


class ClickHouseSettings(Settings, frozen=True, kw_only=True):
    """One URL: ``chdb:///path`` (embedded engine) or ``http(s)://user:pass@host:port/db``."""

    env_prefix: ClassVar[str] = "CLICKHOUSE_"

    url: SecretStr = SecretStr("")
    """Empty means the embedded engine under ``$PIPELINE_STATE_DIR/clickhouse``."""


class SchemaSettings(Settings, frozen=True, kw_only=True):
    """Avro framing: single-object encoding by default, Confluent wire format with a registry."""

    env_prefix: ClassVar[str] = "SCHEMA_REGISTRY_"

    url: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FULL", "NONE"] = (
        "BACKWARD"
    )


class Inter1Settings(Settings, frozen=True, kw_only=True):
    """The Inter-1 Stream API. No key and no URL means: the local simulator."""

    env_prefix: ClassVar[str] = "INTER1_"

    api_key: SecretStr | None = None
    base_url: str | None = None
    api_version: Literal["v1", "v2"] = "v1"

    def __post_init__(self) -> None:
        url = self.base_url
        if url and not url.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(
                f"{self.env_name('base_url')}: must start with http://, https://, ws:// or wss://"
            )


class CuesSettings(Settings, frozen=True, kw_only=True):
    """The live-cues app (``inter1-pipeline cues``): rules, consumer group, web server."""

    env_prefix: ClassVar[str] = "PIPELINE_CUES_"

    rules: Path | None = None
    """Rules file (TOML); unset: the shipped ``workers/cues/default_rules.toml``."""
    app_id: Annotated[str, Meta(min_length=1)] = "inter1-cues"
    """Faust app id: the consumer group and the prefix of the app's internal topics."""
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, Meta(ge=1, le=65535)] = 6066
    replication_factor: Annotated[int, Meta(ge=1)] = 3
    """Replication of faust's internal and changelog topics, clamped to the broker count."""
    session_timeout_s: Annotated[float, Meta(ge=6.0)] = 10.0
    """Consumer-group session timeout: how long a crashed member holds its partitions."""
    ended_retention_s: Annotated[float, Meta(ge=0.0)] = 300.0
    """How long an ended session stays in the table (shown inactive) once its end is committed."""
    crash_at: str | None = None
    """Crash drills only: ``<after_cue|after_state>@<offset>`` (see ``workers.cues.faults``)."""


class SinkSettings(Settings, frozen=True, kw_only=True):
    """The ClickHouse sink (``inter1-pipeline sink``): batching, retries, query endpoint."""

    env_prefix: ClassVar[str] = "PIPELINE_SINK_"

    group_id: Annotated[str, Meta(min_length=1)] = "inter1-sink"
    """Consumer group of the sink."""
    batch_records: Annotated[int, Meta(ge=1)] = 5000
    """Offsets per batch bucket: a full batch spans ``[k*N, (k+1)*N)`` of one partition."""
    container_min_events: Annotated[int, Meta(ge=0)] = 1000
    """Events per batch from which ClickHouse decodes them (one Avro container into
    ``event_landing``); smaller batches are decoded here. ClickHouse plans its views on every
    insert (about 30 ms of CPU), which a few events do not repay (bench/sink_bench.py)."""
    flush_interval_s: Annotated[float, Meta(gt=0)] = 1.0
    """Longest a consumed record waits before it is inserted and its offset committed."""
    fetch_max_wait_ms: Annotated[int, Meta(ge=1)] = 250
    """Longest a fetch waits at the broker for ``fetch_min_bytes``. Live events arrive one by
    one, and a fetch for each (aiokafka's 500 ms and 1 byte) took the sink 282-318 ms of CPU a
    second at 170 events a second, 111-123 ms with 250 ms and 1 MiB, for about 70 ms more
    latency (the events wait for ``flush_interval_s`` anyway)."""
    fetch_min_bytes: Annotated[int, Meta(ge=1)] = 1024 * 1024
    """Record bytes a fetch waits for, up to ``fetch_max_wait_ms`` (1: each record as it lands;
    a backlog fills it at once)."""
    retry_initial_s: Annotated[float, Meta(gt=0)] = 0.5
    retry_max_s: Annotated[float, Meta(gt=0)] = 30.0
    """Backoff between insert attempts while ClickHouse is unavailable (doubling, capped)."""
    retry_timeout_s: Annotated[float, Meta(gt=0)] = 600.0
    """How long a checkpoint keeps retrying before the sink stops (nothing is committed)."""
    query_host: str = "127.0.0.1"
    query_port: Annotated[int, Meta(ge=0, le=65535)] = 0
    """Read-only query endpoint for analyst commands (0: a free port, written to the state dir)."""
    http_host: str = "127.0.0.1"
    """Interface of ``/metrics``, ``/healthz`` and ``/readyz`` (``0.0.0.0`` in a pod: the
    kubelet probes and Prometheus scrapes the pod IP)."""
    http_port: Annotated[int, Meta(ge=0, le=65535)] = 0
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port, logged at start)."""
    session_timeout_s: Annotated[float, Meta(ge=6.0)] = 10.0
    """Consumer-group session timeout (how long a crashed sink holds its partitions)."""
    crash_at: str | None = None
    """Crash drills only: ``<after_intent|after_rows>@<topic>:<partition>:<offset>``
    (see ``sinks.faults``)."""


class SessionWorkerSettings(Settings, frozen=True, kw_only=True):
    """The session worker (``inter1-pipeline session-worker``): group, sessions, failover, ops."""

    env_prefix: ClassVar[str] = "PIPELINE_WORKER_"

    group_id: Annotated[str, Meta(min_length=1)] = "inter1-session-workers"
    """Consumer group of the chunk topic."""
    include: str = "conversation_quality_overall,conversation_quality_timeline"
    """Comma-separated ``include`` of the session config (the timeline marks windows)."""
    goal_dimensions: str = ""
    """Comma-separated goal dimensions (empty: feedback off)."""
    model: str | None = None
    """Inter-2 model on ``INTER1_API_VERSION=v2`` (unset: the server default)."""
    max_sessions: Annotated[int, Meta(ge=1)] = 500
    """Concurrent video sessions per process (file descriptors are checked against it)."""
    session_queue_chunks: Annotated[int, Meta(ge=1)] = 16
    """Chunks waiting per session before its partition is paused."""
    context_s: Annotated[float, Meta(ge=0.0)] = 8.0
    """Media before the first window to publish that a failover connection re-sends."""
    window_s: Annotated[float, Meta(gt=0.0)] = 8.0
    hop_s: Annotated[float, Meta(gt=0.0)] = 3.0
    idle_timeout_s: Annotated[float, Meta(gt=0.0)] = 120.0
    """A session without chunks this long is closed gracefully."""
    drain_timeout_s: Annotated[float, Meta(gt=0.0)] = 30.0
    """Longest wait for ``session.ended`` after ``session.close``."""
    shutdown_timeout_s: Annotated[float, Meta(gt=0.0)] = 30.0
    """SIGTERM: longest wait for every session to drain before flushing and leaving."""
    reconnect_attempts: Annotated[int, Meta(ge=0)] = 5
    reconnect_base_s: Annotated[float, Meta(gt=0.0)] = 0.5
    reconnect_max_s: Annotated[float, Meta(gt=0.0)] = 20.0
    live_max_lag_s: Annotated[float, Meta(gt=0.0)] = 30.0
    """Live chunks older than this (``produced_at`` to now) are shed at the worker."""
    recorded_pace: Annotated[float, Meta(ge=0.0)] = 3.0
    """Send rate of recorded (non-live) sessions as a multiple of real time, so a service that
    sheds windows under lag is not flooded (3: three media seconds per second, what the
    simulator's default model load takes without shedding); 0: as fast as the connection
    takes them (only for a service known not to shed)."""
    publish_interval_s: Annotated[float, Meta(gt=0.0)] = 0.5
    """How often the worker publishes what waits in its outbox (records of recorded sessions,
    progress) with the sessions' progress."""
    publish_linger_s: Annotated[float, Meta(ge=0.0)] = 0.005
    """Once a live session's record (event, usage, dead letter) waits in the worker's outbox,
    how long the outbox gathers more (the rest of a window's events) before publishing: bounds
    the time from a live event received to its record acknowledged."""
    commit_interval_s: Annotated[float, Meta(gt=0.0)] = 1.0
    fetch_max_wait_ms: Annotated[int, Meta(ge=1)] = 500
    """Longest a chunk fetch waits at the broker for ``fetch_min_bytes`` (also how often an
    idle worker asks). For workers holding many live sessions, 50 with ``fetch_min_bytes``
    2097152 gathers several chunks per fetch: 27-43 % less CPU per media-second at 100-200
    live 2 Mbit/s sessions for about 30 ms more latency, but an idle worker fetches ten times
    as often (about 23 instead of 6 ms of CPU a second; ``workers/session/README.md``)."""
    fetch_min_bytes: Annotated[int, Meta(ge=1)] = 1
    """Chunk bytes a fetch waits for, up to ``fetch_max_wait_ms`` (1: each chunk as it lands;
    a backlog fills any value at once)."""
    session_timeout_s: Annotated[float, Meta(ge=6.0)] = 10.0
    """Consumer-group session timeout (how long a crashed worker holds its partitions)."""
    http_port: Annotated[int, Meta(ge=0, le=65535)] = 9464
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port)."""
    http_host: str = "127.0.0.1"
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """Event loop of the worker process: ``uvloop`` (less CPU per relayed chunk; falls back to
    ``asyncio``, logged, where uvloop is not installed) or the standard ``asyncio`` loop."""
    crash_at: str | None = None
    """Crash drills only: ``records_acked@<events>`` (see ``workers.session.faults``)."""

    def include_list(self) -> list[str]:
        """``include`` as a list."""
        return [item.strip() for item in self.include.split(",") if item.strip()]

    def goal_dimension_list(self) -> list[str]:
        """``goal_dimensions`` as a list."""
        return [item.strip() for item in self.goal_dimensions.split(",") if item.strip()]


class LogSettings(Settings, frozen=True, kw_only=True):
    """Log level and format (``auto``: console on a terminal, JSON otherwise)."""

    env_prefix: ClassVar[str] = "LOG_"

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


_T = TypeVar("_T", bound=Settings)


@cache
def load(kind: type[_T]) -> _T:
    """Read one settings group from the environment (cached), turning a bad value into a
    ConfigError that names the environment variable and what was wrong with it."""
    return kind.from_env()


ALL_GROUPS: tuple[type[Settings], ...] = (
    StackSettings,
    KafkaSettings,
    ClickHouseSettings,
    ProducerSettings,
    SchemaSettings,
    Inter1Settings,
    CuesSettings,
    SinkSettings,
    SessionWorkerSettings,
    LogSettings,
)


def validate_all(groups: tuple[type[Settings], ...] = ALL_GROUPS) -> None:
    """Read settings groups once (all by default), so a bad value fails at start, naming
    its variable."""
    for kind in groups:
        load(kind)
