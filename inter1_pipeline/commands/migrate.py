"""``inter1-pipeline migrate``: apply the ClickHouse DDL migrations."""

from __future__ import annotations

import click

from runtime.redact import redact_url
from sinks.clickhouse_client import clickhouse_url, make_client
from sinks.migrations import applied_versions, discover
from sinks.migrations import migrate as apply_migrations

__all__ = ["migrate"]


@click.command()
@click.option("--status", is_flag=True, help="List migrations and their state; change nothing.")
@click.option(
    "--cluster-ddl",
    is_flag=True,
    help="Print the cluster variant (ON CLUSTER, Replicated*, Distributed); apply nothing.",
)
def migrate(status: bool, cluster_ddl: bool) -> None:
    """Apply pending ClickHouse migrations (idempotent) to CLICKHOUSE_URL.

    Default CLICKHOUSE_URL is the embedded engine under .stack/clickhouse.
    """
    if cluster_ddl:
        from sinks.cluster_ddl import cluster_ddl as render

        click.echo(render(), nl=False)
        return
    url = clickhouse_url()
    client = make_client(url)
    try:
        if status:
            applied = applied_versions(client)
            for migration in discover():
                state = "applied" if migration.version in applied else "pending"
                click.echo(f"{migration.version:04d} {migration.name:<32} {state}")
            return
        done = apply_migrations(client)
        for migration in done:
            click.echo(f"applied {migration.version:04d} {migration.name}")
        click.echo(f"{redact_url(url)}: {len(done)} migration(s) applied, schema up to date")
    finally:
        client.close()
