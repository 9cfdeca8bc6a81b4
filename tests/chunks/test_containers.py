"""Container sniffing of a chunk stream's first bytes."""

from __future__ import annotations

import pytest

from chunks.containers import require_container, sniff_container
from chunks.exceptions import UnknownContainerError


@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b"\x00\x00\x00\x1cftypisom" + bytes(20), "mp4"),
        (b"\x00\x00\x00\x10stypmsdh" + bytes(20), "mp4"),
        (b"\x00\x00\x03\xe8moov" + bytes(20), "mp4"),
        (b"\x1a\x45\xdf\xa3" + bytes(20), "matroska"),
        (b"\x00\x00\x00\x30moof" + bytes(20), None),  # fragments without an init header
        (b"\x00\x00\x00\x1cftyp"[:7], None),
        (b"", None),
    ],
)
def test_sniff_container(head: bytes, container: str | None) -> None:
    assert sniff_container(head) == container


def test_require_container() -> None:
    assert require_container(b"\x1a\x45\xdf\xa3\x01") == "matroska"


def test_unknown_container() -> None:
    with pytest.raises(UnknownContainerError) as caught:
        require_container(b"RIFF\x00\x00\x00\x00AVI LIST")
    assert str(caught.value) == (
        "not a WebM or fragmented-MP4 stream: the first bytes (52 49 46 46 00 00 00 00) "
        "carry no init header"
    )


def test_unknown_container_of_nothing() -> None:
    with pytest.raises(UnknownContainerError) as caught:
        require_container(b"")
    assert str(caught.value) == (
        "not a WebM or fragmented-MP4 stream: the first bytes (none) carry no init header"
    )
