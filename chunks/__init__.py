"""The chunk protocol, without PyAV: typed chunk-topic records, part assembly, MP4 boxes
and WebM elements.

Producers build records with it, session workers read them with it, the simulator and
the demo sniff and continue container streams with it. Import what you need from here
or from the submodules (``chunks.records``, ``chunks.assembler``, ``chunks.boxes``,
``chunks.containers``, ``chunks.ebml``, ``chunks.exceptions``, ``chunks.wire``).
"""

from __future__ import annotations

from chunks.assembler import AssembledChunk, ChunkAssembler
from chunks.boxes import INIT_BOXES, fragments_only, split_parts, top_level_boxes
from chunks.containers import (
    Container,
    continuation,
    require_container,
    sniff_container,
    stream_head,
)
from chunks.ebml import clusters_only, open_segment
from chunks.exceptions import (
    ChunkError,
    ChunkPartError,
    ChunkRecordError,
    ChunkWireError,
    DuplicatePartError,
    InconsistentPartError,
    MalformedBoxError,
    MissingPartError,
    OutOfOrderPartError,
    UnknownChunkError,
    UnknownContainerError,
)
from chunks.records import (
    ChunkTopicRecord,
    SessionEnded,
    SessionStarted,
    VideoChunk,
    chunk_topic_record,
    video_chunk_parts,
)
from chunks.wire import VideoChunkReader

__all__ = [
    "INIT_BOXES",
    "AssembledChunk",
    "ChunkAssembler",
    "ChunkError",
    "ChunkPartError",
    "ChunkRecordError",
    "ChunkTopicRecord",
    "ChunkWireError",
    "Container",
    "DuplicatePartError",
    "InconsistentPartError",
    "MalformedBoxError",
    "MissingPartError",
    "OutOfOrderPartError",
    "SessionEnded",
    "SessionStarted",
    "UnknownChunkError",
    "UnknownContainerError",
    "VideoChunk",
    "VideoChunkReader",
    "chunk_topic_record",
    "clusters_only",
    "continuation",
    "fragments_only",
    "open_segment",
    "require_container",
    "sniff_container",
    "split_parts",
    "stream_head",
    "top_level_boxes",
    "video_chunk_parts",
]
