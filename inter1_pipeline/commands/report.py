"""``inter1-pipeline report``: a session's self-contained HTML report with plots."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["report"]


@click.command()
@click.argument("session_id")
@click.option(
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="HTML file to write; a PNG of the plots is written beside it (same name, .png).",
)
def report(session_id: str, output: Path) -> None:
    """Render SESSION_ID's engagement, signals, quality, coverage and cues as HTML + PNG.

    Works while `inter1-pipeline sink` holds the embedded store (through it).
    """
    from sinks.report import load_report_data, render_report
    from sinks.warehouse import open_warehouse

    warehouse = open_warehouse()
    try:
        data = load_report_data(warehouse, session_id)
    finally:
        warehouse.close()
    html_path, png_path = render_report(data, output)
    click.echo(f"wrote {html_path} and {png_path}")
