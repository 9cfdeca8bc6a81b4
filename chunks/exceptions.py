"""Errors of the chunk protocol: malformed container bytes, bad records, broken part sequences.

Every class is a :class:`runtime.errors.PipelineError` with exit code 65 (bad input data):
a worker sends the record that raised one to the dead-letter topic and goes on.
"""

from __future__ import annotations

from runtime.errors import ExitCode, PipelineError

__all__ = [
    "ChunkError",
    "ChunkPartError",
    "ChunkRecordError",
    "ChunkWireError",
    "DuplicatePartError",
    "InconsistentPartError",
    "MalformedBoxError",
    "MissingPartError",
    "OutOfOrderPartError",
    "UnknownChunkError",
    "UnknownContainerError",
]


class ChunkError(PipelineError):
    """Root of the chunk protocol's errors: the input data is bad, retrying will not help."""

    exit_code = ExitCode.DATA_ERROR


class MalformedBoxError(ChunkError, ValueError):
    """An ISO-BMFF box runs past the end of the data (truncated) or declares a size below 8."""


class UnknownContainerError(ChunkError):
    """The bytes do not start with a WebM or fragmented-MP4 init header."""


class ChunkRecordError(ChunkError):
    """A datum does not have the shape of the chunk topic's record it claims to be."""


class ChunkWireError(ChunkRecordError):
    """A framed ``VideoChunk`` value does not parse: cut off inside a field, an invalid
    field value, bytes left over, or a ``byte_size`` that is not the payload's length."""


class ChunkPartError(ChunkError):
    """A part of a split chunk arrived where it does not fit.

    Attributes:
        session_id: the video session.
        seq: the chunk the error is about.
        expected_part: the part index the assembler waited for (None: no part of this
            chunk was expected any more).
        got_part: the part index that arrived (None: the session ended instead).
    """

    def __init__(
        self,
        message: str,
        *,
        session_id: str,
        seq: int,
        expected_part: int | None,
        got_part: int | None,
    ) -> None:
        super().__init__(message)
        self.session_id = session_id
        self.seq = seq
        self.expected_part = expected_part
        self.got_part = got_part


class MissingPartError(ChunkPartError):
    """A chunk's part never arrived: another chunk (or the session's end) came first.

    The incomplete chunk is discarded; the record that revealed the gap was not consumed.
    """


class OutOfOrderPartError(ChunkPartError):
    """A later part of the chunk arrived before the expected one; the chunk is discarded."""


class DuplicatePartError(ChunkPartError):
    """A part that was already received arrived again; it is ignored, the chunk stays intact."""


class UnknownChunkError(ChunkPartError):
    """A part other than 0 arrived for a chunk whose part 0 was never seen."""


class InconsistentPartError(ChunkPartError):
    """A part's ``part_count`` differs from its chunk's part 0; the chunk is discarded."""
