"""Topics as code: make a cluster's topics match ``deploy/topics.toml``, idempotently.

Missing topics are created; an existing topic's dynamic configs are set to exactly the
declared ones (an undeclared override is removed); partitions only grow. Replication
factor and ``min.insync.replicas`` are clamped to the cluster's broker count, so the
same file serves a 1-node local stack and a production cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from deploy.exceptions import TopicProvisionError
from runtime.logs import get_logger
from runtime.topics import TopicSpec

__all__ = [
    "TopicLayout",
    "TopicOutcome",
    "clamp_to_cluster",
    "ensure_topics",
    "topic_layouts",
    "wait_for_topics",
]

_MIN_ISR = "min.insync.replicas"
_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs config_source: set on this topic
_TIMEOUT_MS = 30000
_WAIT_S = 30.0


def _log() -> structlog.stdlib.BoundLogger:
    # Looked up per call: a logger bound at import time would miss configure_logging().
    return get_logger("deploy.topics")


Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class TopicOutcome:
    """What ``ensure_topics`` did to one topic (or would do, with ``apply=False``)."""

    name: str
    action: Action
    changes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TopicLayout:
    """How an existing topic is laid out on the cluster."""

    partitions: int
    replication_factor: int


def clamp_to_cluster(spec: TopicSpec, brokers: int) -> tuple[TopicSpec, tuple[str, ...]]:
    """``spec`` with replication factor and ``min.insync.replicas`` at most ``brokers``.

    Returns the clamped spec and a note per clamp (empty when nothing changed).
    """
    replication = min(spec.replication_factor, max(brokers, 1))
    config = dict(spec.config)
    notes: list[str] = []
    if replication != spec.replication_factor:
        notes.append(
            f"replication factor {spec.replication_factor} -> {replication} "
            f"(the cluster has {brokers} broker{'s' if brokers != 1 else ''})"
        )
    if _MIN_ISR in config and int(config[_MIN_ISR]) > replication:
        notes.append(f"{_MIN_ISR} {config[_MIN_ISR]} -> {replication} (at most the replication)")
        config[_MIN_ISR] = str(replication)
    return dataclasses.replace(spec, replication_factor=replication, config=config), tuple(notes)


async def topic_layouts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicLayout]:
    """Partition count and replication factor of each of ``names`` that exists.

    Lists the cluster's topics first: describing a missing topic by name would let a
    cluster with ``auto.create.topics.enable`` create it with default settings.
    """
    existing = set(await admin.list_topics())
    present = [name for name in names if name in existing]
    if not present:
        return {}
    layouts: dict[str, TopicLayout] = {}
    for topic in await admin.describe_topics(present):
        partitions = topic["partitions"]
        led = all(p["error_code"] == 0 and p["leader"] >= 0 for p in partitions)
        if topic["error_code"] == 0 and partitions and led:
            replicas = len(topic["partitions"][0]["replicas"])
            layouts[topic["topic"]] = TopicLayout(len(topic["partitions"]), replicas)
    return layouts


def _raise_for(code: int, message: str | None, what: str) -> None:
    if code:
        error = for_code(code)
        raise TopicProvisionError(f"{what}: {error.__name__}: {message or error.description}")


async def _current_configs(
    admin: AIOKafkaAdminClient, name: str
) -> tuple[dict[str, str], set[str]]:
    """All config values of topic ``name`` and the keys overridden on the topic itself."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    resource = responses[0].to_object()["resources"][0]
    _raise_for(resource["error_code"], resource["error_message"], f"describing configs of {name}")
    values: dict[str, str] = {}
    overridden: set[str] = set()
    for entry in resource["config_entries"]:
        values[entry["config_names"]] = entry["config_value"] or ""
        if entry["config_source"] == _DYNAMIC_TOPIC_CONFIG:
            overridden.add(entry["config_names"])
    return values, overridden


def _config_changes(want: dict[str, str], have: dict[str, str], overridden: set[str]) -> list[str]:
    changes = [
        f"{key} {have.get(key, '(unset)')} -> {value}"
        for key, value in sorted(want.items())
        if have.get(key) != value
    ]
    changes += [
        f"{key} {have.get(key, '')} -> default (not declared)"
        for key in sorted(overridden - set(want))
    ]
    return changes


