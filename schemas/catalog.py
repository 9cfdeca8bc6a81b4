"""The kept ``.avsc`` files: every version of every record, parsed once, indexed by fingerprint.

Layout: ``<dir>/<RecordName>/v<N>.avsc`` with N = 1, 2, ... without gaps; the highest N is
the current version. Each file is self-contained (no references to other files).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.exceptions import SchemaCatalogError, UnknownRecordError

__all__ = [
    "NAMESPACE",
    "RECORD_TOPICS",
    "SCHEMA_DIR",
    "RecordVersion",
    "SchemaCatalog",
    "default_catalog",
    "fingerprint_of",
]

NAMESPACE = "ai.interhuman.pipeline"
SCHEMA_DIR = Path(__file__).resolve().parent / "avsc"

RECORD_TOPICS: Mapping[str, str] = {
    "SessionStarted": "chunks",
    "VideoChunk": "chunks",
    "SessionEnded": "chunks",
    "Inter1Event": "events",
    "UsageRecord": "usage",
    "DeadLetter": "dead_letter",
    "Cue": "cues",
}
"""Which declared topic (key of ``runtime.topics.topic_name``) carries each record."""

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def fingerprint_of(schema: str | dict[str, Any]) -> bytes:
    """CRC-64-AVRO fingerprint of a schema's Parsing Canonical Form, as the 8 header bytes.

    These are the little-endian bytes the Avro single-object encoding puts after 0xC3 0x01.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True)
class RecordVersion:
    """One kept version of one record schema."""

    name: str
    """Short record name, e.g. ``VideoChunk``."""
    version: int
    fullname: str
    path: Path
    schema: dict[str, Any] = field(repr=False)
    """The schema as written in the file (docs and defaults included)."""
    parsed: dict[str, Any] = field(repr=False)
    """``fastavro.parse_schema`` of :attr:`schema`, parsed once."""
    fingerprint: bytes
    """8-byte CRC-64-AVRO fingerprint (single-object header order)."""

    @property
    def schema_json(self) -> str:
        """Compact JSON text of the schema, as registered with a schema registry."""
        return json.dumps(self.schema, separators=(",", ":"), ensure_ascii=False)


class SchemaCatalog:
    """Every kept version of every record, loaded from one schema directory.

    Reading the files happens in :meth:`load`, not in the constructor.
    """

    def __init__(self, versions: Mapping[str, tuple[RecordVersion, ...]]) -> None:
        self._versions = dict(versions)
        self._by_fingerprint: dict[bytes, RecordVersion] = {}
        self._by_fullname: dict[str, str] = {}
        for name, kept in self._versions.items():
            self._by_fullname[kept[-1].fullname] = name
            for rv in kept:
                other = self._by_fingerprint.get(rv.fingerprint)
                if other is not None and other.name != name:
                    raise SchemaCatalogError(
                        f"{rv.path} and {other.path} have the same fingerprint "
                        f"{rv.fingerprint.hex()}; rename one record"
                    )
                # Versions that differ only in docs or defaults share a fingerprint (the
                # canonical form strips both); the later version wins, bytes are identical.
                self._by_fingerprint[rv.fingerprint] = rv

    @classmethod
    def load(cls, directory: Path = SCHEMA_DIR) -> SchemaCatalog:
        """Read and parse every ``<Record>/v<N>.avsc`` under ``directory``."""
        if not directory.is_dir():
            raise SchemaCatalogError(f"schema directory {directory} does not exist")
        versions: dict[str, tuple[RecordVersion, ...]] = {}
        for record_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
            versions[record_dir.name] = _load_record(record_dir)
        if not versions:
            raise SchemaCatalogError(f"no record schemas under {directory}")
        return cls(versions)

    def names(self) -> list[str]:
        """Short names of every record, sorted."""
        return sorted(self._versions)

    def versions(self, name: str) -> tuple[RecordVersion, ...]:
        """Every kept version of a record, oldest first."""
        try:
            return self._versions[name]
        except KeyError:
            raise UnknownRecordError(
                f"no record schema named {name!r}; known records: {', '.join(self.names())}"
            ) from None

    def current(self, name: str) -> RecordVersion:
        """The current (highest) version of a record."""
        return self.versions(name)[-1]

    def by_fingerprint(self, fp: bytes) -> RecordVersion | None:
        """The kept version with this 8-byte fingerprint, or None."""
        return self._by_fingerprint.get(fp)

    def name_of(self, fullname: str) -> str | None:
        """Short record name for a full name (``ai.interhuman.pipeline.VideoChunk``), or None."""
        return self._by_fullname.get(fullname)

    def all_versions(self) -> list[RecordVersion]:
        """Every kept version of every record."""
        return [rv for name in self.names() for rv in self._versions[name]]


def _load_record(record_dir: Path) -> tuple[RecordVersion, ...]:
    numbered: dict[int, Path] = {}
    for path in record_dir.iterdir():
        match = _VERSION_FILE.match(path.name)
        if match is None:
            raise SchemaCatalogError(f"{path}: schema files must be named v<N>.avsc (v1.avsc, ...)")
        numbered[int(match.group(1))] = path
    expected = list(range(1, len(numbered) + 1))
    if sorted(numbered) != expected:
        found = ", ".join(f"v{n}" for n in sorted(numbered)) or "none"
        raise SchemaCatalogError(
            f"{record_dir}: versions must be v1..vN without gaps; found {found}"
        )
    return tuple(_load_version(record_dir.name, n, numbered[n]) for n in expected)


def _load_version(name: str, version: int, path: Path) -> RecordVersion:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaCatalogError(f"{path}: cannot read schema: {exc}") from exc
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaCatalogError(f"{path}: top level must be a record schema")
    if schema.get("name") != name:
        raise SchemaCatalogError(
            f"{path}: record name {schema.get('name')!r} must match its directory {name!r}"
        )
    if schema.get("namespace") != NAMESPACE:
        raise SchemaCatalogError(f"{path}: namespace must be {NAMESPACE!r}")
    try:
        parsed = cast(dict[str, Any], fastavro.parse_schema(schema))
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaCatalogError(f"{path}: invalid Avro schema: {exc}") from exc
    return RecordVersion(
        name=name,
        version=version,
        fullname=f"{NAMESPACE}.{name}",
        path=path,
        schema=schema,
        parsed=parsed,
        fingerprint=fingerprint_of(schema),
    )


@cache
def default_catalog() -> SchemaCatalog:
    """The catalog of the schemas shipped in this package (loaded once per process)."""
    return SchemaCatalog.load(SCHEMA_DIR)
