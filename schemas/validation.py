"""Turning a failed ``fastavro`` write into a SchemaValidationError that names the field."""

from __future__ import annotations

from typing import Any

from fastavro.validation import ValidationError, validate

from schemas.exceptions import SchemaValidationError

__all__ = ["ENCODE_ERRORS", "validation_error"]

ENCODE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, OverflowError)
"""What ``fastavro.schemaless_writer`` raises for a datum that does not fit its schema."""


def validation_error(
    record_name: str, parsed: dict[str, Any], datum: Any, exc: Exception
) -> SchemaValidationError:
    """The error for a datum ``schemaless_writer`` refused with ``exc``, naming the field.

    Runs fastavro's validator (only on this failure path) to find the offending field.
    """
    try:
        validate(datum, parsed, raise_errors=True)
    except ValidationError as verr:
        first = verr.errors[0]
        prefix = f"{parsed['name']}."
        field = str(first.field)
        field = field[len(prefix) :] if field.startswith(prefix) else field
        got = repr(first.datum)
        got = got if len(got) <= 60 else got[:57] + "..."
        if isinstance(first.schema, str):
            expected = first.schema
        elif isinstance(first.schema, list):
            expected = "one of the union's branches (a record branch as a (fullname, dict) tuple)"
        else:
            expected = "the schema's type"
        return SchemaValidationError(
            f"{record_name} field {field!r} does not fit the schema: got {got} "
            f"({type(first.datum).__name__}), expected {expected}; fix the producer of this "
            "record",
            field=field,
        )
    except ENCODE_ERRORS:
        pass
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    return SchemaValidationError(
        f"{record_name} datum does not fit the schema: {detail}; fix the producer of this record"
    )