async def _wait_for_configs(
    admin: AIOKafkaAdminClient, spec: TopicSpec, timeout_s: float = _WAIT_S
) -> None:
    """Wait until the broker describes ``spec.name`` with exactly the declared configs.

    A broker applies an accepted config change from the metadata log a moment later;
    waiting keeps a second ``ensure`` right after this one from seeing the old values.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        have, overridden = await _current_configs(admin, spec.name)
        pending = _config_changes(spec.config, have, overridden)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicProvisionError(
                f"configs of {spec.name} still differ {timeout_s:g} s after the change: {pending}"
            )
        await asyncio.sleep(0.1)


async def _create(admin: AIOKafkaAdminClient, spec: TopicSpec) -> bool:
    """Create ``spec``; False when it already exists (created meanwhile by someone else)."""
    new_topic = NewTopic(spec.name, spec.partitions, spec.replication_factor, None, spec.config)
    response: Any = await admin.create_topics([new_topic], timeout_ms=_TIMEOUT_MS)
    for topic, code, message in response.topic_errors:
        if for_code(code) is TopicAlreadyExistsError:
            return False
        _raise_for(code, message, f"creating topic {topic}")
    return True


async def wait_for_topics(
    admin: AIOKafkaAdminClient, partitions: dict[str, int], timeout_s: float = _WAIT_S
) -> None:
    """Wait until each topic is in the cluster's metadata with its partitions led.

    A create or partition change returns before every broker's metadata shows it; a
    producer started in between would fail, so ``ensure_topics`` waits here.

    Raises:
        TopicProvisionError: the topics did not appear within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        layouts = await topic_layouts(admin, list(partitions))
        missing = sorted(
            name
            for name, count in partitions.items()
            if name not in layouts or layouts[name].partitions < count
        )
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TopicProvisionError(
                f"topics {missing} did not appear in the cluster metadata within {timeout_s:g} s"
            )
        await asyncio.sleep(0.1)


async def _update(
    admin: AIOKafkaAdminClient, spec: TopicSpec, layout: TopicLayout, apply: bool
) -> TopicOutcome:
    notes: list[str] = []
    changes: list[str] = []
    if layout.replication_factor != spec.replication_factor:
        notes.append(
            f"replication factor is {layout.replication_factor}, declared "
            f"{spec.replication_factor}: changing it needs a partition reassignment; left as is"
        )
    if spec.partitions < layout.partitions:
        notes.append(
            f"has {layout.partitions} partitions, declared {spec.partitions}: "
            "partitions never shrink; left as is"
        )
    elif spec.partitions > layout.partitions:
        changes.append(f"partitions {layout.partitions} -> {spec.partitions}")
        if apply:
            try:
                await admin.create_partitions(
                    {spec.name: NewPartitions(spec.partitions)}, timeout_ms=_TIMEOUT_MS
                )
            except KafkaError as exc:
                raise TopicProvisionError(f"adding partitions to {spec.name}: {exc!r}") from exc
    have, overridden = await _current_configs(admin, spec.name)
    config_changes = _config_changes(spec.config, have, overridden)
    if config_changes and apply:
        # AlterConfigs (not incremental) sets the topic's overrides to exactly this set.
        responses = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.name, dict(spec.config))]
        )
        for response in responses:
            for code, message, _type, _name in response.resources:
                _raise_for(code, message, f"altering configs of {spec.name}")
        await _wait_for_configs(admin, spec)
    changes += config_changes
    action: Action = "updated" if changes else "unchanged"
    return TopicOutcome(spec.name, action, tuple(changes), tuple(notes))


async def ensure_topics(
    admin: AIOKafkaAdminClient, specs: Iterable[TopicSpec], *, apply: bool = True
) -> list[TopicOutcome]:
    """Create or update each declared topic on the cluster ``admin`` talks to.

    Args:
        admin: a started admin client.
        specs: the declared topics (``runtime.topics.load_topic_specs().values()``).
        apply: False reports what would change without changing anything.

    Raises:
        TopicProvisionError: the cluster refused a create, config change or partition change.
    """
    cluster = await admin.describe_cluster()
    brokers = len(cluster["brokers"])
    wanted = list(specs)
    layouts = await topic_layouts(admin, [spec.name for spec in wanted])
    outcomes: list[TopicOutcome] = []
    for declared in wanted:
        spec, clamp_notes = clamp_to_cluster(declared, brokers)
        if clamp_notes:
            # Expected on the single-broker local stack; a real cluster rarely needs it.
            _log().info(
                "clamped topic replication to the cluster size",
                topic=spec.name,
                brokers=brokers,
                notes=list(clamp_notes),
            )
        layout = layouts.get(spec.name)
        if layout is None and apply and not await _create(admin, spec):
            await wait_for_topics(admin, {spec.name: 1})  # created meanwhile: update it
            layout = (await topic_layouts(admin, [spec.name]))[spec.name]
        if layout is None:
            summary = f"{spec.partitions} partitions, replication factor {spec.replication_factor}"
            outcome = TopicOutcome(spec.name, "created", (summary,), clamp_notes)
        else:
            outcome = await _update(admin, spec, layout, apply)
            outcome = dataclasses.replace(outcome, notes=clamp_notes + outcome.notes)
        if apply and outcome.action != "unchanged":
            await wait_for_topics(
                admin, {spec.name: max(spec.partitions, layout.partitions if layout else 0)}
            )
        _log().info(
            "topic ensured" if apply else "topic checked",
            topic=spec.name,
            action=outcome.action,
            changes=list(outcome.changes),
        )
        outcomes.append(outcome)
    return outcomes
