"""The declared topics (``deploy/topics.toml``) and their physical names."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from runtime.errors import ConfigError
from runtime.settings import KafkaSettings, load

__all__ = ["TOPICS_FILE", "TopicSpec", "load_topic_specs", "topic_name"]

TOPICS_FILE = Path(__file__).resolve().parent.parent / "deploy" / "topics.toml"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as declared: logical key, physical name, layout and configs."""

    key: str
    name: str
    description: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@cache
def load_topic_specs(path: Path = TOPICS_FILE, prefix: str | None = None) -> dict[str, TopicSpec]:
    """Parse the topics file; names get ``prefix`` (default ``$KAFKA_TOPIC_PREFIX``)."""
    if prefix is None:
        prefix = load(KafkaSettings).topic_prefix
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read topics file {path}: {exc}") from exc
    specs: dict[str, TopicSpec] = {}
    for key, entry in raw.get("topics", {}).items():
        try:
            specs[key] = TopicSpec(
                key=key,
                name=prefix + str(entry["name"]),
                description=str(entry.get("description", "")),
                partitions=int(entry["partitions"]),
                replication_factor=int(entry["replication_factor"]),
                config={str(k): str(v) for k, v in entry.get("config", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"topics file {path}: topic {key!r} is invalid: {exc!r}") from exc
    return specs


def topic_name(key: str) -> str:
    """Physical name of a declared topic: ``chunks``, ``events``, ``usage``, ``dead_letter``..."""
    specs = load_topic_specs()
    if key not in specs:
        raise ConfigError(f"no topic {key!r} in {TOPICS_FILE}; declared: {sorted(specs)}")
    return specs[key].name
