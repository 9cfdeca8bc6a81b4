"""Kafka client setup: one place that turns settings into aiokafka clients.

Producers are idempotent with ``acks=all`` (aiokafka's default is ``acks=1`` without
idempotence); consumers never auto-commit, since offsets are committed only after
what they produced is durable downstream.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from runtime.errors import ConfigError, ServiceUnavailableError
from runtime.settings import KafkaSettings, load

__all__ = [
    "bootstrap_servers",
    "client_options",
    "make_admin",
    "make_consumer",
    "make_producer",
    "start_client",
]


def bootstrap_servers(settings: KafkaSettings | None = None) -> str:
    """The configured bootstrap servers (``KAFKA_BOOTSTRAP_SERVERS``); never a guess.

    Discovering the local development broker is the command line's job
    (:func:`inter1_pipeline.kafka_address.kafka_settings`), so a production worker with a
    missing setting fails at start instead of reaching for a broker on the same machine.
    """
    settings = settings or load(KafkaSettings)
    if not settings.bootstrap_servers:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS is not set: set it to the cluster's bootstrap servers "
            "(host:port[,host:port...])"
        )
    return settings.bootstrap_servers


def client_options(settings: KafkaSettings | None = None) -> dict[str, Any]:
    """Connection options shared by every aiokafka client (bootstrap, TLS, SASL)."""
    settings = settings or load(KafkaSettings)
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        if not (settings.sasl_mechanism and settings.sasl_username and settings.sasl_password):
            raise ConfigError(
                "KAFKA_SECURITY_PROTOCOL is SASL_*: set KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def make_producer(settings: KafkaSettings | None = None, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, ``acks=all`` producer (not started: call ``start()``)."""
    settings = settings or load(KafkaSettings)
    options: dict[str, Any] = {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": settings.max_record_bytes + 64 * 1024,
        "linger_ms": 5,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    *topics: str, group_id: str | None, settings: KafkaSettings | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits (not started: call ``start()``)."""
    settings = settings or load(KafkaSettings)
    options: dict[str, Any] = {
        **client_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_partition_fetch_bytes": settings.max_record_bytes + 64 * 1024,
        "fetch_max_bytes": max(52428800, settings.max_record_bytes * 2),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def make_admin(settings: KafkaSettings | None = None) -> AIOKafkaAdminClient:
    """An admin client (not started: call ``start()``)."""
    return AIOKafkaAdminClient(**client_options(settings))


async def start_client(
    client: AIOKafkaProducer | AIOKafkaConsumer, settings: KafkaSettings | None = None
) -> None:
    """Start a producer or consumer; an unreachable broker is a
    :class:`ServiceUnavailableError` naming the address (exit 69), the client closed."""
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await client.stop()
        raise ServiceUnavailableError(
            f"Kafka at {bootstrap_servers(settings)} is not reachable: {exc}. Start the broker"
            " (`inter1-pipeline stack up` for the local one) or set KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
