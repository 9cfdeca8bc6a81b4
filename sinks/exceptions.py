"""Errors raised by the ClickHouse side, classified for retry decisions.

:data:`CLICKHOUSE_ERROR_CLASSES` maps ClickHouse server error codes (the ``code`` attribute
clickhouse-connect sets on ``DatabaseError``) to these classes; :func:`classify` reads that
table and the exception type, never the message text.
"""

from __future__ import annotations

from collections.abc import Mapping

from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    OperationalError,
    ProgrammingError,
)

from runtime.errors import ConfigError, ExitCode, PipelineError, ServiceUnavailableError

__all__ = [
    "CLICKHOUSE_ERROR_CLASSES",
    "ClickHouseBadDataError",
    "ClickHouseBusyError",
    "ClickHouseConfigError",
    "ClickHouseQueryError",
    "ClickHouseReadOnlyError",
    "ClickHouseUnavailableError",
    "MigrationError",
    "SchemaMismatchError",
    "classify",
]


class ClickHouseConfigError(ConfigError):
    """CLICKHOUSE_URL is malformed or names an unsupported scheme."""


class ClickHouseUnavailableError(ServiceUnavailableError):
    """The ClickHouse server (or embedded data directory) could not be reached or opened."""


class ClickHouseBusyError(ServiceUnavailableError):
    """ClickHouse refused the work for now (too many parts, memory, timeouts): retry later."""


class ClickHouseQueryError(PipelineError):
    """ClickHouse rejected a statement (syntax, unknown table, type mismatch)."""

    exit_code = ExitCode.DATA_ERROR


class ClickHouseBadDataError(ClickHouseQueryError):
    """ClickHouse could not read inserted data (a damaged Avro record, a refused row).

    The sink then finds the bad records itself (fastavro), dead-letters them and inserts
    the rest; retrying the same bytes cannot succeed.
    """


class ClickHouseReadOnlyError(ClickHouseQueryError):
    """A statement that writes was sent where only reads are allowed (the sink's endpoint)."""


class SchemaMismatchError(ClickHouseQueryError):
    """A table the sink writes lacks a column (or the table); the message names both.

    Run ``inter1-pipeline migrate`` (or fix the cluster DDL) and restart the sink.
    """


class MigrationError(PipelineError):
    """A migration failed, or an applied migration's file was edited afterwards."""


CLICKHOUSE_ERROR_CLASSES: Mapping[int, type[PipelineError]] = {
    6: ClickHouseBadDataError,  # CANNOT_PARSE_TEXT
    27: ClickHouseBadDataError,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33: ClickHouseBadDataError,  # CANNOT_READ_ALL_DATA
    117: ClickHouseBadDataError,  # INCORRECT_DATA
    469: ClickHouseBadDataError,  # VIOLATED_CONSTRAINT (event_landing: a misread row)
    1001: ClickHouseBadDataError,  # STD_EXCEPTION (the Avro reader: "Cannot have negative length")
    16: SchemaMismatchError,  # NO_SUCH_COLUMN_IN_TABLE
    47: SchemaMismatchError,  # UNKNOWN_IDENTIFIER
    60: SchemaMismatchError,  # UNKNOWN_TABLE
    53: SchemaMismatchError,  # TYPE_MISMATCH
    164: ClickHouseReadOnlyError,  # READONLY
    159: ClickHouseBusyError,  # TIMEOUT_EXCEEDED
    202: ClickHouseBusyError,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209: ClickHouseUnavailableError,  # SOCKET_TIMEOUT
    210: ClickHouseUnavailableError,  # NETWORK_ERROR
    241: ClickHouseBusyError,  # MEMORY_LIMIT_EXCEEDED
    242: ClickHouseBusyError,  # TABLE_IS_READ_ONLY (replica lost its Keeper session)
    252: ClickHouseBusyError,  # TOO_MANY_PARTS
    319: ClickHouseBusyError,  # UNKNOWN_STATUS_OF_INSERT
    395: ClickHouseBusyError,  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a guard refused the insert)
    999: ClickHouseBusyError,  # KEEPER_EXCEPTION
}
"""ClickHouse error code -> error class. Codes not listed are :class:`ClickHouseQueryError`."""


def classify(exc: BaseException, what: str) -> PipelineError:
    """The project error for a clickhouse-connect exception; ``what`` says what was tried."""
    reason = " ".join(str(exc).split())[:300]
    if isinstance(exc, OperationalError | OSError):
        return ClickHouseUnavailableError(f"{what}: ClickHouse unreachable: {reason}")
    if isinstance(exc, ProgrammingError):
        return SchemaMismatchError(f"{what}: {reason}")
    if isinstance(exc, DatabaseError):
        code = getattr(exc, "code", None)
        kind = CLICKHOUSE_ERROR_CLASSES.get(code, ClickHouseQueryError) if code else None
        return (kind or ClickHouseQueryError)(f"{what}: {reason}")
    return ClickHouseQueryError(f"{what}: {type(exc).__name__}: {reason}")
