"""Errors of the session worker; retry decisions read ``retriable``, never the message."""

from __future__ import annotations

from runtime.errors import ExitCode, PipelineError

__all__ = [
    "ConnectionClosedError",
    "PoisonChunkError",
    "SessionFailedError",
    "SessionWorkerError",
    "StateRecordError",
]


class SessionWorkerError(PipelineError):
    """Root of the session worker's errors."""


class ConnectionClosedError(SessionWorkerError):
    """An Inter-1 connection ended before ``session.ended`` (or never became ready).

    Attributes:
        close_code: the WebSocket close code, or the HTTP status of a refused upgrade.
        error_code: the Inter-1 ``error`` code sent before the close, when there was one.
    """

    def __init__(self, message: str, *, close_code: int, error_code: str | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.error_code = error_code


class SessionFailedError(SessionWorkerError):
    """A video session was given up: a close code never retried, or retries exhausted."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, *, close_code: int, error_code: str | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.error_code = error_code


class PoisonChunkError(SessionWorkerError):
    """A chunk-topic record that cannot be relayed (undecodable, oversize, missing parts)."""

    exit_code = ExitCode.DATA_ERROR


class StateRecordError(SessionWorkerError):
    """A session-state record could not be read (ignored: the session starts fresh)."""
