"""Helpers for the simulator tests: fixture clips, an SDK session driver.

Every session is driven through the official ``interhumanai`` SDK against a real
:class:`simulator.server.Simulator` on a free local port. The clips are committed fixture
files (``tests/fixtures/media``), not encoded at test time: encoders such as libx264 and
FFmpeg's AAC pick CPU-specific code paths whose output bytes differ between machines, and
the tests assert exact analysis figures of these bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from interhumanai import CloseInfo, InterhumanClient, StreamClient

from chunks.boxes import top_level_boxes
from chunks.containers import sniff_container
from simulator.box_reader import Sample
from simulator.clips import ClipSpec, split_fragments
from simulator.config import AnalysisConfig, LoadConfig, SessionLimits, SimulatorConfig
from simulator.ebml import WebmReader
from simulator.mp4_boxes import Mp4BoxReader
from simulator.server import Simulator

CLIP_A = ClipSpec(seconds=14.0)
"""A moving bar with a tone spoken 2 s on / 1 s off."""
CLIP_B = ClipSpec(seconds=14.0, speed=1, tone_db=-30.0, speech_pattern=(0.5, 1.5))
"""Barely moving, quiet, mostly pauses: a different clip."""
CLIP_GAP = ClipSpec(seconds=14.0, video_gap=(6.0, 9.0))
CLIP_NO_VIDEO = ClipSpec(seconds=6.0, fps=0)
CLIP_RAMP = ClipSpec(seconds=20.0, speed=1, ramp=10.0, speech_pattern=(3.0, 1.0))
"""Motion that speeds up over 20 s: signals change probability and engagement changes state."""
CLIP_WEBM = ClipSpec(seconds=9.0, container="webm")
"""VP8 + Opus in WebM."""

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "media"
FIXTURE_CLIPS: dict[str, ClipSpec] = {
    "clip_a.mp4": CLIP_A,
    "clip_b.mp4": CLIP_B,
    "clip_gap.mp4": CLIP_GAP,
    "clip_no_video.mp4": CLIP_NO_VIDEO,
    "clip_ramp.mp4": CLIP_RAMP,
    "clip_webm.webm": CLIP_WEBM,
}
"""Fixture file -> the spec it was generated from (``tests/fixtures/media/regenerate.py``)."""
# A config frame asking for every optional section: quality overall + timeline, feedback.
ALL_OPTIONS: dict[str, Any] = {
    "include": ["conversation_quality_overall", "conversation_quality_timeline"],
    "goal_dimensions": ["clarity", "energy"],
}


CLIP_B_PACKET_EVENTS: list[tuple[Any, ...]] = [
    ("session.ready",),
    ("session.updated",),
    ("signal.detected", "confusion", "medium", 0.0),
    ("signal.detected", "hesitation", "medium", 0.0),
    ("signal.detected", "uncertainty", "medium", 0.0),
    ("engagement.updated", "neutral", 0.0),
    ("conversation_quality.updated", 33.7, ((0.0, 8.0),)),
    ("feedback.generated",),
    ("signal.updated", "confusion", "low", 0.0),
    ("signal.updated", "hesitation", "medium", 0.0),
    ("signal.updated", "uncertainty", "medium", 0.0),
    ("conversation_quality.updated", 33.9, ((3.0, 11.0),)),
    ("feedback.generated",),
    ("signal.updated", "confusion", "low", 0.0),
    ("signal.updated", "hesitation", "medium", 0.0),
    ("signal.updated", "uncertainty", "medium", 0.0),
    ("conversation_quality.updated", 34.0, ((6.0, 14.0),)),
    ("feedback.generated",),
    ("signal.updated", "confusion", "low", 0.0),
    ("signal.updated", "hesitation", "low", 0.0),
    ("signal.updated", "uncertainty", "medium", 0.0),
    ("conversation_quality.updated", 33.9, ((9.0, 14.2),)),
    ("feedback.generated",),
    ("signal.ended", "confusion", 14.2),
    ("signal.ended", "hesitation", 14.2),
    ("signal.ended", "uncertainty", 14.2),
    ("session.ended", "client_shutdown"),
]
"""CLIP_B's compact events from packet features (``decode="none"`` and ``"boxes"``)."""


def fixture_checksums() -> dict[str, str]:
    """``SHA256SUMS`` of the fixture clips: file name -> hex digest."""
    lines = (FIXTURE_DIR / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines if line)}


