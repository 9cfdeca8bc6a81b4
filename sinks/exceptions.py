"""Errors raised by the ClickHouse side, classified for retry decisions."""

from __future__ import annotations

from runtime.errors import ConfigError, ExitCode, PipelineError, ServiceUnavailableError

__all__ = [
    "ClickHouseConfigError",
    "ClickHouseQueryError",
    "ClickHouseUnavailableError",
    "MigrationError",
]


class ClickHouseConfigError(ConfigError):
    """CLICKHOUSE_URL is malformed or names an unsupported scheme."""


class ClickHouseUnavailableError(ServiceUnavailableError):
    """The ClickHouse server (or embedded data directory) could not be reached or opened."""


class ClickHouseQueryError(PipelineError):
    """ClickHouse rejected a statement (syntax, unknown table, type mismatch)."""

    exit_code = ExitCode.DATA_ERROR


class MigrationError(PipelineError):
    """A migration failed, or an applied migration's file was edited afterwards."""
