"""Fragmented-MP4 muxing of one chunk, and splitting a chunk into record-sized parts.

Each chunk is muxed into its own in-memory fMP4 (``ftyp`` + ``moov`` init header, then
``moof``/``mdat`` fragments cut at video keyframes), so every chunk is self-contained by
construction. ``frag_discont`` + ``delay_moov`` make the fragments carry the packets' own
decode times, so media time stays continuous from the session's start across chunks.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import Any

import av

__all__ = ["MOVFLAGS", "fragments_only", "mux_chunk", "split_parts", "top_level_boxes"]

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_discont+delay_moov"
_INIT_BOXES = frozenset({b"ftyp", b"moov", b"free", b"skip", b"uuid"})


def mux_chunk(
    templates: Sequence[av.stream.Stream],
    packets: Sequence[tuple[int, av.Packet[Any]]],
    *,
    frag_size_bytes: int | None = None,
) -> bytes:
    """Mux ``packets`` (``(template index, packet)``) into one fMP4 byte string.

    ``frag_size_bytes`` additionally cuts fragments before they exceed that many bytes
    (used to split an oversize GOP into record-sized pieces).
    """
    buffer = io.BytesIO()
    options = {"movflags": MOVFLAGS, "strict": "experimental"}
    if frag_size_bytes is not None:
        options["frag_size"] = str(frag_size_bytes)
    with av.open(buffer, "w", format="mp4", options=options) as out:
        streams = [out.add_stream_from_template(t, opaque=True) for t in templates]
        for index, packet in packets:
            packet.stream = streams[index]
            out.mux_one(packet)
    return buffer.getvalue()


def top_level_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """``(type, offset, size)`` of each top-level ISO-BMFF box in ``data``."""
    boxes: list[tuple[bytes, int, int]] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
        elif size == 0:
            size = len(data) - offset
        if size < 8 or offset + size > len(data):
            raise ValueError(f"malformed MP4 box {kind!r} at offset {offset}")
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def fragments_only(chunk: bytes) -> bytes:
    """A chunk without its leading init header: only its ``moof``+``mdat`` fragments.

    A consumer continuing one container stream (one Inter-1 connection) sends the first
    chunk whole and every later chunk through this, so the stream carries one init header.
    """
    boxes = top_level_boxes(chunk)
    start = next((offset for kind, offset, _ in boxes if kind not in _INIT_BOXES), len(chunk))
    return chunk[start:]


def split_parts(payload: bytes, limit_bytes: int) -> list[bytes]:
    """Split a chunk into parts of at most ``limit_bytes``, at fragment boundaries.

    Part 0 holds the init header and the first fragment(s); later parts hold whole
    ``moof``+``mdat`` fragments, so concatenating the parts in order gives back the chunk.
    A single fragment larger than the limit (one frame bigger than a record) is cut at
    byte boundaries as a last resort.
    """
    if len(payload) <= limit_bytes:
        return [payload]
    boxes = top_level_boxes(payload)
    units: list[tuple[int, int]] = []  # (start, end) of the init header and each fragment
    init_end = 0
    for kind, offset, size in boxes:
        if not units and kind in _INIT_BOXES:
            init_end = offset + size
            continue
        if kind == b"moof" or not units:
            units.append((offset, offset + size))
        else:
            start, _ = units[-1]
            units[-1] = (start, offset + size)
    parts: list[bytes] = []
    current_start, current_end = 0, init_end
    for start, end in units:
        if current_end - current_start + (end - start) <= limit_bytes:
            current_end = end
            continue
        if current_end > current_start:
            parts.append(payload[current_start:current_end])
        current_start, current_end = start, end
        while current_end - current_start > limit_bytes:
            parts.append(payload[current_start : current_start + limit_bytes])
            current_start += limit_bytes
    if current_end > current_start:
        parts.append(payload[current_start:current_end])
    return parts
