"""Where video comes from: parse a source string, open it with PyAV, map failures to errors.

Files, network streams (RTSP, RTMP, SRT, HTTP, HLS), V4L2 capture devices and stdin (``-``)
all open through :func:`open_source`, which returns a PyAV input container or raises a
:class:`~producers.exceptions.SourceError` naming the problem in one line.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import av

from producers.exceptions import (
    EmptySourceError,
    NotMediaError,
    SourceError,
    SourceNotFoundError,
    SourceUnavailableError,
    TruncatedMediaError,
    UnsupportedSourceError,
)
from runtime.redact import redact_url

if TYPE_CHECKING:  # imported by the reader only for a source that needs it
    from producers.relay import FfmpegRelay

__all__ = ["SourceSpec", "open_source", "parse_source", "sniff_file_format"]

# MP4/MOV samples come with their sizes, times and sync flags from the file's sample tables.
# For these codecs FFmpeg's header parsers on top (H.264, HEVC, AV1) change none of the
# packets' fields or bytes and cost ~1 µs a video packet (~0.09 s of CPU an hour at 25 fps),
# so such a file is read without them; other codecs (e.g. MP3, which FFmpeg splits into
# frames) keep them. FFmpeg wants NOFILLIN with NOPARSE (its fill-in code works on frames).
_SAMPLE_TABLE_CODECS = frozenset({"h264", "hevc", "av1", "aac", "opus"})
_NO_PARSERS = {"fflags": "+noparse+nofillin"}

_NETWORK_SCHEMES = {
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "rtmp": "rtmp",
    "rtmps": "rtmp",
    "srt": "srt",
    "http": "http",
    "https": "http",
    "udp": "rtsp",
    "tcp": "http",
}
_UNREACHABLE_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EIO,
        errno.EAGAIN,
    }
)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: what to pass to FFmpeg and how to describe it.

    ``display`` is safe to log and publish (credentials masked); ``target`` may hold them.
    """

    target: str
    kind: str
    display: str
    live: bool
    input_format: str | None = None

    @property
    def is_file(self) -> bool:
        """True for a local file (a known size and end, can be looped and paced)."""
        return self.kind == "file"


def parse_source(text: str) -> SourceSpec:
    """Classify a source string: a path, ``-`` (stdin), ``/dev/videoN`` or a URL."""
    if text == "-":
        return SourceSpec("pipe:0", "stdin", "stdin", live=True)
    if text.startswith("v4l2:"):
        device = text.removeprefix("v4l2:").removeprefix("//")
        return SourceSpec(device, "device", device, live=True, input_format="v4l2")
    if text.startswith("/dev/video"):
        return SourceSpec(text, "device", text, live=True, input_format="v4l2")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme == "file":
        path = urlsplit(text).path
        return SourceSpec(path, "file", path, live=False)
    if scheme:
        kind = _NETWORK_SCHEMES.get(scheme)
        if kind is None:
            raise UnsupportedSourceError(redact_url(text), f"unsupported URL scheme {scheme!r}")
        if kind == "http" and urlsplit(text).path.lower().endswith(".m3u8"):
            kind = "hls"
        return SourceSpec(text, kind, redact_url(text), live=True)
    return SourceSpec(text, "file", text, live=False)


def _network_options(spec: SourceSpec) -> dict[str, str]:
    options: dict[str, str] = {}
    if spec.kind == "rtsp":
        options["rtsp_transport"] = "tcp"
    if spec.kind in ("http", "hls"):
        options["reconnect"] = "1"
        options["reconnect_streamed"] = "1"
    return options


def _check_file(spec: SourceSpec) -> None:
    path = Path(spec.target)
    if not path.exists():
        raise SourceNotFoundError(spec.display, "no such file")
    if path.is_dir():
        raise SourceNotFoundError(spec.display, "is a directory, not a media file")
    size = path.stat().st_size
    if size == 0:
        raise EmptySourceError(spec.display, "empty file (0 bytes)")


def sniff_file_format(head: bytes) -> str | None:
    """Name the container family from a source file's first bytes, or None when unrecognised.

    Any file a source may be (also AVI, MPEG-TS, FLV, non-fragmented MP4); the container
    of a chunk stream is :func:`chunks.containers.sniff_container`'s job.
    """
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpegts"
    if head.startswith(b"FLV"):
        return "flv"
    return None


def _sample_table_file(spec: SourceSpec) -> bool:
    """Whether ``spec`` is an MP4/MOV file (sniffed from its first bytes)."""
    try:
        with open(spec.target, "rb") as file:
            return sniff_file_format(file.read(16)) == "mp4"
    except OSError:
        return False  # av.open reports it


