"""Relay a protocol PyAV's FFmpeg lacks (SRT with the PyPI wheels) through the system ffmpeg.

PyAV's bundled FFmpeg is built without libsrt; Debian's ``ffmpeg`` has it. For a URL whose
protocol the bundled FFmpeg does not list, :class:`FfmpegRelay` runs
``ffmpeg -nostdin -i URL -c copy -f mpegts pipe:1`` (no re-encode) and PyAV demuxes the
MPEG-TS from the relay's stdout, so the rest of the producer is the same as for stdin.

The relay is always reaped: :meth:`FfmpegRelay.close` closes the pipe, terminates and
waits (killing after a grace period), and an ``atexit`` hook closes any relay still open.
It runs in its own process group, so a terminal's Ctrl-C reaches the producer (which stops
the session cleanly) and not the relay. Its stderr is kept (last lines, credentials
masked) for the error message.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

import av

from producers.exceptions import (
    MissingToolError,
    SourceError,
    SourceUnavailableError,
    UnsupportedSourceError,
)
from runtime.logs import get_logger
from runtime.redact import redact_text

__all__ = [
    "FfmpegRelay",
    "needs_relay",
    "pyav_protocols",
    "reap",
    "system_ffmpeg_protocols",
]

_log = get_logger("producers.relay")

_POLL_S = 0.2
_EXIT_GRACE_S = 3.0
_STDERR_LINES = 20
# The watchdog lets the relay's own protocol timeout fire first (its message is better).
_WATCHDOG_MARGIN_S = 5.0
_LOG_PREFIX = re.compile(r"^\[[\w:-]+ @ 0x[0-9a-fA-F]+\]\s*")


def _timeout_options(protocol: str, timeout_s: float) -> list[str]:
    """Input options that bound the relay's connect and reads (FFmpeg's units per protocol)."""
    if protocol == "srt":
        # libsrt: `timeout` is the socket I/O timeout in µs, `connect_timeout` in ms.
        return [
            "-timeout",
            str(int(timeout_s * 1e6)),
            "-connect_timeout",
            str(int(timeout_s * 1e3)),
        ]
    return ["-rw_timeout", str(int(timeout_s * 1e6))]  # generic URLContext option, in µs


def _libavformat_paths() -> list[str]:
    """Where the libavformat that PyAV loaded lives (the mapped one first)."""
    found: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(" ")[-1]
                if "/libavformat" in path and path not in found:
                    found.append(path)
    except OSError:
        pass
    package = Path(av.__file__).resolve().parent
    for folder in (package.parent / "av.libs", package / ".dylibs"):
        found.extend(str(p) for p in sorted(folder.glob("libavformat*")))
    return found


@functools.cache
def pyav_protocols() -> frozenset[str] | None:
    """Input protocols of PyAV's FFmpeg (``avio_enum_protocols``), or None if not knowable."""
    for path in _libavformat_paths():
        try:
            lib = ctypes.CDLL(path)
            enum = lib.avio_enum_protocols
        except (OSError, AttributeError):
            continue
        enum.restype = ctypes.c_char_p
        enum.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        opaque = ctypes.c_void_p()
        names: set[str] = set()
        while (name := enum(ctypes.byref(opaque), 0)) is not None:
            names.add(name.decode())
        if names:
            return frozenset(names)
    return None


