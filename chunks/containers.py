"""Which container a chunk stream is in, from its first bytes (its init header), and how
one container stream continues across chunks (:func:`stream_head`, :func:`continuation`)."""

from __future__ import annotations

from typing import Literal

from chunks.boxes import fragments_start
from chunks.ebml import media_start, open_segment
from chunks.exceptions import UnknownContainerError

__all__ = ["Container", "continuation", "require_container", "sniff_container", "stream_head"]

Container = Literal["matroska", "mp4"]
"""PyAV / FFmpeg format names of the containers a chunk stream may use (WebM is matroska)."""

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MP4_BOXES = (b"ftyp", b"styp", b"moov")


def sniff_container(first_bytes: bytes | memoryview) -> Container | None:
    """PyAV format of a stream starting with ``first_bytes``; None without an init header."""
    if bytes(first_bytes[:4]) == _EBML_MAGIC:
        return "matroska"
    if len(first_bytes) >= 8 and bytes(first_bytes[4:8]) in _MP4_BOXES:
        return "mp4"
    return None


def require_container(first_bytes: bytes | memoryview) -> Container:
    """Like :func:`sniff_container`, but raises :class:`UnknownContainerError` for no match."""
    container = sniff_container(first_bytes)
    if container is None:
        head = bytes(first_bytes[:8]).hex(" ")
        raise UnknownContainerError(
            f"not a WebM or fragmented-MP4 stream: the first bytes ({head or 'none'}) "
            "carry no init header"
        )
    return container


def stream_head(chunk: bytes | memoryview) -> tuple[Container, bytes | memoryview]:
    """The container of the first chunk of a stream and the bytes that open the stream: the
    chunk whole (a WebM Segment opened to unknown size, so later clusters stay inside it).

    Raises:
        UnknownContainerError: the chunk does not start with an init header.
        MalformedBoxError: the init header does not parse.
    """
    container = require_container(chunk)
    return container, open_segment(bytes(chunk)) if container == "matroska" else chunk


def continuation(chunk: bytes | memoryview, container: Container) -> memoryview:
    """A later chunk of a stream in ``container``: its media only (MP4 fragments, WebM
    clusters), without its init header; a view of ``chunk``, not a copy.

    Raises:
        UnknownContainerError: the chunk's init header is of another container.
        MalformedBoxError: the chunk's elements or boxes do not parse.
    """
    found = sniff_container(chunk)
    if found is not None and found != container:
        raise UnknownContainerError(
            f"a {found} chunk cannot continue a {container} stream: one connection carries "
            "one container"
        )
    start = media_start(chunk) if container == "matroska" else fragments_start(chunk)
    return memoryview(chunk)[start:]
