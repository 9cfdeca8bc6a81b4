"""``inter1-pipeline query``: run SQL against ClickHouse and print the result."""

from __future__ import annotations

import sys

import click
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.clickhouse_client import make_client
from sinks.exceptions import ClickHouseQueryError

__all__ = ["query"]

_FORMATS = {
    "table": "PrettyCompactMonoBlock",
    "tsv": "TabSeparatedWithNames",
    "csv": "CSVWithNames",
    "json": "JSONEachRow",
}


@click.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(_FORMATS)),
    default="table",
    show_default=True,
    help="Output format.",
)
def query(sql: str, fmt: str) -> None:
    """Run SQL (or `-` to read it from stdin) against CLICKHOUSE_URL and print the rows."""
    if sql == "-":
        sql = sys.stdin.read()
    client = make_client()
    try:
        output = client.raw_query(sql, fmt=_FORMATS[fmt])
    except ClickHouseError as exc:
        raise ClickHouseQueryError(" ".join(str(exc).split())[:500]) from None
    finally:
        client.close()
    click.echo(output.decode("utf-8"), nl=False)
