"""Helpers for the session-worker tests: fixture clips as chunk records, worker handles,
reading the output topics. Every wait has its own deadline and says what did not arrive."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import av
from aiokafka import AIOKafkaConsumer, TopicPartition
from sim_helpers import ClipSpec, clip_bytes

from chunks import SessionEnded, SessionStarted, VideoChunk, top_level_boxes
from chunks.ebml import CLUSTER_ID, element_header
from runtime.consume_loop import LoopStats
from runtime.kafka import make_consumer, make_producer
from runtime.settings import Inter1Settings, SecretStr, SessionWorkerSettings
from schemas.codec import get_codec
from workers.session.app import WorkerRuntime, run_worker
from workers.session.outbox import WorkerTopics

FAST = {
    "commit_interval_s": 0.3,
    "publish_interval_s": 0.1,
    "session_timeout_s": 6.0,
    "http_port": 0,
    "reconnect_base_s": 0.05,
    "reconnect_max_s": 0.2,
    "drain_timeout_s": 20.0,
    # recordings flat out: the tests' simulator has an instant model that never sheds
    # (tests/workers/session/test_pacing.py covers pacing against one that does)
    "recorded_pace": 0.0,
}


@dataclass(frozen=True)
class ClipChunk:
    """One self-contained chunk of a fixture clip."""

    seq: int
    media_start_s: float
    media_duration_s: float
    payload: bytes


@dataclass(frozen=True)
class ClipChunks:
    """A fixture clip cut at its keyframes: chunks and the stream a connection carries."""

    chunks: list[ClipChunk]
    stream: bytes
    duration_s: float


def fixture_chunks(spec: ClipSpec) -> ClipChunks:
    """Cut the committed fixture clip at each keyframe's fragment (init header + fragments)."""
    return cut_clip(clip_bytes(spec))


def cut_clip(data: bytes) -> ClipChunks:
    """Cut a fragmented MP4 at each keyframe's fragment (init header + fragments)."""
    boxes = top_level_boxes(data)
    moofs = [offset for kind, offset, _ in boxes if kind == b"moof"]
    end = next((offset for kind, offset, _ in boxes if kind == b"mfra"), len(data))
    init = data[: moofs[0]]
    with av.open(io.BytesIO(data)) as container:
        origin = min(
            float(s.start_time * s.time_base) for s in container.streams if s.start_time is not None
        )
        duration = container.duration / 1_000_000
        keys: dict[int, float] = {}
        for packet in container.demux():
            if packet.stream.type == "video" and packet.is_keyframe and packet.pos is not None:
                moof = max(o for o in moofs if o <= packet.pos)
                keys.setdefault(moof, float(packet.pts * packet.time_base) - origin)
    starts = sorted(keys)
    starts[0] = moofs[0]
    times = [0.0] + [round(keys[o], 3) for o in starts[1:]]
    total = round(duration - origin, 3) if origin < 0 else round(duration, 3)
    chunks = []
    for i, offset in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else end
        until = times[i + 1] if i + 1 < len(times) else total
        chunks.append(ClipChunk(i, times[i], round(until - times[i], 3), init + data[offset:stop]))
    return ClipChunks(chunks, init + data[moofs[0] : end], total)


def webm_fixture_chunks(spec: ClipSpec, clusters_per_chunk: int = 3) -> ClipChunks:
    """Cut the committed WebM fixture every ``clusters_per_chunk`` clusters (init header +
    clusters; times from the clusters' timecodes in ms, the fixture's TimecodeScale)."""
    data = clip_bytes(spec)
    _, header, size = element_header(data, 0)
    _, seg_header, seg_size = element_header(data, header + size)
    child, end = header + size + seg_header, header + size + seg_header + seg_size
    clusters: list[tuple[int, int, float]] = []  # offset, end, timecode (s)
    while child < end:
        ident, header, size = element_header(data, child)
        if ident == CLUSTER_ID:
            _, tc_header, tc_size = element_header(data, child + header)
            at = child + header + tc_header
            clusters.append((child, child + header + size, int.from_bytes(data[at : at + tc_size])))
        child += header + size
    with av.open(io.BytesIO(data)) as container:
        total = container.duration / 1_000_000  # the Segment's Duration (9.008 s)
    init = data[: clusters[0][0]]
    groups = [
        clusters[i : i + clusters_per_chunk] for i in range(0, len(clusters), clusters_per_chunk)
    ]
    chunks = []
    for seq, group in enumerate(groups):
        start = round(group[0][2] / 1000)
        until = round(groups[seq + 1][0][2] / 1000) if seq + 1 < len(groups) else total
        payload = init + data[group[0][0] : group[-1][1]]
        chunks.append(ClipChunk(seq, float(start), round(until - start, 3), payload))
    return ClipChunks(chunks, data, total)