@functools.cache
def system_ffmpeg_protocols(ffmpeg: str) -> frozenset[str]:
    """Input protocols of the ``ffmpeg`` executable at ``ffmpeg`` (empty if it will not run)."""
    try:
        out = subprocess.run(
            [ffmpeg, "-hide_banner", "-protocols"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    inputs = out.split("Input:", 1)[-1].split("Output:", 1)[0]
    return frozenset(inputs.split())


def needs_relay(url: str) -> bool:
    """True when PyAV's FFmpeg can open ``url`` by neither a protocol nor a demuxer."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    known = pyav_protocols()
    if not scheme or known is None or scheme in known:
        return False
    return not _url_demuxer(scheme)


def _url_demuxer(name: str) -> bool:
    """True for a demuxer that opens its own URLs (``AVFMT_NOFILE``, like RTSP)."""
    if name not in av.formats_available:
        return False
    try:
        return bool(av.format.ContainerFormat(name, "r").no_file)
    except ValueError:  # a muxer only
        return False


class FfmpegRelay:
    """The system ffmpeg copying one URL to MPEG-TS on a pipe; a file-like ``read`` for PyAV.

    No I/O until :meth:`start`. ``stop`` (the session's stop flag) makes :meth:`read` return
    end-of-stream at once. :meth:`failure` says, after end-of-stream, whether the relay failed.
    """

    def __init__(self, url: str, display: str, *, timeout_s: float, stop: threading.Event) -> None:
        self.url = url
        self.display = display
        self.protocol = urlsplit(url).scheme.lower()
        self.timeout_s = timeout_s
        self.received = 0
        self._stop = stop
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._stderr_thread: threading.Thread | None = None
        self._timed_out = False
        self._eof = False
        self._closed = False
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The relay process id once started."""
        return self._proc.pid if self._proc is not None else None

    def command(self, ffmpeg: str) -> list[str]:
        """The ffmpeg command line (holds the URL as given: credentials included)."""
        return [
            ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            *_timeout_options(self.protocol, self.timeout_s),
            "-i",
            self.url,
            "-c",
            "copy",
            "-flush_packets",
            "1",
            "-f",
            "mpegts",
            "pipe:1",
        ]

    def start(self) -> None:
        """Spawn the relay; raises :class:`UnsupportedSourceError` when ffmpeg cannot do it.

        :class:`MissingToolError` (exit 78) when there is no ``ffmpeg`` on ``PATH``.
        """
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise MissingToolError(
                self.display,
                f"{self.protocol}:// is not in PyAV's FFmpeg and no ffmpeg executable was found"
                " on PATH to relay it: install ffmpeg (Debian: apt-get install ffmpeg)",
            )
        if self.protocol not in system_ffmpeg_protocols(ffmpeg):
            raise UnsupportedSourceError(
                self.display,
                f"{self.protocol}:// is supported neither by PyAV's FFmpeg nor by {ffmpeg}",
            )
        with self._lock:
            if self._proc is not None or self._closed:
                return
            self._proc = subprocess.Popen(
                self.command(ffmpeg),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                start_new_session=True,  # a terminal's Ctrl-C is for the producer, not the relay
            )
            _LIVE.add(self)
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, name=f"relay-stderr-{self._proc.pid}", daemon=True
        )
        self._stderr_thread.start()
        _log.info("relay_started", source=self.display, pid=self._proc.pid)

    def _drain_stderr(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._stderr.append(line)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of MPEG-TS; ``b""`` at end of stream, on stop or on timeout."""
        proc = self._proc
        if proc is None or proc.stdout is None or self._closed:
            return b""
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout_s + _WATCHDOG_MARGIN_S
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self._timed_out = True
                _log.warning("relay_timeout", source=self.display, timeout_s=self.timeout_s)
                self.close()
                return b""
            try:
                ready, _, _ = select.select([fd], [], [], min(left, _POLL_S))
                if ready:
                    data = os.read(fd, size)
                    self.received += len(data)
                    self._eof = not data
                    return data
            except (OSError, ValueError):  # closed under us by close()
                return b""
        return b""

    def failure(self) -> SourceError | None:
        """The relay's failure as a source error, or None (a clean end, a stop, or no failure:
        while its output has not ended, whatever went wrong is not the relay's doing)."""
        if self._stop.is_set():
            return None
        if self._timed_out:
            what = "no answer" if self.received == 0 else "no data"
            return SourceUnavailableError(self.display, f"{what} within {self.timeout_s:g} s")
        if not self._eof:
            return None
        code = self._wait(_EXIT_GRACE_S)
        if code is None:  # closed its output but lives on: stop it, report what it said
            self.close()
            code = self._proc.returncode if self._proc is not None else None
        if code == 0 or code is None:
            return None
        what = "cannot connect" if self.received == 0 else "stream failed"
        return SourceUnavailableError(self.display, f"{what} ({self._detail(code)})")

    def _wait(self, timeout_s: float) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def _detail(self, code: int) -> str:
        """ffmpeg's last stderr line, without its log prefix, the URL and credentials."""
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1.0)
        line = self._stderr[-1] if self._stderr else ""
        line = _LOG_PREFIX.sub("", line)
        line = line.removeprefix(self.url).removeprefix(": ").strip()
        line = redact_text(line.replace(self.url, self.display))
        status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return f"ffmpeg: {line}" if line else f"ffmpeg {status}"

    def stderr_lines(self) -> list[str]:
        """The relay's last stderr lines, credentials masked."""
        return [redact_text(line.replace(self.url, self.display)) for line in self._stderr]

    def close(self) -> None:
        """Stop and reap the relay (idempotent, any thread): close pipe, TERM, then KILL."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            proc = self._proc
            _LIVE.discard(self)
        if proc is None:
            return
        if proc.stdout is not None:
            proc.stdout.close()  # a relay blocked on a full pipe gets EPIPE
        reap(proc, _EXIT_GRACE_S)
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=_EXIT_GRACE_S)
        if proc.stderr is not None:
            proc.stderr.close()
        _log.info("relay_stopped", source=self.display, pid=proc.pid, returncode=proc.returncode)


def reap(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Stop ``proc`` if it still runs (TERM, then KILL after ``grace_s``) and wait for it."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_LIVE: set[FfmpegRelay] = set()


def _close_all() -> None:
    for relay in list(_LIVE):
        relay.close()


atexit.register(_close_all)
