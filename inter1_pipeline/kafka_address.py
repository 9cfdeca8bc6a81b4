"""Which Kafka a command talks to: ``KAFKA_BOOTSTRAP_SERVERS``, else the running local stack.

Only the command line falls back to the local development broker; ``runtime`` reads the
setting alone. Commands that act on the local stack resolve their settings here and pass
them to the ``runtime.kafka`` factories.
"""

from __future__ import annotations

from runtime.errors import ConfigError
from runtime.settings import KafkaSettings, StackSettings, load

__all__ = ["kafka_settings", "with_bootstrap"]


def with_bootstrap(settings: KafkaSettings, bootstrap: str) -> KafkaSettings:
    """``settings`` with ``bootstrap_servers`` set to ``bootstrap``."""
    return settings.replace(bootstrap_servers=bootstrap)


def kafka_settings() -> KafkaSettings:
    """Kafka settings with bootstrap servers: the configured ones, or the local stack's."""
    settings: KafkaSettings = load(KafkaSettings)
    if settings.bootstrap_servers:
        return settings
    stack = load(StackSettings)
    from deploy.kafka_broker import read_bootstrap  # loads aiokafka: only when needed

    address = read_bootstrap(stack.state_dir)
    if address is None:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS is not set and the local broker is not running "
            f"(state dir {stack.state_dir}): start it with `inter1-pipeline stack up` or set "
            "KAFKA_BOOTSTRAP_SERVERS"
        )
    return with_bootstrap(settings, address)
