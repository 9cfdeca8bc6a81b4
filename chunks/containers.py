"""Which container a chunk stream is in, from its first bytes (its init header)."""

from __future__ import annotations

from typing import Literal

from chunks.exceptions import UnknownContainerError

__all__ = ["Container", "require_container", "sniff_container"]

Container = Literal["matroska", "mp4"]
"""PyAV / FFmpeg format names of the containers a chunk stream may use (WebM is matroska)."""

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MP4_BOXES = (b"ftyp", b"styp", b"moov")


def sniff_container(first_bytes: bytes) -> Container | None:
    """PyAV format of a stream starting with ``first_bytes``; None without an init header."""
    if first_bytes.startswith(_EBML_MAGIC):
        return "matroska"
    if len(first_bytes) >= 8 and first_bytes[4:8] in _MP4_BOXES:
        return "mp4"
    return None


def require_container(first_bytes: bytes) -> Container:
    """Like :func:`sniff_container`, but raises :class:`UnknownContainerError` for no match."""
    container = sniff_container(first_bytes)
    if container is None:
        head = first_bytes[:8].hex(" ")
        raise UnknownContainerError(
            f"not a WebM or fragmented-MP4 stream: the first bytes ({head or 'none'}) "
            "carry no init header"
        )
    return container
