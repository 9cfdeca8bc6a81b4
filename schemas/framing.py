"""The two wire framings: Avro single-object encoding and the Confluent wire format.

Single object (Avro spec): ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form + the schemaless body.
Confluent: ``00`` + 4-byte big-endian registry schema id + the schemaless body.
"""

from __future__ import annotations

from schemas.exceptions import TruncatedRecordError, WrongMagicError

__all__ = [
    "CONFLUENT_HEADER_SIZE",
    "CONFLUENT_MAGIC",
    "SINGLE_OBJECT_HEADER_SIZE",
    "SINGLE_OBJECT_MAGIC",
    "confluent_header",
    "single_object_header",
    "wrong_magic",
]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_SIZE = 10
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_SIZE = 5


def single_object_header(fingerprint: bytes) -> bytes:
    """Header for a record written with the schema of this 8-byte fingerprint."""
    if len(fingerprint) != 8:
        raise ValueError(f"a CRC-64-AVRO fingerprint has 8 bytes, got {len(fingerprint)}")
    return SINGLE_OBJECT_MAGIC + fingerprint


def confluent_header(schema_id: int) -> bytes:
    """Header for a record written with the registry schema ``schema_id``."""
    return bytes((CONFLUENT_MAGIC,)) + schema_id.to_bytes(4, "big")


def wrong_magic(data: bytes | bytearray | memoryview, *, registry: bool) -> Exception:
    """The typed error for bytes that start with neither framing (or are too short to tell)."""
    size = len(data)
    if size == 0:
        return TruncatedRecordError(
            "empty record value: expected an Avro single-object header (C3 01 + 8-byte "
            "fingerprint); check that the producer wrote a value"
        )
    if size < 2 and data[0] == SINGLE_OBJECT_MAGIC[0]:
        return TruncatedRecordError(
            f"record of {size} byte(s) ends inside the single-object header (needs "
            f"{SINGLE_OBJECT_HEADER_SIZE}); the value was cut off"
        )
    if data[0] == CONFLUENT_MAGIC and not registry:
        return WrongMagicError(
            "record uses the Confluent wire format (magic byte 00 + schema id) but no schema "
            "registry is configured; set SCHEMA_REGISTRY_URL to read it"
        )
    head = bytes(data[:2]).hex(" ").upper()
    return WrongMagicError(
        f"record starts with {head}, not an Avro single-object header (C3 01) or the "
        "Confluent magic byte (00); it was not written by this codec, route it to the "
        "dead-letter topic"
    )
