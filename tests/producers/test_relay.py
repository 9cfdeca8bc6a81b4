"""Which URLs go through the system-ffmpeg relay, and the relay's command line."""

from __future__ import annotations

import threading

import pytest

from producers.relay import FfmpegRelay, needs_relay, pyav_protocols
from producers.sources import SourceSpec, parse_source


def test_pyav_protocols_are_read_from_its_ffmpeg() -> None:
    protocols = pyav_protocols()

    assert protocols is not None
    assert {"file", "pipe", "http", "https", "rtmp", "tcp", "udp"} <= protocols
    assert "srt" not in protocols  # PyAV's wheels: no libsrt


@pytest.mark.parametrize(
    ("url", "relayed"),
    [
        ("srt://127.0.0.1:9000", True),
        ("rtsp://cam/stream", False),  # a demuxer that opens its own URLs
        ("rtmp://host/live/x", False),
        ("http://host/a.mp4", False),
        ("https://host/a.m3u8", False),
        ("udp://127.0.0.1:5000", False),
        ("/tmp/a.mp4", False),
    ],
)
def test_needs_relay(url: str, relayed: bool) -> None:
    assert needs_relay(url) is relayed


def test_srt_passphrase_is_masked() -> None:
    spec = parse_source("srt://host:9000?mode=caller&passphrase=correct-horse-battery")

    assert spec == SourceSpec(
        "srt://host:9000?mode=caller&passphrase=correct-horse-battery",
        "srt",
        "srt://host:9000?mode=caller&passphrase=***",
        live=True,
    )


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("srt://h:1", ["-timeout", "2500000", "-connect_timeout", "2500"]),
        ("zmq://h:1", ["-rw_timeout", "2500000"]),
    ],
)
def test_relay_command(url: str, options: list[str]) -> None:
    relay = FfmpegRelay(url, url, timeout_s=2.5, stop=threading.Event())

    assert relay.command("/usr/bin/ffmpeg") == [
        "/usr/bin/ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *options,
        "-i",
        url,
        "-c",
        "copy",
        "-flush_packets",
        "1",
        "-f",
        "mpegts",
        "pipe:1",
    ]
    assert (relay.pid, relay.read(10)) == (None, b"")  # nothing runs before start()
    relay.close()
