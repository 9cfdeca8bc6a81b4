"""Fragmented-MP4 muxing of one chunk (box walking and part splitting: :mod:`chunks.boxes`).

Each chunk is muxed into its own in-memory fMP4 (``ftyp`` + ``moov`` init header, then
``moof``/``mdat`` fragments cut at video keyframes), so every chunk is self-contained by
construction. ``frag_discont`` + ``delay_moov`` make the fragments carry the packets' own
decode times, so media time stays continuous from the session's start across chunks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import av

__all__ = ["MOVFLAGS", "mux_chunk"]

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_discont+delay_moov"


def mux_chunk(
    templates: Sequence[av.stream.Stream],
    packets: Sequence[tuple[int, av.Packet[Any]]],
    *,
    frag_size_bytes: int | None = None,
) -> bytes:
    """Mux ``packets`` (``(template index, packet)``) into one fMP4 byte string.

    ``frag_size_bytes`` additionally cuts fragments before they exceed that many bytes
    (used to split an oversize GOP into record-sized pieces).
    """
    buffer = io.BytesIO()
    options = {"movflags": MOVFLAGS, "strict": "experimental"}
    if frag_size_bytes is not None:
        options["frag_size"] = str(frag_size_bytes)
    with av.open(buffer, "w", format="mp4", options=options) as out:
        streams = [out.add_stream_from_template(t, opaque=True) for t in templates]
        for index, packet in packets:
            packet.stream = streams[index]
            out.mux_one(packet)
    return buffer.getvalue()