def make_topics(kafka_topic: Callable[..., str]) -> WorkerTopics:
    """Fresh topics for one test."""
    return WorkerTopics(
        chunks=kafka_topic(2),
        events=kafka_topic(2),
        usage=kafka_topic(1),
        dead_letter=kafka_topic(1),
        session_state=kafka_topic(2, config={"cleanup.policy": "compact"}),
    )


def started_record(session_id: str, *, live: bool = False) -> SessionStarted:
    """A SessionStarted for a fixture clip."""
    return SessionStarted(
        session_id=session_id,
        source_url="fixture:clip",
        source_kind="file",
        live=live,
        container="mp4",
        mime_type='video/mp4; codecs="avc1.64000c,mp4a.40.2"',
        video_codec="h264",
        audio_codec="aac",
        width=160,
        height=120,
        frame_rate=10.0,
        transcoded=False,
        chunk_target_duration_s=1.0,
        producer_id="test",
        started_at=datetime.now(UTC),
        tenant="tenant-a",
        app="tests",
    )


class ChunkPublisher:
    """Publishes chunk-topic records (Avro, keyed by session id) to a topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._producer = make_producer()
        self._codec = get_codec()

    async def __aenter__(self) -> ChunkPublisher:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, record: SessionStarted | VideoChunk | SessionEnded) -> None:
        value = self._codec.encode(record.AVRO_NAME, record.to_avro(), topic=self.topic)
        await self._producer.send_and_wait(self.topic, value, key=record.session_id.encode())

    async def raw(self, key: str, value: bytes) -> None:
        await self._producer.send_and_wait(self.topic, value, key=key.encode())

    async def chunk(
        self, session_id: str, chunk: ClipChunk, *, produced_at: datetime | None = None
    ) -> None:
        await self.send(
            VideoChunk(
                session_id=session_id,
                seq=chunk.seq,
                media_start_s=chunk.media_start_s,
                media_duration_s=chunk.media_duration_s,
                keyframe_start=True,
                payload=chunk.payload,
                produced_at=produced_at or datetime.now(UTC),
            )
        )

    async def session(
        self, session_id: str, clip: ClipChunks, *, pause_s: float = 0.0, live: bool = False
    ) -> None:
        """SessionStarted, every chunk (``pause_s`` apart), SessionEnded."""
        await self.send(started_record(session_id, live=live))
        for chunk in clip.chunks:
            await self.chunk(session_id, chunk)
            if pause_s:
                await asyncio.sleep(pause_s)
        await self.end(session_id, clip)

    async def paced_until(
        self,
        session_id: str,
        chunks: list[ClipChunk],
        reader: TopicReader,
        done: Callable[[TopicReader], bool],
        *,
        within_s: float = 30.0,
        what: str,
    ) -> list[ClipChunk]:
        """Publish ``chunks`` one by one, reading ``reader`` between them (live pacing),
        until ``done``; returns the chunks not yet published."""
        deadline = time.monotonic() + within_s
        left = list(chunks)
        while not done(reader):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not arrive within {within_s:g} s")
            if left:
                await self.chunk(session_id, left.pop(0))
            await reader.poll()
        return left

    async def end(self, session_id: str, clip: ClipChunks) -> None:
        await self.send(
            SessionEnded(
                session_id=session_id,
                reason="end_of_stream",
                chunks=len(clip.chunks),
                media_seconds=clip.duration_s,
                bytes=sum(len(c.payload) for c in clip.chunks),
                ended_at=datetime.now(UTC),
            )
        )


@dataclass
class WorkerHandle:
    """An in-process worker task."""

    task: asyncio.Task[LoopStats]
    runtime: WorkerRuntime

    async def stop(self) -> None:
        if not self.task.done():
            self.runtime.loop.request_stop()
        await asyncio.wait({self.task}, timeout=60)
        if self.task.done() and not self.task.cancelled():
            self.task.result()


WorkerFactory = Callable[..., Awaitable[WorkerHandle]]


def worker_settings(**changes: Any) -> SessionWorkerSettings:
    """Worker settings for tests: a fresh group unless given, fast checkpoints."""
    values = {"group_id": f"test-workers-{uuid.uuid4().hex[:8]}", **FAST, **changes}
    return SessionWorkerSettings(**values)


async def start_worker(
    topics: WorkerTopics,
    base_url: str,
    *,
    api_key: str = "sim-key",
    settings: SessionWorkerSettings | None = None,
    api_version: str = "v1",
) -> WorkerHandle:
    """Start a worker task and wait until it runs."""
    started = asyncio.Event()
    out: list[WorkerRuntime] = []
    inter1 = Inter1Settings(api_key=SecretStr(api_key), base_url=base_url, api_version=api_version)
    task = asyncio.create_task(
        run_worker(
            topics,
            worker=settings or worker_settings(),
            inter1=inter1,
            started=started,
            runtime_out=out,
        )
    )
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert started.is_set(), "the worker did not start within 30 s"
    return WorkerHandle(task, out[0])


@dataclass
class TopicReader:
    """Reads every record of a topic from the beginning, decoded, grouped by key."""

    topic: str
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> TopicReader:
        consumer = make_consumer(group_id=None)
        await consumer.start()
        parts = consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        return self

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        codec = get_codec()
        batches = await self._consumer.getmany(timeout_ms=200)
        for batch in batches.values():
            for record in batch:
                key = record.key.decode() if record.key else ""
                self.records.append((key, codec.decode(record.value).datum))

    async def drain(self) -> None:
        """Read up to the topic's end as of now (what was durable when called)."""
        assert self._consumer is not None
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        deadline = time.monotonic() + 30
        while True:
            positions = [await self._consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return
            assert time.monotonic() < deadline, f"could not read {self.topic} to its end"
            await self.poll()

    def of(self, key: str) -> list[dict[str, Any]]:
        return [datum for k, datum in self.records if k == key]

    async def until(
        self, done: Callable[[TopicReader], bool], *, within_s: float, what: str
    ) -> None:
        deadline = time.monotonic() + within_s
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what} did not arrive on {self.topic} within {within_s:g} s "
                    f"({len(self.records)} records read)"
                )
            await self.poll()


