"""``inter1-pipeline stack``: fetch, start, stop and inspect the local Kafka broker."""

from __future__ import annotations

import asyncio
import time

import click

from deploy.exceptions import BrokerNotRunningError
from deploy.kafka_broker import LocalBroker
from deploy.kafka_jars import ensure_jars
from runtime.settings import StackSettings, load

__all__ = ["stack"]


def _broker() -> LocalBroker:
    return LocalBroker.from_settings(load(StackSettings))


@click.group()
def stack() -> None:
    """The local single-node Apache Kafka broker (KRaft), with its state in $PIPELINE_STATE_DIR.

    Production uses any Kafka cluster instead: set KAFKA_BOOTSTRAP_SERVERS.
    """


@stack.command()
def fetch() -> None:
    """Fetch the broker jars from Maven Central into the state directory (idempotent)."""
    settings = load(StackSettings)
    cache = ensure_jars(settings.state_dir)
    verb = f"fetched in {cache.elapsed_s:.1f} s" if cache.fetched else "already up to date"
    click.echo(f"kafka jars: {cache.jar_count} jars in {cache.directory} ({verb})")


@stack.command()
def up() -> None:
    """Start the broker (a no-op when it runs) and print its bootstrap address."""
    broker = _broker()
    before = broker.status()
    started = time.monotonic()
    address = asyncio.run(broker.start())
    if before.running and before.bootstrap == address:
        click.echo(f"kafka broker already running at {address} (pid {before.pid})")
    else:
        pid = broker.status().pid
        elapsed = time.monotonic() - started
        click.echo(f"kafka broker running at {address} (pid {pid}, ready in {elapsed:.1f} s)")
    click.echo(f"  export KAFKA_BOOTSTRAP_SERVERS={address}")


@stack.command()
def down() -> None:
    """Stop the broker (SIGTERM, then SIGKILL after a bound); a no-op when it is not running."""
    broker = _broker()
    pid = broker.status().pid
    if asyncio.run(broker.stop()):
        click.echo(f"kafka broker stopped (pid {pid})")
    else:
        click.echo("kafka broker was not running")


@stack.command()
def status() -> None:
    """Print the bootstrap address; exit 69 when the broker is not running."""
    settings = load(StackSettings)
    current = LocalBroker.from_settings(settings).status()
    if not (current.running and current.bootstrap):
        raise BrokerNotRunningError(
            f"the local Kafka broker is not running (state dir {settings.state_dir}); "
            "start it with `inter1-pipeline stack up`"
        )
    click.echo(current.bootstrap)
