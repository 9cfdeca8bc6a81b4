"""Errors the simulator raises on purpose, classified by attributes (never by message text)."""

from __future__ import annotations

from runtime.errors import ConfigError, ExitCode, PipelineError

__all__ = [
    "FaultSpecError",
    "MalformedMediaError",
    "NoUsableVideoError",
    "SimulatorError",
    "SimulatorNotStartedError",
]


class SimulatorError(PipelineError):
    """Root of the simulator's own errors."""

    exit_code = ExitCode.SOFTWARE


class SimulatorNotStartedError(SimulatorError):
    """An attribute that needs a running server (``url``, ``port``) was read before ``start()``."""


class FaultSpecError(ConfigError):
    """A fault-injection spec (CLI ``--fault``, a ``sim-fault:`` key, ``sim_fault=``) is invalid."""


class MalformedMediaError(SimulatorError):
    """The client's byte stream is not a decodable WebM / fragmented-MP4 stream (``ih5004``).

    Attributes:
        segment: index of the binary frame being read when the demuxer failed.
    """

    exit_code = ExitCode.DATA_ERROR

    def __init__(self, message: str, segment: int | None) -> None:
        super().__init__(message)
        self.segment = segment


class NoUsableVideoError(SimulatorError):
    """The stream carries no video track the selected model could read (``ih5001``)."""

    exit_code = ExitCode.DATA_ERROR
