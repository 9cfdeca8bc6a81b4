"""``topics ensure`` against the real broker: create, no-op, config drift, partitions, clamping."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.topics import TopicOutcome, clamp_to_cluster, ensure_topics, topic_layouts
from runtime.kafka import make_admin
from runtime.topics import TopicSpec, load_topic_specs

pytestmark = pytest.mark.kafka

CLI = str(Path(sys.executable).with_name("inter1-pipeline"))
CLAMPED = (
    "replication factor 3 -> 1 (the cluster has 1 broker)",
    "min.insync.replicas 2 -> 1 (at most the replication)",
)


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = make_admin()
    await client.start()
    yield client
    await client.close()


async def _configs(admin: AIOKafkaAdminClient, name: str, *keys: str) -> dict[str, str]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    entries = responses[0].to_object()["resources"][0]["config_entries"]
    return {e["config_names"]: e["config_value"] for e in entries if e["config_names"] in keys}


def test_clamp_to_cluster() -> None:
    spec = TopicSpec("k", "n", "", 6, 3, {"min.insync.replicas": "2", "retention.ms": "1"})
    clamped, notes = clamp_to_cluster(spec, brokers=1)
    assert clamped == TopicSpec(
        "k", "n", "", 6, 1, {"min.insync.replicas": "1", "retention.ms": "1"}
    )
    assert notes == CLAMPED
    assert clamp_to_cluster(spec, brokers=5) == (spec, ())
    two, notes = clamp_to_cluster(spec, brokers=2)
    assert (two.replication_factor, two.config["min.insync.replicas"]) == (2, "2")
    assert notes == ("replication factor 3 -> 2 (the cluster has 2 brokers)",)


async def test_ensure_creates_then_reports_unchanged(admin: AIOKafkaAdminClient) -> None:
    specs = load_topic_specs(prefix=_prefix())
    first = await ensure_topics(admin, specs.values())
    expected_created = [
        TopicOutcome(
            spec.name, "created", (f"{spec.partitions} partitions, replication factor 1",), CLAMPED
        )
        for spec in specs.values()
    ]
    assert first == expected_created
    layouts = await topic_layouts(admin, [spec.name for spec in specs.values()])
    assert {name: (lay.partitions, lay.replication_factor) for name, lay in layouts.items()} == {
        specs["chunks"].name: (12, 1),
        specs["events"].name: (12, 1),
        specs["usage"].name: (6, 1),
        specs["dead_letter"].name: (3, 1),
        specs["session_state"].name: (12, 1),
        specs["cues"].name: (12, 1),
    }
    chunks = specs["chunks"].name
    assert await _configs(
        admin, chunks, "min.insync.replicas", "retention.ms", "max.message.bytes", "cleanup.policy"
    ) == {
        "min.insync.replicas": "1",
        "retention.ms": "86400000",
        "max.message.bytes": "9437184",
        "cleanup.policy": "delete",
    }
    assert (await _configs(admin, specs["session_state"].name, "cleanup.policy")) == {
        "cleanup.policy": "compact"
    }

    second = await ensure_topics(admin, specs.values())
    assert second == [TopicOutcome(spec.name, "unchanged", (), CLAMPED) for spec in specs.values()]


async def test_ensure_updates_changed_and_undeclared_configs(admin: AIOKafkaAdminClient) -> None:
    spec = load_topic_specs(prefix=_prefix())["usage"]
    await ensure_topics(admin, [spec])
    # Someone adds an override by hand; the file changes retention.
    await admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC,
                spec.name,
                {**spec.config, "min.insync.replicas": "1", "segment.ms": "3600000"},
            )
        ]
    )
    for _attempt in range(600):  # the broker applies the change from its metadata log
        if await _configs(admin, spec.name, "segment.ms") == {"segment.ms": "3600000"}:
            break
        await asyncio.sleep(0.05)
    changed = dataclasses.replace(spec, config={**spec.config, "retention.ms": "3600000"})
    [outcome] = await ensure_topics(admin, [changed])
    assert outcome == TopicOutcome(
        spec.name,
        "updated",
        ("retention.ms 2592000000 -> 3600000", "segment.ms 3600000 -> default (not declared)"),
        CLAMPED,
    )
    assert await _configs(
        admin, spec.name, "retention.ms", "segment.ms", "min.insync.replicas"
    ) == {
        "retention.ms": "3600000",
        "segment.ms": "604800000",
        "min.insync.replicas": "1",
    }
    [again] = await ensure_topics(admin, [changed])
    assert again == TopicOutcome(spec.name, "unchanged", (), CLAMPED)


async def test_partitions_grow_but_never_shrink(admin: AIOKafkaAdminClient) -> None:
    spec = load_topic_specs(prefix=_prefix())["dead_letter"]
    await ensure_topics(admin, [spec])
    [grown] = await ensure_topics(admin, [dataclasses.replace(spec, partitions=5)])
    assert grown == TopicOutcome(spec.name, "updated", ("partitions 3 -> 5",), CLAMPED)
    [kept] = await ensure_topics(admin, [dataclasses.replace(spec, partitions=2)])
    assert kept == TopicOutcome(
        spec.name,
        "unchanged",
        (),
        (*CLAMPED, "has 5 partitions, declared 2: partitions never shrink; left as is"),
    )
    assert (await topic_layouts(admin, [spec.name]))[spec.name].partitions == 5


async def test_dry_run_changes_nothing(admin: AIOKafkaAdminClient) -> None:
    spec = load_topic_specs(prefix=_prefix())["events"]
    [outcome] = await ensure_topics(admin, [spec], apply=False)
    assert outcome == TopicOutcome(
        spec.name, "created", ("12 partitions, replication factor 1",), CLAMPED
    )
    assert spec.name not in await admin.list_topics()


def test_cli_ensure_twice(kafka_bootstrap: str) -> None:
    prefix = _prefix()
    env = {**os.environ, "KAFKA_TOPIC_PREFIX": prefix, "LOG_LEVEL": "ERROR"}
    notes = "".join(f"  note: {note}\n" for note in CLAMPED)
    layout = {
        "video-chunks": 12,
        "events": 12,
        "usage": 6,
        "dead-letter": 3,
        "session-state": 12,
        "cues": 12,
    }

    first = subprocess.run(
        [CLI, "topics", "ensure"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == "".join(
        f"{prefix}inter1.{name}: created ({count} partitions, replication factor 1)\n{notes}"
        for name, count in layout.items()
    )
    second = subprocess.run(
        [CLI, "topics", "ensure"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert (second.returncode, second.stderr) == (0, "")
    assert second.stdout == "".join(f"{prefix}inter1.{name}: unchanged\n{notes}" for name in layout)
    listed = subprocess.run(
        [CLI, "topics", "list"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert (listed.returncode, listed.stderr) == (0, "")
    keys = ["chunks", "events", "usage", "dead_letter", "session_state", "cues"]
    assert listed.stdout == "".join(
        f"{key:<14} {prefix + 'inter1.' + name:<28} declared {count} x 1; "
        f"on cluster: {count} partitions, replication 1\n"
        for key, (name, count) in zip(keys, layout.items(), strict=True)
    )


def test_cli_ensure_unreachable_cluster() -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "LOG_LEVEL": "ERROR"}
    done = subprocess.run(
        [CLI, "topics", "ensure"], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 69
    # aiokafka logs its own connection error first; the command's one-line error is last.
    last_line = done.stderr.splitlines()[-1]
    # The project's own sentence is exact; aiokafka's error text after it varies by version.
    assert last_line.startswith("error: Kafka at 127.0.0.1:1 is not reachable: ")
    assert "KafkaConnectionError" in last_line
    assert "Unable to bootstrap" in last_line
