"""Encode and decode pipeline records as framed Avro.

``Codec.encode(record_name, datum, topic=...)`` writes the current version of the record.
``Codec.decode(data)`` reads either framing: single-object (writer resolved by fingerprint
from every kept version) or Confluent (writer fetched from the registry by id, once), and
always returns the datum in the current version's shape. Everything a call needs after the
first use of a record (parsed schemas, headers, registry ids) is cached.

Datum conventions (fastavro): ``timestamp-micros`` fields take and return timezone-aware
``datetime``; a union with several record branches (``Inter1Event.payload``) takes and
returns a ``(fullname, dict)`` tuple.
"""

from __future__ import annotations

import json
from functools import cache
from io import BytesIO
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from runtime.settings import SchemaSettings, load
from schemas.catalog import RecordVersion, SchemaCatalog, default_catalog, fingerprint_of
from schemas.exceptions import (
    CodecError,
    CorruptRecordError,
    IncompatibleSchemaError,
    RegistryError,
    RegistryNotFoundError,
    TopicRequiredError,
    TruncatedRecordError,
    UnknownFingerprintError,
    UnknownRecordError,
    UnknownSchemaIdError,
)
from schemas.framing import (
    CONFLUENT_HEADER_SIZE,
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_HEADER_SIZE,
    SINGLE_OBJECT_MAGIC,
    confluent_header,
    single_object_header,
    wrong_magic,
)
from schemas.validation import ENCODE_ERRORS, validation_error

if TYPE_CHECKING:  # httpx loads only when a registry is configured
    from schemas.registry_client import RegistryClient

__all__ = ["Codec", "Decoded", "codec_from_settings", "decode", "encode", "get_codec", "subject"]


class Decoded(NamedTuple):
    """A decoded record: short record name, datum in the current version's shape, and the
    version it was written with (None for a registry schema not kept in this repo)."""

    name: str
    datum: dict[str, Any]
    writer_version: int | None


_new_decoded = tuple.__new__


class _ReadPlan(NamedTuple):
    name: str
    writer_version: int | None
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: writer is the current version, no resolution
    fields: tuple[str, ...] = ()  # with resolution: the current field order to restore


def subject(topic: str, fullname: str) -> str:
    """Registry subject under TopicRecordNameStrategy: ``<topic>-<record fullname>``."""
    return f"{topic}-{fullname}"


