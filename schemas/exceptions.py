"""Errors raised by the schema catalog, the codec and the registry client.

Callers classify them by type and by the ``retriable`` attribute, never by message text.
A record that raises a non-retriable :class:`CodecError` on decode belongs on the
dead-letter topic; a :class:`RegistryUnavailableError` is worth retrying later.
"""

from __future__ import annotations

from runtime.errors import ExitCode, PipelineError

__all__ = [
    "CodecError",
    "CorruptRecordError",
    "IncompatibleSchemaError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryUnavailableError",
    "SchemaCatalogError",
    "SchemaValidationError",
    "TopicRequiredError",
    "TruncatedRecordError",
    "UnknownFingerprintError",
    "UnknownRecordError",
    "UnknownSchemaIdError",
    "WrongMagicError",
]


class CodecError(PipelineError):
    """Root of the codec's errors: a record could not be encoded or decoded."""

    retriable = False
    exit_code = ExitCode.DATA_ERROR


class WrongMagicError(CodecError):
    """The bytes do not start with a known framing (single-object 0xC3 0x01, Confluent 0x00)."""


class TruncatedRecordError(CodecError):
    """The bytes end before the header or the record body is complete."""


class CorruptRecordError(CodecError):
    """The body cannot be read with the writer schema its header names."""


class UnknownFingerprintError(CodecError):
    """A single-object header names a writer schema that no kept version has."""


class UnknownSchemaIdError(CodecError):
    """A Confluent header names a schema id the registry does not have."""


class UnknownRecordError(CodecError):
    """A record name (or a registry schema's full name) that the catalog does not hold."""


class SchemaValidationError(CodecError):
    """A datum does not fit its schema; the message names the field.

    Attributes:
        field: dotted path of the offending field inside the record ("" when unknown).
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class TopicRequiredError(CodecError):
    """The Confluent framing needs the topic to name the subject, and none was given."""


class SchemaCatalogError(CodecError):
    """The ``.avsc`` files are missing, unreadable, or break the catalog's layout rules."""

    exit_code = ExitCode.CONFIG


class IncompatibleSchemaError(CodecError):
    """A kept schema version cannot be read by the current one (or the registry refused it)."""

    exit_code = ExitCode.FAILURE


class RegistryError(CodecError):
    """The schema registry answered with an error that repeating will not fix (4xx).

    Attributes:
        status: HTTP status (0 when no response arrived).
        error_code: the registry's ``error_code`` (e.g. 40401), 0 when absent.
    """

    def __init__(self, message: str, *, status: int = 0, error_code: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class RegistryNotFoundError(RegistryError):
    """The registry has no such subject, version or schema id (HTTP 404)."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached or failed (5xx, timeout); retry later."""

    retriable = True
    exit_code = ExitCode.UNAVAILABLE
