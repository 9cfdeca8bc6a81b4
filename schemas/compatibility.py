"""Schema evolution rules: can one kept version read data written by another?

The verdict comes from the Apache Avro library's ``ReaderWriterCompatibilityChecker``
(``avro.compatibility``, the reference implementation of the spec's resolution rules). This
module only walks records, unions, arrays and maps alongside it to name the offending field
(the library reports positional locations, and loses them inside unions).

Levels (``SCHEMA_REGISTRY_COMPATIBILITY``): BACKWARD checks that the current version reads
every kept older version. The codec reads any kept version into the current one, so in the
repository BACKWARD covers all kept versions (the same as BACKWARD_TRANSITIVE). FORWARD:
every kept older version reads the current one. FULL: both. NONE: no check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)

from schemas.catalog import RecordVersion, SchemaCatalog

__all__ = ["LEVELS", "Incompatibility", "check_catalog", "check_versions", "field_problems"]

LEVELS = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)


@dataclass(frozen=True)
class Incompatibility:
    """One field of one record that a reader version cannot resolve against a writer version."""

    record: str
    reader_version: int
    writer_version: int
    level: str
    field: str
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.record}: v{self.reader_version} cannot read data written by "
            f"v{self.writer_version} ({self.level}): field {self.field}: {self.problem}"
        )


def check_catalog(catalog: SchemaCatalog, level: str = "BACKWARD") -> list[Incompatibility]:
    """Every incompatibility between each record's current version and its kept versions."""
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}; one of {', '.join(LEVELS)}")
    problems: list[Incompatibility] = []
    for name in catalog.names():
        kept = catalog.versions(name)
        for older in kept[:-1]:
            problems.extend(check_versions(kept[-1], older, level))
    return problems


def check_versions(
    current: RecordVersion, older: RecordVersion, level: str
) -> list[Incompatibility]:
    """Incompatibilities between ``current`` and one ``older`` version at ``level``."""
    pairs: list[tuple[RecordVersion, RecordVersion, str]] = []
    if level.startswith(("BACKWARD", "FULL")):
        pairs.append((current, older, "BACKWARD"))
    if level.startswith(("FORWARD", "FULL")):
        pairs.append((older, current, "FORWARD"))
    out = []
    for reader, writer, direction in pairs:
        for field, problem in field_problems(reader.schema, writer.schema):
            out.append(
                Incompatibility(
                    current.name, reader.version, writer.version, direction, field, problem
                )
            )
    return out


def field_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field path, problem)`` for every way ``reader`` cannot read data from ``writer``."""
    r = avro.schema.parse(json.dumps(reader))
    w = avro.schema.parse(json.dumps(writer))
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro: untyped
    return _problems(checker, r, w, "")


def _incompatible(result: SchemaCompatibilityResult) -> bool:
    return result.compatibility is SchemaCompatibilityType.incompatible


def _generic(result: SchemaCompatibilityResult, path: str) -> list[tuple[str, str]]:
    return [(path or "(record)", "; ".join(sorted(result.messages)))]


def _label(schema: avro.schema.Schema) -> str:
    return schema.name if isinstance(schema, avro.schema.NamedSchema) else str(schema.type)


def _branch_for(reader: avro.schema.Schema, writer_branch: avro.schema.Schema) -> Any:
    """The reader schema (or reader union branch) that data of ``writer_branch`` resolves to."""
    candidates = reader.schemas if isinstance(reader, avro.schema.UnionSchema) else [reader]
    for cand in candidates:
        if isinstance(cand, avro.schema.NamedSchema) and isinstance(
            writer_branch, avro.schema.NamedSchema
        ):
            if cand.type == writer_branch.type and schema_name_equals(cand, writer_branch):
                return cand
        elif cand.type == writer_branch.type:
            return cand
    return None


def _problems(  # noqa: PLR0911, PLR0912
    checker: ReaderWriterCompatibilityChecker,
    reader: avro.schema.Schema,
    writer: avro.schema.Schema,
    path: str,
) -> list[tuple[str, str]]:
    result = checker.get_compatibility(reader, writer)
    if not _incompatible(result):
        return []
    if isinstance(reader, avro.schema.RecordSchema) and isinstance(
        writer, avro.schema.RecordSchema
    ):
        if not schema_name_equals(reader, writer):
            return [(path or "(record)", f"record {writer.fullname} was renamed {reader.fullname}")]
        out: list[tuple[str, str]] = []
        for rf in reader.fields:
            wf = lookup_writer_field(writer_schema=writer, reader_field=rf)
            fpath = f"{path}.{rf.name}" if path else rf.name
            if wf is None:
                if not rf.has_default:
                    out.append(
                        (
                            fpath,
                            "is missing from the writer's schema and has no default; "
                            "give it a default",
                        )
                    )
                continue
            out.extend(_problems(checker, rf.type, wf.type, fpath))
        return out or _generic(result, path)
    if isinstance(writer, avro.schema.UnionSchema):
        out = []
        for wb in writer.schemas:
            rb = _branch_for(reader, wb)
            bpath = f"{path}[{_label(wb)}]"
            if rb is None:
                if _incompatible(checker.get_compatibility(reader, wb)):
                    out.append(
                        (
                            bpath,
                            f"the writer's branch {_label(wb)} has no matching "
                            "branch in the reader's union",
                        )
                    )
            else:
                out.extend(_problems(checker, rb, wb, bpath))
        return out or _generic(result, path)
    if isinstance(reader, avro.schema.UnionSchema):
        rb = _branch_for(reader, writer)
        return (_problems(checker, rb, writer, path) if rb is not None else []) or _generic(
            result, path
        )
    if isinstance(reader, avro.schema.ArraySchema) and isinstance(writer, avro.schema.ArraySchema):
        return _problems(checker, reader.items, writer.items, f"{path}[]") or _generic(result, path)
    if isinstance(reader, avro.schema.MapSchema) and isinstance(writer, avro.schema.MapSchema):
        return _problems(checker, reader.values, writer.values, f"{path}{{}}") or _generic(
            result, path
        )
    return _generic(result, path)
