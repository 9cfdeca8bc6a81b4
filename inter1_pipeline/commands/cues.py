"""``inter1-pipeline cues``: the live-cues app (faust-streaming) over the events topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

__all__ = ["cues"]


@click.command()
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rules file (TOML). Default: $PIPELINE_CUES_RULES, else the shipped default rules.",
)
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the JSON web server (default: $PIPELINE_CUES_WEB_PORT, 6066).",
)
@click.option("--check", is_flag=True, help="Validate the rules file, list its rules and exit.")
def cues(rules_path: Path | None, web_port: int | None, check: bool) -> None:
    """Turn each session's Inter-1 events into coaching cues and live session state.

    Consumes the events topic, publishes Cue records to the cues topic and serves
    GET /sessions/{id} and GET /sessions?active=1 as JSON. Stops cleanly on SIGTERM.
    """
    from runtime.settings import CuesSettings, LogSettings, load
    from workers.cues.rules import load_rules

    settings = load(CuesSettings)
    rules = load_rules(rules_path or settings.rules)
    if check:
        for rule in rules.rules:
            click.echo(f"{rule.name}: {rule.kind}, {rule.severity}")
        return
    from workers.cues.app import build_app, resolve_config, run_worker

    config = asyncio.run(resolve_config(settings, web_port))
    run_worker(build_app(config, rules), load(LogSettings).level)
