"""ISO-BMFF box walking and splitting fMP4 bytes into record-sized parts at box boundaries."""

from __future__ import annotations

import struct

import pytest

from chunks.boxes import fragments_only, split_parts, top_level_boxes
from chunks.exceptions import ChunkError, MalformedBoxError
from runtime.errors import ExitCode


def box(kind: bytes, body_size: int) -> bytes:
    return struct.pack(">I4s", 8 + body_size, kind) + bytes([len(kind)]) * body_size


def test_top_level_boxes() -> None:
    data = box(b"ftyp", 12) + box(b"moov", 100) + box(b"moof", 40) + box(b"mdat", 1000)
    assert top_level_boxes(data) == [
        (b"ftyp", 0, 20),
        (b"moov", 20, 108),
        (b"moof", 128, 48),
        (b"mdat", 176, 1008),
    ]


def test_64_bit_and_to_the_end_sizes() -> None:
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 10) + bytes(10)
    to_end = struct.pack(">I4s", 0, b"mdat") + bytes(30)
    assert top_level_boxes(box(b"moof", 4) + large) == [(b"moof", 0, 12), (b"mdat", 12, 26)]
    assert top_level_boxes(to_end) == [(b"mdat", 0, 38)]


def test_truncated_box() -> None:
    data = box(b"ftyp", 12) + box(b"moov", 100) + struct.pack(">I4s", 5000, b"mdat") + bytes(20)
    with pytest.raises(MalformedBoxError) as caught:
        top_level_boxes(data)
    assert str(caught.value) == (
        "truncated MP4 box b'mdat' at offset 128: declares 5000 bytes, 28 left"
    )
    assert isinstance(caught.value, ChunkError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.exit_code == ExitCode.DATA_ERROR
    assert caught.value.retriable is False


def test_truncated_64_bit_size() -> None:
    with pytest.raises(MalformedBoxError) as caught:
        top_level_boxes(struct.pack(">I4s", 1, b"mdat") + bytes(4))
    assert str(caught.value) == (
        "truncated MP4 box b'mdat' at offset 0: its 64-bit size needs 16 header bytes, 12 left"
    )


def test_box_smaller_than_its_header() -> None:
    with pytest.raises(MalformedBoxError) as caught:
        top_level_boxes(box(b"moof", 4) + struct.pack(">I4s", 4, b"mdat"))
    assert str(caught.value) == (
        "malformed MP4 box b'mdat' at offset 12: declares 4 bytes, less than its 8-byte header"
    )


def test_small_chunk_is_one_part() -> None:
    data = box(b"ftyp", 12) + box(b"moov", 100) + box(b"moof", 40) + box(b"mdat", 100)
    assert split_parts(data, 1024) == [data]


def test_parts_hold_whole_fragments() -> None:
    init = box(b"ftyp", 12) + box(b"moov", 100)
    fragments = [box(b"moof", 40) + box(b"mdat", size) for size in (300, 200, 250, 100)]
    data = init + b"".join(fragments)

    parts = split_parts(data, 500)

    assert parts == [
        init + fragments[0],
        fragments[1],
        fragments[2] + fragments[3],
    ]
    assert b"".join(parts) == data


def test_fragment_bigger_than_the_limit_is_cut_as_a_last_resort() -> None:
    init = box(b"ftyp", 12) + box(b"moov", 100)
    big = box(b"moof", 40) + box(b"mdat", 1500)
    data = init + big

    parts = split_parts(data, 600)

    assert [len(p) for p in parts] == [128, 600, 600, 356]
    assert b"".join(parts) == data


def test_split_of_a_truncated_chunk_raises() -> None:
    data = box(b"ftyp", 12) + box(b"moov", 100) + box(b"moof", 40) + box(b"mdat", 1000)
    with pytest.raises(MalformedBoxError) as caught:
        split_parts(data[:-1], 500)
    assert str(caught.value) == (
        "truncated MP4 box b'mdat' at offset 176: declares 1008 bytes, 1007 left"
    )


def test_fragments_only_drops_the_init_header() -> None:
    fragments = box(b"moof", 40) + box(b"mdat", 300) + box(b"moof", 40) + box(b"mdat", 20)
    assert fragments_only(box(b"ftyp", 12) + box(b"moov", 100) + fragments) == fragments
    assert fragments_only(fragments) == fragments
    assert fragments_only(box(b"ftyp", 12) + box(b"moov", 100)) == b""
