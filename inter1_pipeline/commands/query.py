"""``inter1-pipeline query``: run SQL against ClickHouse and print the result.

Against the embedded store held by a running ``sink``, the query goes through the sink's
read-only endpoint; otherwise straight to ``CLICKHOUSE_URL``.
"""

from __future__ import annotations

import sys

import click

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
    help="Output format (json: one JSON object per row).",
)
def query(sql: str, fmt: str) -> None:
    """Run SQL (or `-` to read it from stdin) against CLICKHOUSE_URL and print the rows.

    Works while `inter1-pipeline sink` holds the embedded store (read-only, through it).
    """
    from sinks.warehouse import open_warehouse

    if sql == "-":
        sql = sys.stdin.read()
    warehouse = open_warehouse()
    try:
        output = warehouse.raw(sql, _FORMATS[fmt])
    finally:
        warehouse.close()
    click.echo(output.decode("utf-8"), nl=False)
