"""Errors raised while ingesting a source, classified by attributes (never by message).

Every message is one line that names the problem; the caller prefixes the source name.
"""

from __future__ import annotations

from runtime.errors import ExitCode, PipelineError

__all__ = [
    "EmptySourceError",
    "InternalProducerError",
    "MissingToolError",
    "NoVideoStreamError",
    "NotMediaError",
    "ProducerError",
    "PublishError",
    "PublishNotAcceptedError",
    "SourceError",
    "SourceNotFoundError",
    "SourceUnavailableError",
    "SpoolCorruptError",
    "SpoolLockedError",
    "TruncatedMediaError",
    "UnsupportedCodecError",
    "UnsupportedSourceError",
]


class ProducerError(PipelineError):
    """Root of the producer's errors."""


class SourceError(ProducerError):
    """A source could not be read. ``source`` is the source's display name (no credentials)."""

    exit_code = ExitCode.DATA_ERROR

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class SourceNotFoundError(SourceError):
    """The file (or device, or URL path) does not exist."""

    exit_code = ExitCode.NO_INPUT


class UnsupportedSourceError(SourceError):
    """The source's kind or protocol is not supported by this build."""

    exit_code = ExitCode.USAGE


class MissingToolError(UnsupportedSourceError):
    """The source needs a program this machine lacks (the system ffmpeg, to relay SRT)."""

    exit_code = ExitCode.CONFIG


class EmptySourceError(SourceError):
    """The file exists but holds no bytes."""


class NotMediaError(SourceError):
    """The bytes are not a recognisable media container."""


class TruncatedMediaError(SourceError):
    """The container was recognised but ends early or is corrupt."""


class NoVideoStreamError(SourceError):
    """The media has no video stream."""


class UnsupportedCodecError(SourceError):
    """The video codec can neither be stream-copied nor decoded for transcoding."""


class SourceUnavailableError(SourceError):
    """A network source or device could not be reached; it may work later."""

    retriable = True
    exit_code = ExitCode.UNAVAILABLE


class PublishError(ProducerError):
    """Kafka refused or failed to acknowledge a record."""

    retriable = True
    exit_code = ExitCode.UNAVAILABLE


class PublishNotAcceptedError(PublishError):
    """The Kafka client did not take a record within its request timeout (nothing was sent)."""


class InternalProducerError(ProducerError):
    """An unexpected failure inside the producer (a bug); the session still ends."""

    exit_code = ExitCode.SOFTWARE


class SpoolCorruptError(ProducerError):
    """A spool file SQLite cannot read, or that is not a spool of this format."""

    exit_code = ExitCode.DATA_ERROR


class SpoolLockedError(ProducerError):
    """Another process holds the spool (it is still publishing that session)."""

    retriable = True
    exit_code = ExitCode.UNAVAILABLE