def ended(events: list[dict[str, Any]], reason: str = "client_shutdown") -> bool:
    """Whether the events include ``session.ended`` with ``reason``."""
    return any(
        e["event_type"] == "session.ended" and e["payload"][1].get("reason") == reason
        for e in events
    )


def summary(  # noqa: PLR0911 - one return per event kind
    kind: str, data: dict[str, Any], offset_s: float = 0.0
) -> tuple[Any, ...]:
    """A short exact summary of one event in session media time (``offset_s`` + t)."""

    def t(value: float) -> float:
        return round(offset_s + value, 3)

    if kind in ("signal.detected", "signal.updated"):
        return (kind, data["signal_type"], data["probability"], t(data["start"]))
    if kind == "signal.ended":
        return (kind, data["signal_type"], t(data["end"]))
    if kind == "engagement.updated":
        return (kind, data["state"], t(data["start"]))
    if kind in ("coverage.dropped", "coverage.degraded"):
        return (kind, tuple((t(r["start"]), t(r["end"])) for r in data["ranges"]))
    if kind == "conversation_quality.updated":
        overall = (data.get("overall") or {}).get("quality_index")
        timeline = tuple((t(x["start"]), t(x["end"])) for x in data.get("timeline") or ())
        return (kind, overall, timeline)
    if kind == "error":
        return (kind, data["code"])
    if kind == "session.ended":
        return (kind, data["reason"])
    return (kind,)


