"""``inter1-pipeline produce`` on bad input: one line naming input and problem, exit code."""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from inter1_pipeline.cli import cli

MediaFactory = Callable[[str], Path]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["produce", "--dry-run", "--no-progress", *args])


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_good_file_completes(media: MediaFactory) -> None:
    result = run(str(media("h264_aac.mp4")))

    assert result.exit_code == 0, result.stderr
    assert error_lines(result) == []
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("1 source: 1 completed; 2 chunks, 4.0 media s, ")


@pytest.mark.parametrize(
    ("make", "exit_code", "problem"),
    [
        pytest.param(lambda d, m: d / "missing.mp4", 66, "no such file", id="missing"),
        pytest.param(
            lambda d, m: _write(d / "empty.mp4", b""), 65, "empty file (0 bytes)", id="zero-byte"
        ),
        pytest.param(
            lambda d, m: _write(d / "notes.mp4", b"just some text, not a video\n" * 40),
            65,
            "not a media file (no known container format)",
            id="not-media",
        ),
        pytest.param(
            lambda d, m: _write(d / "cut.mp4", m("h264_aac.mp4").read_bytes()[:30000]),
            65,
            "truncated or corrupt mp4 data (Invalid data found when processing input)",
            id="truncated-header",
        ),
        pytest.param(
            lambda d, m: _write(d / "cut_late.mp4", _half(m("h264_faststart.mp4").read_bytes())),
            65,
            "truncated: media ends at 2.04 s of 4.00 s",
            id="truncated-midway",
        ),
        pytest.param(
            lambda d, m: m("aac_only.m4a"), 65, "no video stream (has: audio)", id="no-video"
        ),
        pytest.param(
            lambda d, m: _write(
                d / "unknown.mkv",
                m("h264_opus.mkv").read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"),
            ),
            65,
            "unsupported video codec (unknown to FFmpeg)",
            id="unsupported-codec",
        ),
    ],
)
def test_bad_file_gets_one_line_and_exit_code(
    tmp_path: Path,
    media: MediaFactory,
    make: Callable[[Path, MediaFactory], Path],
    exit_code: int,
    problem: str,
) -> None:
    source = make(tmp_path, media)

    result = run(str(source))

    assert result.exit_code == exit_code
    assert error_lines(result) == [f"error: {source}: {problem}"]


@pytest.mark.parametrize("scheme", ["rtsp", "http", "rtmp"])
def test_unreachable_url(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port()}/live"

    result = run(url)

    assert result.exit_code == 69
    assert error_lines(result) == [f"error: {url}: cannot connect (Connection refused)"]


def test_credentials_never_printed() -> None:
    url = f"rtsp://cam:hunter2@127.0.0.1:{closed_port()}/live"

    result = run(url)

    assert result.exit_code == 69
    assert "hunter2" not in result.stderr + result.stdout
    masked = url.replace("hunter2", "***")
    assert error_lines(result) == [f"error: {masked}: cannot connect (Connection refused)"]


def test_bad_source_does_not_stop_the_others(tmp_path: Path, media: MediaFactory) -> None:
    missing = tmp_path / "missing.mp4"
    good = [media("h264_aac.mp4"), media("h264_opus.mkv")]

    result = run(str(good[0]), str(missing), str(good[1]))

    assert result.exit_code == 66
    assert error_lines(result) == [f"error: {missing}: no such file"]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("3 sources: 2 completed, 1 failed to open; 4 chunks, 8.0 media s, ")


def test_sources_file_and_usage_errors(tmp_path: Path, media: MediaFactory) -> None:
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# cameras\n{media('h264_aac.mp4')}\n\n{media('h264_silent.mp4')}\n")

    result = run("--sources-file", str(listing))
    assert result.exit_code == 0, result.stderr
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("2 sources: 2 completed; 4 chunks, 7.0 media s, ")
    )

    assert run().exit_code == 2
    both = run("--session-id", "s1", str(media("h264_aac.mp4")), str(media("h264_silent.mp4")))
    assert both.exit_code == 2
    assert "--session-id needs exactly one source" in both.stderr
    bad_label = run("--label", "novalue", str(media("h264_aac.mp4")))
    assert bad_label.exit_code == 2
    assert "'novalue' is not KEY=VALUE" in bad_label.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.fixture
def http_server(media_dir: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving the generated media directory."""
    handler = functools.partial(_QuietHandler, directory=str(media_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def test_http_source(http_server: str) -> None:
    result = run(f"{http_server}/h264_aac.ts")

    assert result.exit_code == 0, result.stderr
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith("1 source: 1 completed; 2 chunks, 4.0 media s, ")
    )


def test_http_not_found(http_server: str) -> None:
    url = f"{http_server}/nothing.mp4"

    result = run(url)

    assert result.exit_code == 66
    assert error_lines(result) == [f"error: {url}: not found (HTTP 404)"]


def test_stdin_source(media: MediaFactory) -> None:
    executable = Path(sys.executable).parent / "inter1-pipeline"
    with media("h264_opus.mkv").open("rb") as stdin:
        done = subprocess.run(
            [str(executable), "produce", "--dry-run", "-"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        .splitlines()[-1]
        .startswith("1 source: 1 completed; 2 chunks, 4.0 media s, ")
    )
