"""Classifying source strings and naming containers from their first bytes."""

from __future__ import annotations

import pytest

from producers.exceptions import UnsupportedSourceError
from producers.sources import SourceSpec, parse_source, sniff_file_format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("clip.mp4", SourceSpec("clip.mp4", "file", "clip.mp4", live=False)),
        ("file:///data/a.mkv", SourceSpec("/data/a.mkv", "file", "/data/a.mkv", live=False)),
        ("-", SourceSpec("pipe:0", "stdin", "stdin", live=True)),
        (
            "/dev/video0",
            SourceSpec("/dev/video0", "device", "/dev/video0", live=True, input_format="v4l2"),
        ),
        (
            "v4l2:///dev/video2",
            SourceSpec("/dev/video2", "device", "/dev/video2", live=True, input_format="v4l2"),
        ),
        ("rtsp://cam/live", SourceSpec("rtsp://cam/live", "rtsp", "rtsp://cam/live", live=True)),
        (
            "rtmp://host/app/key",
            SourceSpec("rtmp://host/app/key", "rtmp", "rtmp://host/app/key", live=True),
        ),
        ("srt://host:9000", SourceSpec("srt://host:9000", "srt", "srt://host:9000", live=True)),
        (
            "https://cdn/x.mp4",
            SourceSpec("https://cdn/x.mp4", "http", "https://cdn/x.mp4", live=True),
        ),
        (
            "https://cdn/live/index.m3u8",
            SourceSpec(
                "https://cdn/live/index.m3u8", "hls", "https://cdn/live/index.m3u8", live=True
            ),
        ),
    ],
)
def test_parse_source(text: str, expected: SourceSpec) -> None:
    assert parse_source(text) == expected


def test_credentials_are_masked_in_the_display_name_only() -> None:
    spec = parse_source("rtsp://admin:s3cret@cam.local:554/stream?token=abc")

    assert spec.target == "rtsp://admin:s3cret@cam.local:554/stream?token=abc"
    assert spec.display == "rtsp://admin:***@cam.local:554/stream?token=***"


def test_unknown_scheme() -> None:
    with pytest.raises(UnsupportedSourceError) as caught:
        parse_source("gopher://host/video")
    assert str(caught.value) == "gopher://host/video: unsupported URL scheme 'gopher'"
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("head", "family"),
    [
        (b"\x00\x00\x00\x1cftypisom" + bytes(500), "mp4"),
        (b"\x1a\x45\xdf\xa3" + bytes(500), "matroska"),
        (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(500), "avi"),
        (b"FLV\x01" + bytes(500), "flv"),
        ((b"\x47" + bytes(187)) * 3, "mpegts"),
        (b"hello world" * 40, None),
    ],
)
def test_sniff_file_format(head: bytes, family: str | None) -> None:
    assert sniff_file_format(head) == family