def record_summary(event: dict[str, Any]) -> tuple[Any, ...]:
    """:func:`summary` of an Inter1Event record."""
    return summary(event["event_type"], event["payload"][1], event["media_offset_s"])


def usage_tiles(usage: list[dict[str, Any]], end_s: float) -> list[tuple[float, float, str]]:
    """The once-per-second usage ranges, deduplicated by usage_id, checked to tile [0, end)."""
    unique = {u["usage_id"]: u for u in usage}
    tiles = sorted(
        (u["media_start_s"], u["media_end_s"], u["reason"])
        for u in unique.values()
        if u["reanalysed_s"] == 0
    )
    cursor = 0.0
    for start, stop, reason in tiles:
        assert abs(start - cursor) < 1e-6, f"usage gap or overlap at {cursor}: {tiles}"
        assert stop > start, f"empty usage range {start}-{stop} ({reason})"
        cursor = stop
    assert abs(cursor - end_s) < 1e-6, f"usage ends at {cursor}, media at {end_s}: {tiles}"
    return tiles


def windows(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Session media ranges of the published windows (their quality timeline entries),
    deduplicated by event_id, in publication order (incarnation, event_seq)."""
    unique = {e["event_id"]: e for e in events}
    ordered = sorted(unique.values(), key=lambda e: (e["incarnation"], e["event_seq"]))
    found = []
    for event in ordered:
        if event["event_type"] != "conversation_quality.updated":
            continue
        offset = event["media_offset_s"]
        for entry in event["payload"][1]["timeline"] or ():
            found.append((round(offset + entry["start"], 3), round(offset + entry["end"], 3)))
    return found


def assert_windows_once(found: list[tuple[float, float]], end_s: float, hop_s: float = 3.0) -> None:
    """Every window once by media time, none missing: starts strictly increase from 0 at
    most one hop apart, and the last window reaches to within a hop of the media end (the
    service's media clock ends at its last packet, the chunks' at the container's end)."""
    starts = [start for start, _ in found]
    assert starts, "no window was published"
    assert starts[0] == 0.0, f"the first window starts at {starts[0]}: {found}"
    assert len(set(starts)) == len(starts), f"a window was published twice: {found}"
    for before, after in itertools.pairwise(starts):
        assert before < after <= before + hop_s + 1e-6, f"window missing after {before}: {found}"
    assert end_s - hop_s < found[-1][1] <= end_s, f"the last window ends at {found[-1][1]}: {found}"


async def state_records(topic: str, sid: str) -> list[dict[str, Any] | None]:
    """Every session-state record of ``sid`` in the order written (None: a tombstone)."""
    consumer = make_consumer(group_id=None)
    await consumer.start()
    found: list[dict[str, Any] | None] = []
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [
                    None if r.value is None else json.loads(r.value)
                    for r in records
                    if r.key == sid.encode()
                ]
    finally:
        await consumer.stop()
    return found


async def session_done(
    events: TopicReader,
    usage: TopicReader,
    sid: str,
    media_end_s: float,
    *,
    within_s: float = 60,
    what: str = "session.ended",
) -> None:
    """Wait for the session's ``session.ended`` event, then for usage up to its media end."""
    await events.until(lambda r: ended(r.of(sid)), within_s=within_s, what=what)
    await usage_done(usage, sid, media_end_s)


async def usage_done(usage: TopicReader, sid: str, media_end_s: float) -> None:
    """Wait for the session's usage records to reach its media end."""
    await usage.until(
        lambda r: bool(r.of(sid)) and max(u["media_end_s"] for u in r.of(sid)) >= media_end_s,
        within_s=30,
        what="usage up to the media end",
    )
