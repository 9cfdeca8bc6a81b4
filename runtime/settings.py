"""Settings from the environment (and a ``.env`` file), grouped by concern and validated at start.

Every setting is an environment variable; the names are part of the public surface
(see the README's settings table). Secrets are ``SecretStr`` and never printed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    "SessionWorkerSettings",
    "SinkSettings",
    "StackSettings",
    "load",
    "validate_all",
]

# defer_build: a group's validator is built when it is first loaded, so a command pays
# only for the groups it reads.
_COMMON = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True, defer_build=True
)


class StackSettings(BaseSettings):
    """Where local state lives (broker data, jar cache, embedded ClickHouse, logs)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="PIPELINE_")

    state_dir: Path = Field(default=Path(".stack"), description="PIPELINE_STATE_DIR")
    kafka_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    kafka_heap_mb: int = Field(default=512, ge=128)
    kafka_start_timeout_s: float = Field(default=60.0, gt=0)


class KafkaSettings(BaseSettings):
    """How to reach Kafka. No bootstrap servers is an error (only the CLI finds a local stack)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="KAFKA_")

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
    max_record_bytes: int = Field(default=8 * 1024 * 1024, gt=0)


class ProducerSettings(BaseSettings):
    """``inter1-pipeline produce``: outage detection and the on-disk spool of live sources."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="PIPELINE_PRODUCER_")

    spool_dir: Path | None = None
    """Where live sessions spool during a Kafka outage (unset: ``$PIPELINE_STATE_DIR/spool``)."""
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    """Record bytes the spool may hold across all sessions; a chunk that does not fit is dropped."""
    ack_timeout_s: float = Field(default=10.0, gt=0.0)
    """A record not acknowledged (or not accepted by the client) this long means an outage."""
    stop_timeout_s: float = Field(default=10.0, ge=0.0)
    """On SIGINT/SIGTERM, longest wait for Kafka to take the spool before leaving it on disk."""

    def spool_path(self) -> Path:
        """The spool directory (``spool_dir``, else ``spool`` under the stack's state directory)."""
        return self.spool_dir or load(StackSettings).state_dir / "spool"


class ClickHouseSettings(BaseSettings):
    """One URL: ``chdb:///path`` (embedded engine) or ``http(s)://user:pass@host:port/db``."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CLICKHOUSE_")

    url: SecretStr = SecretStr("")
    """Empty means the embedded engine under ``$PIPELINE_STATE_DIR/clickhouse``."""


class SchemaSettings(BaseSettings):
    """Avro framing: single-object encoding by default, Confluent wire format with a registry."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="SCHEMA_REGISTRY_")

    url: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FULL", "NONE"] = (
        "BACKWARD"
    )


class Inter1Settings(BaseSettings):
    """The Inter-1 Stream API. No key and no URL means: the local simulator."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="INTER1_")

    api_key: SecretStr | None = None
    base_url: str | None = None
    api_version: Literal["v1", "v2"] = "v1"

    @field_validator("base_url")
    @classmethod
    def _http_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must start with http://, https://, ws:// or wss://")
        return value


class CuesSettings(BaseSettings):
    """The live-cues app (``inter1-pipeline cues``): rules, consumer group, web server."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="PIPELINE_CUES_")

    rules: Path | None = None
    """Rules file (TOML); unset: the shipped ``workers/cues/default_rules.toml``."""
    app_id: str = Field(default="inter1-cues", min_length=1)
    """Faust app id: the consumer group and the prefix of the app's internal topics."""
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    replication_factor: int = Field(default=3, ge=1)
    """Replication of faust's internal and changelog topics, clamped to the broker count."""
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    """Consumer-group session timeout: how long a crashed member holds its partitions."""
    ended_retention_s: float = Field(default=300.0, ge=0.0)
    """How long an ended session stays in the table (shown inactive) once its end is committed."""
    crash_at: str | None = None
    """Crash drills only: ``<after_cue|after_state>@<offset>`` (see ``workers.cues.faults``)."""


