"""Splitting fMP4 bytes into record-sized parts at box boundaries."""

from __future__ import annotations

import struct

import pytest

from producers.codecs import audio_codec_string, mime_type, video_codec_string
from producers.fmp4 import fragments_only, split_parts, top_level_boxes


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
    with pytest.raises(ValueError, match="malformed MP4 box b'mdat' at offset 128"):
        top_level_boxes(data[:128] + struct.pack(">I4s", 5000, b"mdat"))


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


def test_codec_strings() -> None:
    avcc = bytes([1, 0x64, 0x00, 0x1F, 0xFF])
    annex_b = b"\x00\x00\x00\x01\x67\x42\xc0\x0b\xda"
    assert video_codec_string("h264", avcc) == "avc1.64001f"
    assert video_codec_string("h264", annex_b) == "avc1.42c00b"
    assert video_codec_string("h264", None) == "avc1"
    assert video_codec_string("hevc", None) == "hvc1"
    assert audio_codec_string("aac", "LC") == "mp4a.40.2"
    assert audio_codec_string("aac", "HE-AAC") == "mp4a.40.5"
    assert audio_codec_string("opus", None) == "opus"
    assert audio_codec_string("mp3", None) == "mp4a.6B"
    assert mime_type("avc1.64001f", "mp4a.40.2") == 'video/mp4; codecs="avc1.64001f,mp4a.40.2"'
    assert mime_type("avc1.64001f", None) == 'video/mp4; codecs="avc1.64001f"'


def test_fragments_only_drops_the_init_header() -> None:
    fragments = box(b"moof", 40) + box(b"mdat", 300) + box(b"moof", 40) + box(b"mdat", 20)
    assert fragments_only(box(b"ftyp", 12) + box(b"moov", 100) + fragments) == fragments
    assert fragments_only(fragments) == fragments
    assert fragments_only(box(b"ftyp", 12) + box(b"moov", 100)) == b""
