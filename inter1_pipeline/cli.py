"""Root of the ``inter1-pipeline`` command.

Subcommands are imported only when invoked, so ``--help`` stays fast and a command's
heavy dependencies (PyAV, chDB) load only for the commands that need them. Settings
(pydantic) and logging (structlog) load only when a command runs, not for a help screen.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
from typing import Any

import click

from runtime.errors import ExitCode, PipelineError

__all__ = ["main"]

# name -> one-line help shown in the listing; the command object is
# inter1_pipeline.commands.<name with - as _>.<same>.
_COMMANDS: dict[str, str] = {
    "stack": "Start, stop or inspect the local Kafka broker.",
    "topics": "Create or update the declared Kafka topics.",
    "schemas": "Check the Avro schemas for compatibility.",
    "produce": "Chunk video sources and publish them to Kafka.",
    "simulate": "Serve the local Inter-1 Stream API simulator.",
    "session-worker": "Relay video sessions to Inter-1 and publish their events.",
    "cues": "Turn the event stream into live cues and session state (faust).",
    "migrate": "Apply the ClickHouse DDL migrations.",
    "query": "Run a SQL query against ClickHouse.",
    "sink": "Insert events, usage, cues and sessions into ClickHouse, once.",
    "reconcile": "Compare expected billable seconds with the vendor's usage.",
    "report": "Render a session's HTML report with plots.",
    "demo": "Run the pipeline end to end on the embedded defaults.",
    "run": "Run the whole pipeline locally, supervised, until Ctrl-C.",
}


_SUBCOMMAND_ARGS = "inter1_pipeline.subcommand_args"


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        attr = cmd_name.replace("-", "_")
        module_name = f"inter1_pipeline.commands.{attr}"
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}.{attr} is not a click command")
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[_SUBCOMMAND_ARGS] = rest  # read by the group callback, before they are parsed
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inter1-pipeline")
def cli() -> None:
    """Inter-1 streaming pipeline: video chunks on Kafka -> Inter-1 sessions -> Avro events
    -> ClickHouse.

    Settings come from the environment (and a .env file); see the README for the list.
    """
    ctx = click.get_current_context()
    if _asks_for_help(ctx.meta.get(_SUBCOMMAND_ARGS, []), ctx.help_option_names):
        return  # the subcommand prints its help and exits: nothing to configure
    from runtime.logs import configure_logging
    from runtime.settings import LogSettings, load, validate_all

    settings = load(LogSettings)
    configure_logging(settings.level, settings.format)
    validate_all(_settings_groups(ctx.invoked_subcommand))


def _settings_groups(command: str | None) -> tuple[type[Any], ...]:
    """The settings groups a command reads (validated at its start); all for the others.

    ``produce`` reads only these, and a file ingest is short enough that building the
    other groups' validators would be a noticeable part of it.
    """
    from runtime import settings

    if command == "produce":
        return (
            settings.LogSettings,
            settings.KafkaSettings,
            settings.SchemaSettings,
            settings.StackSettings,
            settings.ProducerSettings,
        )
    return settings.ALL_GROUPS


def _asks_for_help(args: list[str], help_names: list[str]) -> bool:
    """Whether the subcommand's own arguments (before any ``--``) ask for its help."""
    for arg in args:
        if arg == "--":
            return False
        if arg in help_names:
            return True
    return False


def _skip_exit_collection() -> None:
    """At interpreter exit, leave the objects that still exist to the OS instead of a last
    full garbage collection over all of them (~0.03 s of a ``produce`` run's CPU). Python
    does not promise finalizers at exit anyway; whatever must be closed is closed first."""
    gc.freeze()


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; pipeline errors become one line and a meaningful exit code."""
    atexit.unregister(_skip_exit_collection)  # registered once, however often main runs
    atexit.register(_skip_exit_collection)
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except PipelineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
