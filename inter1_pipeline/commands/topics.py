"""``inter1-pipeline topics``: make the cluster's topics match ``deploy/topics.toml``."""

from __future__ import annotations

import asyncio

import click
from aiokafka.errors import KafkaError

from deploy.topics import TopicOutcome, clamp_to_cluster, ensure_topics, topic_layouts
from inter1_pipeline.kafka_address import kafka_settings
from runtime.errors import ServiceUnavailableError
from runtime.kafka import make_admin
from runtime.settings import KafkaSettings
from runtime.topics import load_topic_specs

__all__ = ["topics"]


@click.group()
def topics() -> None:
    """The declared Kafka topics (deploy/topics.toml, names prefixed by $KAFKA_TOPIC_PREFIX)."""


def _unavailable(settings: KafkaSettings, exc: KafkaError) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"Kafka at {settings.bootstrap_servers} is not reachable: {exc!r}"
    )


async def _ensure(apply: bool) -> list[TopicOutcome]:
    settings = kafka_settings()
    admin = make_admin(settings)
    try:
        await admin.start()
        return await ensure_topics(admin, load_topic_specs().values(), apply=apply)
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc
    finally:
        await admin.close()


def _describe(outcome: TopicOutcome, apply: bool) -> str:
    verb = (
        outcome.action if apply or outcome.action == "unchanged" else f"would be {outcome.action}"
    )
    detail = f" ({'; '.join(outcome.changes)})" if outcome.changes else ""
    lines = [f"{outcome.name}: {verb}{detail}"]
    lines += [f"  note: {note}" for note in outcome.notes]
    return "\n".join(lines)


@topics.command()
@click.option("--dry-run", is_flag=True, help="Show what would change without changing anything.")
def ensure(dry_run: bool) -> None:
    """Create missing topics and update configs of existing ones (idempotent, any cluster).

    Replication factor and min.insync.replicas are clamped to the cluster's broker
    count; partitions only grow.
    """
    for outcome in asyncio.run(_ensure(apply=not dry_run)):
        click.echo(_describe(outcome, apply=not dry_run))


async def _list() -> list[str]:
    settings = kafka_settings()
    admin = make_admin(settings)
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        specs = list(load_topic_specs().values())
        layouts = await topic_layouts(admin, [spec.name for spec in specs])
    except KafkaError as exc:
        raise _unavailable(settings, exc) from exc
    finally:
        await admin.close()
    rows = []
    for declared in specs:
        spec, _notes = clamp_to_cluster(declared, brokers)
        layout = layouts.get(spec.name)
        state = (
            f"{layout.partitions} partitions, replication {layout.replication_factor}"
            if layout
            else "missing"
        )
        rows.append(
            f"{declared.key:<14} {spec.name:<28} declared {spec.partitions} x "
            f"{spec.replication_factor}; on cluster: {state}"
        )
    return rows


@topics.command("list")
def list_topics() -> None:
    """List the declared topics and their state on the cluster."""
    for row in asyncio.run(_list()):
        click.echo(row)
