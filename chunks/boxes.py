"""ISO-BMFF (MP4) box walking: top-level boxes, fragments without the init header, parts.

Pure byte handling, no PyAV: producers split chunks with it, consumers continue one
container stream across chunks with it.
"""

from __future__ import annotations

import struct

from chunks.exceptions import MalformedBoxError

__all__ = ["INIT_BOXES", "fragments_only", "fragments_start", "split_parts", "top_level_boxes"]

INIT_BOXES = frozenset({b"ftyp", b"moov", b"free", b"skip", b"uuid"})
"""Top-level box types that make up (or may sit in) a fragmented MP4's init header."""


def top_level_boxes(data: bytes | memoryview) -> list[tuple[bytes, int, int]]:
    """``(type, offset, size)`` of each top-level ISO-BMFF box in ``data``.

    Trailing bytes too short for a box header (under 8) are ignored; a box that declares
    more bytes than remain, or fewer than its own header, raises :class:`MalformedBoxError`.
    """
    boxes: list[tuple[bytes, int, int]] = []
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > len(data):
                raise MalformedBoxError(
                    f"truncated MP4 box {kind!r} at offset {offset}: "
                    f"its 64-bit size needs 16 header bytes, {len(data) - offset} left"
                )
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header:
            raise MalformedBoxError(
                f"malformed MP4 box {kind!r} at offset {offset}: declares {size} bytes, "
                f"less than its {header}-byte header"
            )
        if offset + size > len(data):
            raise MalformedBoxError(
                f"truncated MP4 box {kind!r} at offset {offset}: declares {size} bytes, "
                f"{len(data) - offset} left"
            )
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def fragments_only(chunk: bytes) -> bytes:
    """A chunk without its leading init header: only its ``moof``+``mdat`` fragments.

    A consumer continuing one container stream (one Inter-1 connection) sends the first
    chunk whole and every later chunk through this, so the stream carries one init header.
    """
    return chunk[fragments_start(chunk) :]


def fragments_start(chunk: bytes | memoryview) -> int:
    """Offset of the chunk's first box after its init header (its length if none)."""
    boxes = top_level_boxes(chunk)
    return next((offset for kind, offset, _ in boxes if kind not in INIT_BOXES), len(chunk))


def split_parts(payload: bytes, limit_bytes: int) -> list[bytes]:
    """Split a chunk into parts of at most ``limit_bytes``, at fragment boundaries.

    Part 0 holds the init header and the first fragment(s); later parts hold whole
    ``moof``+``mdat`` fragments, so concatenating the parts in order gives back the chunk
    (:class:`chunks.assembler.ChunkAssembler` does that on the consuming side). A single
    fragment larger than the limit (one frame bigger than a record) is cut at byte
    boundaries as a last resort.
    """
    if len(payload) <= limit_bytes:
        return [payload]
    boxes = top_level_boxes(payload)
    units: list[tuple[int, int]] = []  # (start, end) of the init header and each fragment
    init_end = 0
    for kind, offset, size in boxes:
        if not units and kind in INIT_BOXES:
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