class Codec:
    """Framed Avro encode/decode for the pipeline's records.

    Args:
        catalog: the kept schema versions (default: the schemas shipped in ``schemas/avsc``).
        registry: a registry client; with one, ``encode`` writes the Confluent wire format
            (subjects by TopicRecordNameStrategy), without one the single-object encoding.
        auto_register: with a registry, register the current schema on first use of a
            subject (like Confluent's ``auto.register.schemas``); otherwise only look it up.
    """

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        *,
        registry: RegistryClient | None = None,
        auto_register: bool = True,
    ) -> None:
        self._catalog = catalog if catalog is not None else default_catalog()
        self._registry = registry
        self._auto_register = auto_register
        self._writers: dict[Any, tuple[bytes, dict[str, Any]]] = {}
        # single-object header (C3 01 + fingerprint) -> plan, for every kept version
        self._by_header: dict[bytes, _ReadPlan] = {
            single_object_header(rv.fingerprint): self._plan(rv)
            for rv in self._catalog.all_versions()
        }
        # Confluent header (00 + schema id) -> plan, filled on first use of each id
        self._by_confluent: dict[bytes, _ReadPlan] = {}
        by_header = (self._by_header, SINGLE_OBJECT_HEADER_SIZE)
        by_confluent = (self._by_confluent, CONFLUENT_HEADER_SIZE)
        first, second = (by_header, by_confluent) if registry is None else (by_confluent, by_header)
        self._lookup_order = (*first, *second)

    @property
    def catalog(self) -> SchemaCatalog:
        """The kept schema versions this codec reads and writes."""
        return self._catalog

    @property
    def registry(self) -> RegistryClient | None:
        """The registry client when the Confluent framing is in use, else None."""
        return self._registry

    def encode(self, record_name: str, datum: dict[str, Any], *, topic: str | None = None) -> bytes:
        """Write ``datum`` with the current version of ``record_name``, framed.

        ``topic`` names the registry subject with the Confluent framing (required there);
        the single-object framing ignores it. Raises SchemaValidationError naming the field
        when the datum does not fit.
        """
        entry = self._writers.get(record_name if self._registry is None else (record_name, topic))
        if entry is None:
            entry = self._writer_entry(record_name, topic)
        header, parsed = entry
        out = BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, parsed, datum)
        except ENCODE_ERRORS as exc:
            raise validation_error(record_name, parsed, datum, exc) from None
        return out.getvalue()

    def decode(self, data: bytes, *, topic: str | None = None) -> Decoded:
        """Read one framed record into the current version of its record schema.

        ``topic`` is used in error messages only (schema ids are global to a registry).
        """
        # Fast path: the whole header is the key (10 bytes single-object, 5 Confluent); the
        # codec's own framing is tried first.
        primary, offset, secondary, other_offset = self._lookup_order
        plan = primary.get(data[:offset])
        if plan is None:
            plan = secondary.get(data[:other_offset])
            if plan is not None:
                offset = other_offset
            else:
                plan, offset = self._resolve_header(data, topic)
        name, writer_version, writer, reader, fields = plan
        body = BytesIO(data)
        body.seek(offset)
        try:
            datum: dict[str, Any] = schemaless_reader(  # type: ignore[assignment]  # a record
                body,
                writer,
                reader,
                return_record_name=True,
                return_record_name_override=True,
            )
        except (EOFError, IndexError):
            raise TruncatedRecordError(
                f"{name} record of {len(data)} bytes ends before its body is complete; the "
                "value was cut off or is not Avro"
            ) from None
        except SchemaResolutionError as exc:
            raise IncompatibleSchemaError(
                f"{name} record was written with a registry schema the current version cannot "
                f"read ({exc}); run `inter1-pipeline schemas check` and deploy the newer "
                "schemas/avsc version"
            ) from None
        except (ValueError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
            raise CorruptRecordError(
                f"{name} record body does not match its writer schema "
                f"({type(exc).__name__}: {exc}); route it to the dead-letter topic"
            ) from None
        if fields:  # fastavro appends defaulted fields; restore the current order
            datum = {field: datum[field] for field in fields}
        if body.tell() != len(data):
            raise CorruptRecordError(
                f"{name} record has {len(data) - body.tell()} byte(s) left over after its "
                "body; it was not written with the schema its header names"
            )
        # tuple.__new__ skips NamedTuple's Python-level __new__ on the hot path
        return _new_decoded(Decoded, (name, datum, writer_version))

    def _resolve_header(self, data: bytes, topic: str | None) -> tuple[_ReadPlan, int]:
        """Slow path: a Confluent header, or bytes that need a typed error."""
        size = len(data)
        if size >= 2 and data[:2] == SINGLE_OBJECT_MAGIC:
            if size < SINGLE_OBJECT_HEADER_SIZE:
                raise _truncated_header(size, SINGLE_OBJECT_HEADER_SIZE, "single-object")
            raise self._unknown_fingerprint(bytes(data[2:SINGLE_OBJECT_HEADER_SIZE]), topic)
        if size and data[0] == CONFLUENT_MAGIC and self._registry is not None:
            if size < CONFLUENT_HEADER_SIZE:
                raise _truncated_header(size, CONFLUENT_HEADER_SIZE, "Confluent")
            header = bytes(data[:CONFLUENT_HEADER_SIZE])
            plan = self._by_confluent.get(header)
            if plan is None:
                plan = self._plan_for_id(int.from_bytes(header[1:], "big"), topic)
            return plan, CONFLUENT_HEADER_SIZE
        raise wrong_magic(data, registry=self._registry is not None)

    def known_writers(self, record_name: str) -> dict[bytes, dict[str, Any]]:
        """Framing header -> parsed writer schema of every version of ``record_name`` this
        codec reads without I/O now: the kept versions' single-object headers and the
        Confluent headers of registry ids resolved so far."""
        plans = (*self._by_header.items(), *self._by_confluent.items())
        return {header: plan.writer for header, plan in plans if plan.name == record_name}

    def prepare(self, record_topics: dict[str, str]) -> None:
        """Resolve every ``record -> topic`` writer now (registers subjects with a registry),
        so the first ``encode`` of each does no I/O."""
        for record_name, topic in record_topics.items():
            self._writer_entry(record_name, topic)

    def _plan(self, rv: RecordVersion) -> _ReadPlan:
        current = self._catalog.current(rv.name)
        if rv.fingerprint == current.fingerprint:
            return _ReadPlan(rv.name, rv.version, rv.parsed, None)
        return _ReadPlan(rv.name, rv.version, rv.parsed, current.parsed, _field_names(current))

    def _writer_entry(self, record_name: str, topic: str | None) -> tuple[bytes, dict[str, Any]]:
        current = self._catalog.current(record_name)
        if self._registry is None:
            entry = (single_object_header(current.fingerprint), current.parsed)
            self._writers[record_name] = entry
            return entry
        if not topic:
            raise TopicRequiredError(
                f"encoding {record_name} in the Confluent wire format needs the topic (the "
                f"registry subject is <topic>-{current.fullname}); pass topic=..."
            )
        subj = subject(topic, current.fullname)
        if self._auto_register:
            schema_id = self._registry.register(subj, current.schema_json)
        else:
            schema_id = self._registry.lookup(subj, current.schema_json)
        entry = (confluent_header(schema_id), current.parsed)
        self._writers[(record_name, topic)] = entry
        self._by_confluent[confluent_header(schema_id)] = self._plan(current)
        return entry

    def _plan_for_id(self, schema_id: int, topic: str | None) -> _ReadPlan:
        assert self._registry is not None
        try:
            text = self._registry.schema_by_id(schema_id)
        except RegistryNotFoundError:
            where = f" on topic {topic}" if topic else ""
            raise UnknownSchemaIdError(
                f"schema id {schema_id}{where} is not in the registry at {self._registry.url}; "
                "the record was written against another registry or the schema was deleted"
            ) from None
        try:
            schema = json.loads(text)
            fullname = _fullname(schema)
            writer = cast(dict[str, Any], parse_schema(schema))
        except Exception as exc:  # json and fastavro raise several unrelated types
            raise RegistryError(
                f"schema id {schema_id} from {self._registry.url} is not a valid Avro "
                f"schema ({type(exc).__name__}: {exc})"
            ) from None
        name = self._catalog.name_of(fullname)
        if name is None:
            raise UnknownRecordError(
                f"schema id {schema_id} is record {fullname}, which this pipeline does not "
                f"read; known records: {', '.join(self._catalog.names())}"
            )
        kept = self._catalog.by_fingerprint(fingerprint_of(schema))
        if kept is not None and kept.name == name:
            plan = self._plan(kept)
        else:  # registered by a newer or foreign writer: resolve into our current version
            current = self._catalog.current(name)
            plan = _ReadPlan(
                name,
                None,
                writer,
                current.parsed,
                _field_names(current),
            )
        self._by_confluent[confluent_header(schema_id)] = plan
        return plan

    def _unknown_fingerprint(self, fp: bytes, topic: str | None) -> CodecError:
        where = f" on topic {topic}" if topic else ""
        return UnknownFingerprintError(
            f"record{where} was written with schema fingerprint {fp.hex()}, which no kept "
            "schema version has; the writer uses a newer or foreign schema: deploy the "
            "schemas/avsc version it was written with"
        )


def _field_names(rv: RecordVersion) -> tuple[str, ...]:
    return tuple(str(f["name"]) for f in rv.schema["fields"])


def _fullname(schema: dict[str, Any]) -> str:
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _truncated_header(size: int, needed: int, framing: str) -> TruncatedRecordError:
    return TruncatedRecordError(
        f"record of {size} bytes ends inside the {framing} header (needs {needed}); "
        "the value was cut off"
    )


def codec_from_settings(
    settings: SchemaSettings | None = None, catalog: SchemaCatalog | None = None
) -> Codec:
    """A codec for the configured framing: Confluent when ``SCHEMA_REGISTRY_URL`` is set,
    single-object otherwise. No I/O happens here."""
    settings = settings if settings is not None else load(SchemaSettings)
    if settings.url is None or not settings.url.get_secret_value():
        return Codec(catalog)
    from schemas.registry_client import RegistryClient

    registry = RegistryClient(
        settings.url.get_secret_value(),
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
    )
    return Codec(catalog, registry=registry)


@cache
def get_codec() -> Codec:
    """The process-wide codec from the environment's settings (created once)."""
    return codec_from_settings()


def encode(record_name: str, datum: dict[str, Any], *, topic: str | None = None) -> bytes:
    """``get_codec().encode(...)``: encode with the process-wide codec."""
    return get_codec().encode(record_name, datum, topic=topic)


def decode(data: bytes, *, topic: str | None = None) -> Decoded:
    """``get_codec().decode(...)``: decode with the process-wide codec."""
    return get_codec().decode(data, topic=topic)
