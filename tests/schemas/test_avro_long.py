"""Avro long reader against fastavro's encoder, and its failures."""

from __future__ import annotations

import io

import fastavro
import pytest

from schemas.avro_long import LongTooLongError, read_long


@pytest.mark.parametrize("value", [0, -1, 1, 63, -64, 64, 8191, 8192, 2**31, -(2**63), 2**63 - 1])
def test_reads_what_fastavro_writes(value: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", value)
    encoded = b"\x07" + out.getvalue() + b"\x01"  # bytes around it stay untouched
    assert read_long(encoded, 1) == (value, 1 + len(out.getvalue()))


def test_cut_short_and_over_long() -> None:
    with pytest.raises(IndexError):
        read_long(b"\x80\x80", 0)
    with pytest.raises(LongTooLongError, match=r"^varint longer than 10 bytes$"):
        read_long(b"\xff" * 11, 0)
