"""WebM (EBML) element walking: continue one WebM stream across chunks, without PyAV.

A WebM chunk is an init header (the ``EBML`` header element, the ``Segment`` element's
header, and the Segment's children before the first ``Cluster``: ``SeekHead``, ``Info``,
``Tracks``...) followed by clusters. A consumer continuing one stream over one connection
sends the first chunk with its Segment opened to unknown size (:func:`open_segment`, so the
clusters of later chunks stay inside it, as a live muxer writes it) and every later chunk
through :func:`clusters_only`.
"""

from __future__ import annotations

from chunks.exceptions import MalformedBoxError

__all__ = [
    "CLUSTER_ID",
    "EBML_ID",
    "SEGMENT_ID",
    "UNKNOWN_SIZE",
    "clusters_only",
    "element_header",
    "media_start",
    "open_segment",
    "read_vint",
]

EBML_ID, SEGMENT_ID, CLUSTER_ID = 0x1A45DFA3, 0x18538067, 0x1F43B675
UNKNOWN_SIZE = -1
"""The size :func:`read_vint` reports for an element of unknown size (all value bits set)."""
_UNKNOWN_SIZE_FIELD = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def read_vint(buf: bytes | bytearray | memoryview, at: int, *, marker: bool) -> tuple[int, int]:
    """(value, length) of the EBML variable-length integer at ``at``.

    ``marker=True`` keeps the length marker bit (element IDs); otherwise the value is a size
    and all value bits set means :data:`UNKNOWN_SIZE`.

    Raises:
        MalformedBoxError: a zero first byte (no marker in 8 bytes) or fewer bytes than the
            integer's length.
    """
    if at >= len(buf) or buf[at] == 0:
        raise MalformedBoxError(f"invalid EBML variable-length integer at offset {at}")
    length = 9 - buf[at].bit_length()
    if at + length > len(buf):
        raise MalformedBoxError(
            f"truncated EBML variable-length integer at offset {at}: needs {length} bytes, "
            f"{len(buf) - at} left"
        )
    value = int.from_bytes(buf[at : at + length], "big")
    if marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (UNKNOWN_SIZE if value == (1 << (7 * length)) - 1 else value), length


def element_header(buf: bytes | bytearray | memoryview, at: int) -> tuple[int, int, int]:
    """(element id, header length, payload size or :data:`UNKNOWN_SIZE`) of the element at
    ``at``."""
    ident, id_length = read_vint(buf, at, marker=True)
    size, size_length = read_vint(buf, at + id_length, marker=False)
    return ident, id_length + size_length, size


def _segment(chunk: bytes | memoryview) -> tuple[int, int, int]:
    """(offset of the Segment's size field, offset of its first child, its end)."""
    ident, header, size = element_header(chunk, 0)
    if ident != EBML_ID or size == UNKNOWN_SIZE:
        raise MalformedBoxError("a WebM chunk must start with a sized EBML header element")
    at = header + size
    ident, header, size = element_header(chunk, at)
    if ident != SEGMENT_ID:
        raise MalformedBoxError(
            f"expected the Segment element after the EBML header at offset {at}, "
            f"found element {ident:#x}"
        )
    size_at = at + read_vint(chunk, at, marker=True)[1]
    end = len(chunk) if size == UNKNOWN_SIZE else min(len(chunk), at + header + size)
    return size_at, at + header, end


def media_start(chunk: bytes | memoryview) -> int:
    """Offset of the first Cluster in the chunk's Segment (the chunk's length if none)."""
    _, child, end = _segment(chunk)
    while child < end:
        ident, header, size = element_header(chunk, child)
        if ident == CLUSTER_ID:
            return child
        if size == UNKNOWN_SIZE:
            raise MalformedBoxError(
                f"WebM element {ident:#x} at offset {child} has an unknown size before "
                "the first Cluster"
            )
        if child + header + size > end:
            raise MalformedBoxError(
                f"truncated WebM element {ident:#x} at offset {child}: declares "
                f"{header + size} bytes, {end - child} left"
            )
        child += header + size
    return len(chunk)


def clusters_only(chunk: bytes) -> bytes:
    """A WebM chunk without its init header: only its clusters (empty when it has none)."""
    return chunk[media_start(chunk) :]


def open_segment(chunk: bytes) -> bytes:
    """The chunk with its Segment's size set to unknown, so clusters appended after it (from
    later chunks) continue the same Segment. A chunk already open is returned as is."""
    size_at, child, _ = _segment(chunk)
    if read_vint(chunk, size_at, marker=False)[0] == UNKNOWN_SIZE:
        return chunk
    return chunk[:size_at] + _UNKNOWN_SIZE_FIELD + chunk[child:]