@functools.cache
def clip_bytes(spec: ClipSpec) -> bytes:
    """The committed fixture clip generated from ``spec``, checked against its SHA-256."""
    names = [name for name, known in FIXTURE_CLIPS.items() if known == spec]
    if not names:
        raise LookupError(
            f"no fixture clip for {spec}: exact-figure tests need committed media; add the spec "
            "to FIXTURE_CLIPS and run `.venv/bin/python tests/fixtures/media/regenerate.py`"
        )
    data = (FIXTURE_DIR / names[0]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = fixture_checksums()[names[0]]
    if digest != expected:
        raise AssertionError(
            f"fixture {names[0]} has SHA-256 {digest}, SHA256SUMS says {expected}: the "
            "expected analysis figures belong to the committed bytes; restore the file with "
            "`git checkout tests/fixtures/media`, or, when changing the clips on purpose, run "
            "`.venv/bin/python tests/fixtures/media/regenerate.py` and update the figures"
        )
    return data


@dataclass
class SessionRun:
    """What one driven session produced."""

    events: list[Any]
    close: CloseInfo
    session_id: str | None = None
    errors: list[Exception] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        """Event types in order."""
        return [e.type for e in self.events]

    def data(self, kind: str) -> list[dict[str, Any]]:
        """The ``data`` of every event of ``kind`` (JSON mode, enums as strings)."""
        return [
            e.data.model_dump(mode="json", exclude_none=True) for e in self.events if e.type == kind
        ]

    def comparable(self) -> list[tuple[str, Any]]:
        """Events without timestamps and correlation ids (for determinism checks)."""
        return [
            (e.type, e.data.model_dump(mode="json") if hasattr(e, "data") else e.raw.get("data"))
            for e in self.events
        ]


class Driver:
    """Opens SDK stream sessions against one simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def client(self, key: str = "sim-key") -> InterhumanClient:
        """An SDK client pointed at the simulator."""
        return InterhumanClient(access_token=key, base_url=self.sim.http_url)

    async def run(
        self,
        frames: Sequence[bytes],
        *,
        key: str = "sim-key",
        api_version: str = "v1",
        model: str | None = None,
        configs: Sequence[dict[str, Any]] = (),
        close: bool = True,
        before_close: Callable[[StreamClient], Awaitable[None]] | None = None,
    ) -> SessionRun:
        """Send ``configs`` then ``frames``, request a graceful close, collect every event."""
        stream = self.client(key).stream(api_version=api_version, model=model)  # type: ignore[arg-type]
        await stream.connect()
        await stream.wait_for_session_ready()
        for config in configs:
            await stream.update_config(**config)
        try:
            for frame in frames:
                await stream.send_video(frame)
            if before_close is not None:
                await before_close(stream)
            if close:
                await stream.request_close()
        except Exception as exc:  # the server may close first (fatal errors, faults)
            return await self.collect(stream, [exc])
        return await self.collect(stream, [])

    async def collect(self, stream: StreamClient, errors: list[Exception]) -> SessionRun:
        """Read every event until the server closes ``stream``."""
        events = [event async for event in stream]
        close = await stream.wait_closed()
        ids = {e.correlation_id for e in events if hasattr(e, "correlation_id")}
        return SessionRun(events, close, ids.pop() if len(ids) == 1 else None, errors)

    async def usage(self, session_id: str | None = None, *, ended: bool = True) -> dict[str, Any]:
        """GET /usage or /usage/{session_id} as JSON (with ``_status``).

        With ``ended`` a session's record is read once the server has finished it: the client
        may see the close before the server has settled its accounting.
        """
        path = "/usage" if session_id is None else f"/usage/{session_id}"
        async with httpx.AsyncClient(base_url=self.sim.http_url) as http:
            for _ in range(200):
                response = await http.get(path)
                body: dict[str, Any] = response.json()
                if session_id is None or not ended or body.get("state") != "active":
                    break
                await asyncio.sleep(0.05)
        body["_status"] = response.status_code
        return body


def cut_mp4_fragments(data: bytes, fragments: range) -> bytes:
    """A fragmented MP4 with the ``moof``+``mdat`` pairs numbered ``fragments`` cut out.

    What a client whose recorder kept its clock through a stall sends: a jump in the media
    timestamps of every track (a stream skip).
    """
    out = bytearray()
    fragment = -1
    for kind, offset, size in top_level_boxes(data):
        fragment += kind == b"moof"
        if kind in (b"moof", b"mdat") and fragment in fragments:
            continue
        out += data[offset : offset + size]
    return bytes(out)


_SEGMENT_ID, _CLUSTER_ID = 0x18538067, 0x1F43B675


def _ebml_element(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """(id, header length, size-field offset, payload size) of the EBML element at ``pos``."""
    length = 8 - data[pos].bit_length() + 1
    element_id = int.from_bytes(data[pos : pos + length])
    size_at = pos + length
    size_length = 8 - data[size_at].bit_length() + 1
    size = int.from_bytes(data[size_at : size_at + size_length]) & ((1 << (7 * size_length)) - 1)
    return element_id, length + size_length, size_at, size


def cut_webm_clusters(data: bytes, clusters: range) -> bytes:
    """A WebM with the ``Cluster`` s numbered ``clusters`` cut out (Segment size fixed up)."""
    segment_id, header, size_at, size = _ebml_element(data, 0)
    pos = header + size  # past the EBML header
    segment_id, header, size_at, size = _ebml_element(data, pos)
    assert segment_id == _SEGMENT_ID
    kept = bytearray()
    child, cluster = pos + header, -1
    while child < pos + header + size:
        element_id, child_header, _, child_size = _ebml_element(data, child)
        cluster += element_id == _CLUSTER_ID
        end = child + child_header + child_size
        if not (element_id == _CLUSTER_ID and cluster in clusters):
            kept += data[child:end]
        child = end
    size_length = pos + header - size_at
    new_size = (len(kept) | (1 << (7 * size_length))).to_bytes(size_length)
    return data[:size_at] + new_size + bytes(kept)


def _fragment_starts(data: bytes) -> list[int]:
    """Offsets where an MP4 ``moof`` or a WebM ``Cluster`` starts (a frame may start there)."""
    if sniff_container(data) == "mp4":
        return [offset for kind, offset, _ in top_level_boxes(data) if kind == b"moof"]
    _, header, _, size = _ebml_element(data, 0)
    pos = header + size
    _, header, _, size = _ebml_element(data, pos)
    starts, child = [], pos + header
    while child < pos + header + size:
        element_id, child_header, _, child_size = _ebml_element(data, child)
        if element_id == _CLUSTER_ID:
            starts.append(child)
        child += child_header + child_size
    return starts


def _span_s(samples: Sequence[Sample]) -> float:
    """Media seconds from the earliest start to the latest end of ``samples``."""
    if not samples:
        return 0.0
    starts = [s.pts * s.track.num / s.track.den for s in samples]
    ends = [(s.pts + s.duration) * s.track.num / s.track.den for s in samples]
    return max(ends) - min(starts)


def segments(data: bytes, min_s: float = 3.0) -> list[bytes]:
    """``data`` cut at fragment (MP4) or cluster (WebM) starts into frames of >= ``min_s``.

    Each frame carries at least ``min_s`` of media (v1's ``min_segment_duration_seconds``):
    a frame ends at the first fragment start once its samples span ``min_s`` (plus a margin
    over the simulator's millisecond rounding); a shorter tail joins the frame before it, as
    the official plugin pads its last segment.
    """
    reader = Mp4BoxReader() if sniff_container(data) == "mp4" else WebmReader()
    samples = reader.feed(data, 0)

    def between(low: int, high: int) -> list[Sample]:
        return [s for s in samples if low <= s.end_offset - s.size < high]

    cuts = [0]
    for start in _fragment_starts(data)[1:]:
        if _span_s(between(cuts[-1], start)) >= min_s + 0.05:
            cuts.append(start)
    if len(cuts) > 1 and _span_s(between(cuts[-1], len(data))) < min_s + 0.05:
        cuts.pop()
    return [data[a:b] for a, b in zip(cuts, [*cuts[1:], len(data)], strict=True)]


def frames_of(spec: ClipSpec, chunk_bytes: int | None = None) -> list[bytes]:
    """The clip cut into binary frames: ``chunk_bytes`` each, or (default) >= 3 s segments.

    v1 sessions get a non-fatal ``ih6005`` for each frame under 3 s of media, as the docs
    require; pass ``chunk_bytes`` to cut the bytes blindly (v2, or on purpose).
    """
    data = clip_bytes(spec)
    return segments(data) if chunk_bytes is None else split_fragments(data, chunk_bytes)


def instant_config(**changes: Any) -> SimulatorConfig:
    """Tests default to an instant model so event sequences never depend on timing."""
    base = SimulatorConfig(
        load=LoadConfig(processing_ratio=0.0, max_lag_s=3600.0),
        limits=SessionLimits(max_drain_s=20.0),
        analysis=AnalysisConfig(),
    )
    return dataclasses.replace(base, **changes)


def compact(event: Any) -> tuple[Any, ...]:  # noqa: PLR0911 - one return per event kind
    """A short, exact summary of one event for sequence assertions."""
    kind = event.type
    if not hasattr(event, "data"):
        return (kind,)
    data = event.data.model_dump(mode="json", exclude_none=True)
    if kind in ("signal.detected", "signal.updated"):
        return (kind, data["signal_type"], data["probability"], data["start"])
    if kind == "signal.ended":
        return (kind, data["signal_type"], data["end"])
    if kind == "engagement.updated":
        return (kind, data["state"], data["start"])
    if kind in ("coverage.dropped", "coverage.degraded"):
        return (kind, tuple((r["start"], r["end"]) for r in data["ranges"]))
    if kind == "conversation_quality.updated":
        overall = data.get("overall", {}).get("quality_index")
        timeline = tuple((t["start"], t["end"]) for t in data.get("timeline", []))
        return (kind, overall, timeline)
    if kind == "error":
        return (kind, data["code"])
    if kind == "session.ended":
        return (kind, data["reason"])
    return (kind,)


def without_closing(run: SessionRun) -> list[tuple[Any, ...]]:
    """Compact events minus ``session.closing``, whose position depends on arrival timing."""
    return [compact(e) for e in run.events if e.type != "session.closing"]


SimulatorFactory = Callable[..., Awaitable[Driver]]
"""Type of the ``start_simulator`` fixture."""
