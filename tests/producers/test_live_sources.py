"""Live network sources against real servers on 127.0.0.1, published through the real broker.

Servers: the system ``ffmpeg`` as SRT listener and as RTMP server, the stdlib HTTP server
for a plain file URL and an HLS playlist. Each serves the same 6 s clip (H.264 + AAC, a
keyframe every second), so each session is exactly three 2 s chunks covering 0-6 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from kafka_helpers import consume_records

from producers.app import ProduceOptions, exit_code, produce
from producers.exceptions import MissingToolError, SourceUnavailableError
from producers.publisher import DryRunPublisher, KafkaPublisher
from producers.reader import ReaderOptions
from producers.relay import reap
from producers.synthetic import MediaSpec, write_media
from runtime.kafka import make_consumer
from schemas.codec import get_codec

FFMPEG = shutil.which("ffmpeg")
ROOT = Path(__file__).resolve().parents[2]
# gst-rtsp-server's Python bindings are Debian packages: they run under the system python3.
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
SERVER_TIMEOUT_S = 30
CLIP = MediaSpec(duration_s=6.0, gop=25)
EXPECTED_CHUNKS = [(0, 0.0, 2.0), (1, 2.0, 2.0), (2, 4.0, 2.0)]
PASSPHRASE = "correct-horse-battery"

# Live sources need the system ffmpeg (`make setup` installs it): fail, never skip.
pytestmark = pytest.mark.usefixtures("system_ffmpeg")


@pytest.fixture(scope="module")
def system_ffmpeg() -> str:
    assert FFMPEG is not None, "the system ffmpeg is missing: run `make setup`"
    return FFMPEG


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.ts, clip.mp4 (faststart, for HTTP) and an HLS rendition in hls/."""
    directory = tmp_path_factory.mktemp("live")
    write_media(directory / "clip.ts", CLIP)
    faststart = MediaSpec(duration_s=6.0, gop=25, container_options=(("movflags", "faststart"),))
    write_media(directory / "clip.mp4", faststart)
    (directory / "hls").mkdir()
    with (
        av.open(str(directory / "clip.ts")) as source,
        av.open(
            str(directory / "hls" / "index.m3u8"),
            "w",
            format="hls",
            options={"hls_time": "2", "hls_playlist_type": "vod"},
        ) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream_index]
            out.mux(packet)
    return directory


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_bound(port: int, table: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until a socket is bound on ``port`` (/proc/net/tcp LISTEN or /proc/net/udp).

    Reading the kernel table instead of connecting keeps one-client servers untouched.
    """
    wanted = f":{port:04X} "
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early with {proc.returncode}"
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if wanted.strip() == fields[1][-5:] and (table == "udp" or fields[3] == "0A"):
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound on port {port} within {SERVER_TIMEOUT_S} s")


@contextlib.contextmanager
def ffmpeg_server(args: list[str], port: int, table: str) -> Iterator[subprocess.Popen[bytes]]:
    """The system ffmpeg serving a stream; always terminated and reaped."""
    assert FFMPEG is not None
    proc = subprocess.Popen(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_bound(port, table, proc)
        yield proc
    finally:
        reap(proc, SERVER_TIMEOUT_S)
        assert proc.stderr is not None
        proc.stderr.close()


@contextlib.contextmanager
def rtsp_server(media: Path, port: int) -> Iterator[None]:
    """GStreamer's RTSP server (see rtsp_server.py) serving ``media``; always reaped."""
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(RTSP_SERVER), str(media), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", "the RTSP server did not start: `make setup`"
        wait_bound(port, "tcp", proc)
        yield
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[int]:
    """The stdlib HTTP server on 127.0.0.1 serving ``directory`` from a thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=SERVER_TIMEOUT_S)


def relay_children(parent: int) -> list[int]:
    """Pids of ``ffmpeg`` processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == "ffmpeg" and ppid == parent:
            found.append(int(entry.name))
    return found


def exists(pids: list[int]) -> list[bool]:
    """Whether each process still exists (a reaped child has no /proc entry)."""
    return [Path(f"/proc/{pid}").exists() for pid in pids]


async def read_topic(topic: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` records of a one-partition topic as (record name, datum)."""
    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    records: list[tuple[str, dict[str, Any]]] = []
    try:
        for message in await consume_records(consumer, count, what=f"records on {topic}"):
            decoded = get_codec().decode(message.value, topic=topic)
            records.append((decoded.name, decoded.datum))
    finally:
        await consumer.stop()
    return records


async def ingest(url: str, topic: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Produce ``url`` to ``topic``, check the session's records, return SessionStarted."""
    report = await produce(
        ProduceOptions(sources=(url,), reader=ReaderOptions(timeout_s=timeout_s), progress=False),
        publisher=KafkaPublisher(topic),
    )
    result = report.results[0]
    assert (exit_code(report), result.reason, result.error) == (0, "completed", None)
    records = await read_topic(topic, 5)
    assert [name for name, _ in records] == ["SessionStarted"] + ["VideoChunk"] * 3 + [
        "SessionEnded"
    ]
    assert {datum["session_id"] for _, datum in records} == {result.session_id}
    started, ended = records[0][1], records[-1][1]
    assert (started["video_codec"], started["width"], started["height"], started["live"]) == (
        "h264",
        160,
        120,
        True,
    )
    # Times to the millisecond: RTSP's RTP/RTCP clock may move an edge by one 90 kHz tick.
    assert (ended["reason"], ended["chunks"], round(ended["media_seconds"], 3)) == (
        "completed",
        3,
        6.0,
    )
    chunks = [datum for name, datum in records if name == "VideoChunk"]
    assert [
        (c["seq"], round(c["media_start_s"], 3), round(c["media_duration_s"], 3)) for c in chunks
    ] == EXPECTED_CHUNKS
    for chunk in chunks:  # each chunk decodes alone: 2 s of 25 fps video
        assert chunk["byte_size"] == len(chunk["payload"])
        with av.open(io.BytesIO(chunk["payload"])) as container:
            assert len(list(container.decode(video=0))) == 50
    return started


@pytest.mark.kafka
async def test_srt_listener_relayed_through_system_ffmpeg(clips: Path, kafka_topic: Any) -> None:
    port = free_port(socket.SOCK_DGRAM)
    listener = f"srt://127.0.0.1:{port}?mode=listener&linger=5&passphrase={PASSPHRASE}"
    with ffmpeg_server(
        ["-i", str(clips / "clip.ts"), "-c", "copy", "-f", "mpegts", listener], port, "udp"
    ):
        started = await ingest(f"srt://127.0.0.1:{port}?passphrase={PASSPHRASE}", kafka_topic())

    assert (started["source_kind"], started["source_url"]) == (
        "srt",
        f"srt://127.0.0.1:{port}?passphrase=***",
    )
    assert relay_children(os.getpid()) == []


@pytest.mark.kafka
async def test_rtmp_pull_from_ffmpeg_server(clips: Path, kafka_topic: Any) -> None:
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/x"
    args = ["-i", str(clips / "clip.ts"), "-c", "copy", "-f", "flv", "-listen", "1", url]
    with ffmpeg_server(args, port, "tcp"):
        started = await ingest(url, kafka_topic())

    assert (started["source_kind"], started["source_url"]) == ("rtmp", url)


@pytest.mark.kafka
async def test_rtsp_from_gstreamer_server(clips: Path, kafka_topic: Any) -> None:
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/clip"
    with rtsp_server(clips / "clip.mp4", port):
        started = await ingest(url, kafka_topic())

    assert (started["source_kind"], started["source_url"]) == ("rtsp", url)


@pytest.mark.kafka
async def test_http_file_url(clips: Path, kafka_topic: Any) -> None:
    with http_server(clips) as port:
        url = f"http://127.0.0.1:{port}/clip.mp4"
        started = await ingest(url, kafka_topic())

    assert (started["source_kind"], started["source_url"]) == ("http", url)


@pytest.mark.kafka
async def test_hls_playlist(clips: Path, kafka_topic: Any) -> None:
    with http_server(clips) as port:
        url = f"http://127.0.0.1:{port}/hls/index.m3u8"
        started = await ingest(url, kafka_topic())

    assert (started["source_kind"], started["source_url"]) == ("hls", url)


async def test_srt_unreachable_is_unavailable() -> None:
    port = free_port(socket.SOCK_DGRAM)
    url = f"srt://127.0.0.1:{port}?passphrase={PASSPHRASE}"

    report = await produce(
        ProduceOptions(sources=(url,), reader=ReaderOptions(timeout_s=1.0), progress=False),
        publisher=DryRunPublisher(),
    )

    result = report.results[0]
    assert isinstance(result.error, SourceUnavailableError)
    assert (exit_code(report), result.reason) == (69, None)
    assert str(result.error) == (
        f"srt://127.0.0.1:{port}?passphrase=***: cannot connect (ffmpeg: Input/output error)"
    )
    assert relay_children(os.getpid()) == []


async def test_srt_relay_dying_mid_stream_is_a_source_error(clips: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    listener = f"srt://127.0.0.1:{port}?mode=listener"
    args = ["-readrate", "4", "-stream_loop", "-1", "-i", str(clips / "clip.ts")]
    publisher = DryRunPublisher()
    with ffmpeg_server([*args, "-c", "copy", "-f", "mpegts", listener], port, "udp") as server:
        task = asyncio.create_task(
            produce(
                ProduceOptions(sources=(f"srt://127.0.0.1:{port}",), progress=False),
                publisher=publisher,
            )
        )
        for _ in range(SERVER_TIMEOUT_S * 10):  # until SessionStarted was published
            if publisher.records:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no SessionStarted was published within {SERVER_TIMEOUT_S} s")
        [relay] = [pid for pid in relay_children(os.getpid()) if pid != server.pid]
        os.kill(relay, signal.SIGKILL)
        report = await asyncio.wait_for(task, SERVER_TIMEOUT_S)

    result = report.results[0]
    assert isinstance(result.error, SourceUnavailableError)
    assert (exit_code(report), result.reason, str(result.error)) == (
        69,
        "source_error",
        f"srt://127.0.0.1:{port}: stream failed (ffmpeg killed by SIGKILL)",
    )
    assert exists([relay]) == [False]


async def test_srt_without_system_ffmpeg_says_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    url = "srt://127.0.0.1:9"

    report = await produce(
        ProduceOptions(sources=(url,), progress=False), publisher=DryRunPublisher()
    )

    result = report.results[0]
    assert isinstance(result.error, MissingToolError)
    assert (exit_code(report), str(result.error)) == (
        78,
        f"{url}: srt:// is not in PyAV's FFmpeg and no ffmpeg executable was found on PATH"
        " to relay it: install ffmpeg (Debian: apt-get install ffmpeg)",
    )


async def start_producer(url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "inter1-pipeline"),
        "produce",
        "--dry-run",
        "--no-progress",
        "--timeout",
        "20",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,  # its own process group, like a command run from a terminal
    )


async def wait_relay(producer: asyncio.subprocess.Process) -> int:
    """The pid of the producer's one relay process, once it runs."""
    for _ in range(SERVER_TIMEOUT_S * 10):
        relays = relay_children(producer.pid)
        if relays:
            assert len(relays) == 1
            return relays[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no relay process started")


async def wait_log(stream: asyncio.StreamReader | None, event: str) -> None:
    """Read log lines until one names ``event``."""
    assert stream is not None
    while line := await asyncio.wait_for(stream.readline(), SERVER_TIMEOUT_S):
        if f'"event": "{event}"' in line.decode() or f" {event} " in line.decode():
            return
    raise AssertionError(f"the producer exited before logging {event}")


async def test_sigterm_while_streaming_stops_and_reaps_the_relay(clips: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    listener = f"srt://127.0.0.1:{port}?mode=listener"
    args = ["-readrate", "4", "-stream_loop", "-1", "-i", str(clips / "clip.ts")]
    with ffmpeg_server([*args, "-c", "copy", "-f", "mpegts", listener], port, "udp"):
        producer = await start_producer(f"srt://127.0.0.1:{port}")
        relay = await wait_relay(producer)
        await wait_log(producer.stderr, "session_started")
        producer.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(producer.communicate(), SERVER_TIMEOUT_S)

    assert producer.returncode == 130, stderr.decode()
    assert stdout.decode().strip().splitlines()[-1].startswith("1 source: 1 stopped; ")
    assert exists([relay]) == [False]


async def test_ctrl_c_while_connecting_reaps_the_relay() -> None:
    producer = await start_producer(f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    relay = await wait_relay(producer)
    os.killpg(producer.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
    stdout, stderr = await asyncio.wait_for(producer.communicate(), SERVER_TIMEOUT_S)

    assert producer.returncode == 130, stderr.decode()
    assert stdout.decode().strip().splitlines()[-1].startswith("1 source: 1 not started; ")
    assert "error:" not in stderr.decode()
    assert exists([relay]) == [False]