class SinkSettings(BaseSettings):
    """The ClickHouse sink (``inter1-pipeline sink``): batching, retries, query endpoint."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="PIPELINE_SINK_")

    group_id: str = Field(default="inter1-sink", min_length=1)
    """Consumer group of the sink."""
    batch_records: int = Field(default=5000, ge=1)
    """Offsets per batch bucket: a full batch spans ``[k*N, (k+1)*N)`` of one partition."""
    container_min_events: int = Field(default=1000, ge=0)
    """Events per batch from which ClickHouse decodes them (one Avro container into
    ``event_landing``); smaller batches are decoded here. ClickHouse plans its views on every
    insert (about 30 ms of CPU), which a few events do not repay (bench/sink_bench.py)."""
    flush_interval_s: float = Field(default=1.0, gt=0)
    """Longest a consumed record waits before it is inserted and its offset committed."""
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    """Backoff between insert attempts while ClickHouse is unavailable (doubling, capped)."""
    retry_timeout_s: float = Field(default=600.0, gt=0)
    """How long a checkpoint keeps retrying before the sink stops (nothing is committed)."""
    query_host: str = "127.0.0.1"
    query_port: int = Field(default=0, ge=0, le=65535)
    """Read-only query endpoint for analyst commands (0: a free port, written to the state dir)."""
    http_host: str = "127.0.0.1"
    """Interface of ``/metrics``, ``/healthz`` and ``/readyz`` (``0.0.0.0`` in a pod: the
    kubelet probes and Prometheus scrapes the pod IP)."""
    http_port: int = Field(default=0, ge=0, le=65535)
    """Port of ``/metrics``, ``/healthz`` and ``/readyz`` (0: a free port, logged at start)."""
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    """Consumer-group session timeout (how long a crashed sink holds its partitions)."""
    crash_at: str | None = None
    """Crash drills only: ``<after_intent|after_rows>@<topic>:<partition>:<offset>``
    (see ``sinks.faults``)."""


class SessionWorkerSettings(BaseSettings):
    """The session worker (``inter1-pipeline session-worker``): group, sessions, failover, ops."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="PIPELINE_WORKER_")

    group_id: str = Field(default="inter1-session-workers", min_length=1)
    """Consumer group of the chunk topic."""
    include: str = "conversation_quality_overall,conversation_quality_timeline"
    """Comma-separated ``include`` of the session config (the timeline marks windows)."""
    goal_dimensions: str = ""
    """Comma-separated goal dimensions (empty: feedback off)."""
    model: str | None = None
    """Inter-2 model on ``INTER1_API_VERSION=v2`` (unset: the server default)."""
    max_sessions: int = Field(default=500, ge=1)
    """Concurrent video sessions per process (file descriptors are checked against it)."""
    session_queue_chunks: int = Field(default=16, ge=1)
    """Chunks waiting per session before its partition is paused."""
    context_s: float = Field(default=8.0, ge=0.0)
    """Media before the first window to publish that a failover connection re-sends."""
    window_s: float = Field(default=8.0, gt=0.0)
    hop_s: float = Field(default=3.0, gt=0.0)
    idle_timeout_s: float = Field(default=120.0, gt=0.0)
    """A session without chunks this long is closed gracefully."""
    drain_timeout_s: float = Field(default=30.0, gt=0.0)
    """Longest wait for ``session.ended`` after ``session.close``."""
    shutdown_timeout_s: float = Field(default=30.0, gt=0.0)
    """SIGTERM: longest wait for every session to drain before flushing and leaving."""
    reconnect_attempts: int = Field(default=5, ge=0)
    reconnect_base_s: float = Field(default=0.5, gt=0.0)
    reconnect_max_s: float = Field(default=20.0, gt=0.0)
    live_max_lag_s: float = Field(default=30.0, gt=0.0)
    """Live chunks older than this (``produced_at`` to now) are shed at the worker."""
    recorded_pace: float = Field(default=3.0, ge=0.0)
    """Send rate of recorded (non-live) sessions as a multiple of real time, so a service that
    sheds windows under lag is not flooded (3: three media seconds per second, what the
    simulator's default model load takes without shedding); 0: as fast as the connection
    takes them (only for a service known not to shed)."""
    publish_interval_s: float = Field(default=0.5, gt=0.0)
    """How often the worker publishes what waits in its outbox (records of recorded sessions,
    progress) with the sessions' progress."""
    publish_linger_s: float = Field(default=0.005, ge=0.0)
    """Once a live session's record (event, usage, dead letter) waits in the worker's outbox,
    how long the outbox gathers more (the rest of a window's events) before publishing: bounds
    the time from a live event received to its record acknowledged."""
    commit_interval_s: float = Field(default=1.0, gt=0.0)
    session_timeout_s: float = Field(default=10.0, ge=6.0)
    """Consumer-group session timeout (how long a crashed worker holds its partitions)."""
    http_port: int = Field(default=9464, ge=0, le=65535)
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


class LogSettings(BaseSettings):
    """Log level and format (``auto``: console on a terminal, JSON otherwise)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


_T = TypeVar("_T", bound=BaseSettings)


@cache
def load(kind: type[_T]) -> _T:
    """Read one settings group from the environment, turning validation errors into ConfigError.

    The error names the environment variable and what was wrong with it.
    """
    try:
        return kind()
    except ValidationError as exc:
        prefix = str(kind.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid setting(s): {problems}") from None


ALL_GROUPS: tuple[type[BaseSettings], ...] = (
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


def validate_all(groups: tuple[type[BaseSettings], ...] = ALL_GROUPS) -> None:
    """Read settings groups once (all by default), so a bad value fails at start, naming
    its variable."""
    for kind in groups:
        load(kind)