def _parsers_needed(container: av.container.InputContainer) -> bool:
    """Whether a stream of ``container`` has a codec whose packets FFmpeg's parsers may change."""
    return any(
        stream.codec_context.name not in _SAMPLE_TABLE_CODECS
        for stream in container.streams
        if stream.type in ("video", "audio")
    )


def open_source(
    spec: SourceSpec, *, timeout_s: float = 15.0, relay: FfmpegRelay | None = None
) -> av.container.InputContainer:
    """Open ``spec`` for demuxing, raising a :class:`SourceError` subclass on failure.

    With ``relay`` (see :func:`producers.relay.needs_relay`), the relay is started and
    its MPEG-TS output is demuxed instead of opening the URL in PyAV. An MP4/MOV file whose
    streams are all H.264, HEVC, AV1, AAC or Opus is read without FFmpeg's parsers (see
    ``_NO_PARSERS``); any other codec reopens it with them.
    """
    if relay is not None:
        return _open_relayed(spec, relay)
    options: dict[str, str] = {}
    timeout: tuple[float, float] | None = None
    if spec.is_file:
        _check_file(spec)
        if spec.input_format is None and _sample_table_file(spec):
            container = _open(spec, dict(_NO_PARSERS), None, timeout_s)
            if not _parsers_needed(container):
                return container
            container.close()
    else:
        options = _network_options(spec)
        timeout = (timeout_s, timeout_s)
    return _open(spec, options, timeout, timeout_s)


def _open(
    spec: SourceSpec,
    options: dict[str, str],
    timeout: tuple[float, float] | None,
    timeout_s: float,
) -> av.container.InputContainer:
    try:
        return av.open(spec.target, "r", format=spec.input_format, options=options, timeout=timeout)
    except av.error.FileNotFoundError as exc:
        raise SourceNotFoundError(spec.display, "not found") from exc
    except av.error.HTTPNotFoundError as exc:
        raise SourceNotFoundError(spec.display, "not found (HTTP 404)") from exc
    except av.error.ProtocolNotFoundError as exc:
        raise UnsupportedSourceError(spec.display, "protocol not supported by FFmpeg") from exc
    except av.error.InvalidDataError as exc:
        raise classify_data_error(spec, exc) from exc
    except av.error.ExitError as exc:
        # Interrupted by PyAV's timeout callback.
        raise SourceUnavailableError(spec.display, f"no answer within {timeout_s:g} s") from exc
    except OSError as exc:
        raise classify_os_error(spec, exc) from exc


def _open_relayed(spec: SourceSpec, relay: FfmpegRelay) -> av.container.InputContainer:
    """Start ``relay`` and demux its MPEG-TS output; the relay's failure explains most errors."""
    relay.start()
    try:
        # No PyAV timeout: the relay's protocol timeout and its read watchdog bound it.
        return av.open(relay, "r", format="mpegts")
    except (av.error.FFmpegError, OSError, EOFError) as exc:
        failure = relay.failure()
        relay.close()
        if failure is not None:
            raise failure from exc
        if isinstance(exc, av.error.InvalidDataError):
            raise classify_data_error(spec, exc) from exc
        problem = f"stream ended while opening ({_reason(exc)})"
        raise SourceUnavailableError(spec.display, problem) from exc
    except BaseException:
        relay.close()
        raise


def classify_data_error(spec: SourceSpec, exc: Exception) -> SourceError:
    """Map an FFmpeg "invalid data" failure to not-media or truncated, by the file's magic."""
    if spec.is_file:
        with Path(spec.target).open("rb") as handle:
            family = sniff_file_format(handle.read(512))
        if family is not None:
            return TruncatedMediaError(
                spec.display, f"truncated or corrupt {family} data ({_reason(exc)})"
            )
        return NotMediaError(spec.display, "not a media file (no known container format)")
    return NotMediaError(spec.display, f"stream is not readable media ({_reason(exc)})")


def classify_os_error(spec: SourceSpec, exc: OSError) -> SourceError:
    """Map an operating-system error while opening or reading to a source error."""
    if exc.errno == errno.ENOENT:
        return SourceNotFoundError(spec.display, "not found")
    if not spec.is_file and (exc.errno in _UNREACHABLE_ERRNOS or exc.errno is None):
        return SourceUnavailableError(spec.display, f"cannot connect ({_reason(exc)})")
    if exc.errno == errno.EACCES:
        return SourceNotFoundError(spec.display, "permission denied")
    return SourceError(spec.display, _reason(exc))


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0] if text else type(exc).__name__
