"""Opening files: MP4/MOV files of sample-table codecs are demuxed without FFmpeg's parsers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import av
import pytest
from av.container.core import Flags

from producers.sources import open_source, parse_source

MediaFactory = Callable[[str], Path]
# AVFMT_FLAG_NOPARSE | AVFMT_FLAG_NOFILLIN (PyAV's stubs type the members, not their values)
_NO_PARSERS = cast(int, Flags.no_parse.value) | cast(int, Flags.no_fillin.value)


def _packets(container: av.container.InputContainer) -> list[tuple[Any, ...]]:
    return [
        (p.stream_index, p.pts, p.dts, p.duration, p.is_keyframe, bytes(p))
        for p in container.demux()
    ]


@pytest.mark.parametrize(
    ("name", "without_parsers"),
    [
        ("h264_aac.mp4", True),
        ("h264_aac_gop12.mov", True),
        ("hevc_aac.mp4", True),
        ("aac_only.m4a", True),
        ("h264_silent.mp4", True),
        ("h264_pcm.mov", False),  # PCM is not a sample-table codec: reopened with parsers
        ("h264_opus.mkv", False),  # not MP4/MOV
        ("h264_aac.ts", False),  # MPEG-TS needs its parsers to find the frames
    ],
)
def test_only_mp4_files_of_sample_table_codecs_skip_the_parsers(
    media: MediaFactory, name: str, without_parsers: bool
) -> None:
    container = open_source(parse_source(str(media(name))))
    try:
        flags = container.flags
    finally:
        container.close()

    assert (flags & _NO_PARSERS == _NO_PARSERS, flags & _NO_PARSERS == 0) == (
        without_parsers,
        not without_parsers,
    )


@pytest.mark.parametrize(
    "name", ["h264_aac.mp4", "h264_bframes.mp4", "h264_aac_gop12.mov", "hevc_aac.mp4"]
)
def test_packets_read_without_parsers_are_those_read_with_them(
    media: MediaFactory, name: str
) -> None:
    path = str(media(name))
    with av.open(path) as plain:
        expected = _packets(plain)
    container = open_source(parse_source(path))
    try:
        flags = container.flags
        got = _packets(container)
    finally:
        container.close()

    assert flags & _NO_PARSERS == _NO_PARSERS
    assert len(got) == len(expected) > 100
    assert got == expected
