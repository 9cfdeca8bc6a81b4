"""Avro's ``int``/``long`` binary encoding (zig-zag, then a little-endian base-128 varint),
read in place, for the readers that skip fastavro on hot paths (``chunks.wire``,
``sinks.event_container``)."""

from __future__ import annotations

__all__ = ["LongTooLongError", "read_long"]


class LongTooLongError(ValueError):
    """A varint runs past the 10 bytes a 64-bit Avro ``long`` can take."""


def read_long(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The Avro ``long`` at ``data[pos]`` and the position after it.

    Raises:
        IndexError: ``data`` ends inside the varint.
        LongTooLongError: the varint is longer than 10 bytes.
    """
    byte = data[pos]
    if byte < 0x80:  # one byte: lengths under 64, most small numbers
        return (byte >> 1) ^ -(byte & 1), pos + 1
    shift = raw = 0
    while True:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise LongTooLongError("varint longer than 10 bytes")
