"""WebM element walking on the committed WebM fixture: init header and clusters apart,
the Segment opened to unknown size, one stream continued across chunks."""

from __future__ import annotations

import pytest
from sim_helpers import CLIP_WEBM, clip_bytes

from chunks import continuation, stream_head
from chunks.ebml import (
    CLUSTER_ID,
    SEGMENT_ID,
    UNKNOWN_SIZE,
    clusters_only,
    element_header,
    open_segment,
    read_vint,
)
from chunks.exceptions import MalformedBoxError, UnknownContainerError

MP4_CHUNK = b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"\x00\x00\x00\x0cmoofabcd"


def _layout(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """Offset of the Segment and (offset, end) of each of its Clusters."""
    _, header, size = element_header(data, 0)
    segment = header + size
    _, header, size = element_header(data, segment)
    child, end, clusters = segment + header, segment + header + size, []
    while child < end:
        ident, header, size = element_header(data, child)
        if ident == CLUSTER_ID:
            clusters.append((child, child + header + size))
        child += header + size
    return segment, clusters


def test_the_fixture_has_a_sized_segment_and_nine_clusters() -> None:
    data = clip_bytes(CLIP_WEBM)
    segment, clusters = _layout(data)
    assert element_header(data, segment)[0] == SEGMENT_ID
    assert element_header(data, segment)[2] == len(data) - segment - 12
    assert [start for start, _ in clusters][:3] == [580, 9918, 18961]
    assert len(clusters) == 9


def test_clusters_only_drops_exactly_the_init_header() -> None:
    data = clip_bytes(CLIP_WEBM)
    _, clusters = _layout(data)
    head = data[: clusters[0][0]]
    chunk = head + data[clusters[3][0] : clusters[5][1]]
    assert clusters_only(chunk) == data[clusters[3][0] : clusters[5][1]]
    assert clusters_only(head) == b""  # an init header alone carries no media
    assert continuation(chunk, "matroska") == data[clusters[3][0] : clusters[5][1]]


def test_open_segment_sets_the_unknown_size_once() -> None:
    data = clip_bytes(CLIP_WEBM)
    segment, clusters = _layout(data)
    chunk = data[: clusters[3][0]]
    opened = open_segment(chunk)
    ident, header, size = element_header(opened, segment)
    assert (ident, size, header) == (SEGMENT_ID, UNKNOWN_SIZE, 12)
    assert opened[segment + header :] == chunk[segment + 12 :]
    assert len(opened) == len(chunk)  # the fixture's size field is 8 bytes already
    assert open_segment(opened) is opened
    assert stream_head(chunk) == ("matroska", opened)
    assert stream_head(MP4_CHUNK) == ("mp4", MP4_CHUNK)


def test_a_short_size_field_is_widened_to_the_unknown_marker() -> None:
    ebml = bytes.fromhex("1a45dfa3") + b"\x84" + b"\x42\x86\x81\x01"
    info = bytes.fromhex("1549a966") + b"\x80"
    cluster = bytes.fromhex("1f43b675") + b"\x83" + b"\xe7\x81\x00"
    chunk = ebml + bytes.fromhex("18538067") + bytes([0x80 | len(info + cluster)]) + info + cluster
    opened = open_segment(chunk)
    assert opened == ebml + bytes.fromhex("18538067") + b"\x01" + b"\xff" * 7 + info + cluster
    assert clusters_only(opened) == clusters_only(chunk) == cluster


def test_another_container_cannot_continue_the_stream() -> None:
    data = clip_bytes(CLIP_WEBM)
    with pytest.raises(UnknownContainerError) as info:
        continuation(MP4_CHUNK, "matroska")
    assert str(info.value) == (
        "a mp4 chunk cannot continue a matroska stream: one connection carries one container"
    )
    with pytest.raises(UnknownContainerError):
        continuation(data, "mp4")


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (3, "truncated EBML variable-length integer at offset 0: needs 4 bytes, 3 left"),
        (300, "truncated WebM element 0x1654ae6b at offset 264: declares 169 bytes, 36 left"),
    ],
)
def test_malformed_webm_is_named(cut: int, message: str) -> None:
    with pytest.raises(MalformedBoxError) as info:
        clusters_only(clip_bytes(CLIP_WEBM)[:cut])
    assert str(info.value) == message


def test_read_vint() -> None:
    assert read_vint(b"\x81", 0, marker=False) == (1, 1)
    assert read_vint(b"\x1a\x45\xdf\xa3", 0, marker=True) == (0x1A45DFA3, 4)
    assert read_vint(b"\x01\xff\xff\xff\xff\xff\xff\xff", 0, marker=False) == (UNKNOWN_SIZE, 8)
    with pytest.raises(MalformedBoxError) as info:
        read_vint(b"\x00\x81", 0, marker=False)
    assert str(info.value) == "invalid EBML variable-length integer at offset 0"
