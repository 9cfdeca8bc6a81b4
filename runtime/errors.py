"""The project's root error and the classification every retry decision reads.

Retry logic reads :attr:`PipelineError.retriable`, never the message text.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CommitError",
    "ConfigError",
    "ExitCode",
    "FlushError",
    "PipelineError",
    "ServiceUnavailableError",
]


class ExitCode:
    """Process exit codes with a meaning (the BSD ``sysexits.h`` values where one fits)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    DATA_ERROR = 65  # input data was bad (corrupt media, undecodable record)
    NO_INPUT = 66  # an input file or source did not exist or could not be opened
    UNAVAILABLE = 69  # a service (Kafka, ClickHouse, Inter-1) could not be reached
    SOFTWARE = 70  # internal error: a bug
    CONFIG = 78  # configuration was invalid
    INTERRUPTED = 130  # stopped by Ctrl-C / SIGINT


class PipelineError(Exception):
    """Root of every error this project raises on purpose.

    Attributes:
        retriable: whether repeating the same operation later may succeed.
        exit_code: what a CLI command exits with when this error ends it.
    """

    retriable: ClassVar[bool] = False
    exit_code: ClassVar[int] = ExitCode.FAILURE


class ConfigError(PipelineError):
    """A setting is missing or invalid; the message names it and says how to fix it."""

    exit_code = ExitCode.CONFIG


class ServiceUnavailableError(PipelineError):
    """A service the command needs could not be reached; trying again later may work."""

    retriable = True
    exit_code = ExitCode.UNAVAILABLE


class FlushError(PipelineError):
    """A consume loop's handler could not make its work durable; no offset was committed.

    The loop stops: the records are redelivered to whoever owns their partitions next.
    ``__cause__`` holds the handler's own error.
    """

    retriable = True


class CommitError(PipelineError):
    """Kafka refused an offset commit after the work was flushed (e.g. the group rebalanced).

    The work is durable; its records are redelivered and must be absorbed downstream by
    idempotent identity.
    """

    retriable = True
