"""The demo's live part: a generated clip through the producer, its chunks analysed by Inter-1.

Until the session workers land, the demo plays their part in miniature: it reads the
session's chunk records back from Kafka and streams them over one Inter-1 session (the
local simulator unless ``INTER1_API_KEY`` and ``INTER1_BASE_URL`` are set), sending the
init header once and then only the fragments of each chunk.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from interhumanai import GoalDimension, IncludeFlag, InterhumanClient

from chunks import ChunkAssembler, SessionEnded, VideoChunk, fragments_only
from producers.app import ProduceOptions, produce
from producers.reader import ReaderOptions
from producers.records import SessionMeta
from producers.synthetic import MediaSpec, write_media
from runtime.errors import PipelineError
from runtime.kafka import make_consumer
from runtime.settings import Inter1Settings, KafkaSettings, load
from runtime.topics import topic_name
from schemas.codec import get_codec

__all__ = ["LiveReport", "produce_and_analyse"]

Say = Callable[[str], None]
_SIM_KEY = "sim-key"
DEMO_CHUNK_S = 3.0
"""Chunk length: Inter-1 v1 requires each segment (one chunk each here) to be >= 3 s."""


class DemoSessionError(PipelineError):
    """The demo's produced session did not come back or did not analyse as expected."""


@dataclass
class LiveReport:
    """What the live part did."""

    session_id: str = ""
    chunks: int = 0
    media_seconds: float = 0.0
    records: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    inter1: str = ""


async def produce_and_analyse(
    say: Say, work_dir: Path, *, kafka: KafkaSettings, clip_seconds: float = 12.0
) -> LiveReport:
    """Produce a generated clip as one session, then analyse its chunks over Inter-1."""
    report = LiveReport(session_id=f"demo-{uuid.uuid4()}")
    clip = work_dir / "demo-clip.mp4"
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(
        write_media, clip, MediaSpec(duration_s=clip_seconds, width=320, height=240, gop=50)
    )
    topic = topic_name("chunks")
    consumer = make_consumer(group_id=None, settings=kafka)
    await consumer.start()
    try:
        start = await _end_offsets(consumer, topic)
        result = await produce(
            ProduceOptions(
                sources=(str(clip),),
                session_id=report.session_id,
                meta=SessionMeta(tenant="demo", app="make-demo", labels={"source": "demo"}),
                progress=False,
                kafka=kafka,
                reader=ReaderOptions(chunk_duration_s=DEMO_CHUNK_S),
            )
        )
        outcome = result.results[0]
        if not outcome.ok:
            raise DemoSessionError(f"producing {clip} failed: {outcome.error}")
        chunks = await _read_session(consumer, start, report)
    finally:
        await consumer.stop()
    report.chunks = len(chunks)
    say(
        f"produced: session {report.session_id}: {report.chunks} chunks, "
        f"{report.media_seconds:.1f} media s "
        f"({', '.join(f'{n} {c}' for n, c in sorted(report.records.items()))})"
    )
    await _analyse(chunks, report)
    say(
        f"analysed by {report.inter1}: {sum(report.events.values())} events ("
        + ", ".join(f"{n} {c}" for n, c in sorted(report.events.items()))
        + ")"
    )
    return report


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        await consumer._client.force_metadata_update()  # topic just created
        partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    return ends


async def _read_session(
    consumer: AIOKafkaConsumer, start: dict[TopicPartition, int], report: LiveReport
) -> list[bytes]:
    """The session's chunks (parts joined) in sequence order, read from Kafka."""
    codec = get_codec()
    key = report.session_id.encode()
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    assembler = ChunkAssembler()
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    ended = False
    while not ended:
        if loop.time() > deadline:
            raise DemoSessionError(f"session {report.session_id} did not come back from Kafka")
        for messages in (await consumer.getmany(timeout_ms=500)).values():
            for msg in messages:
                if msg.key != key:
                    continue
                decoded = codec.decode(msg.value, topic=msg.topic)
                report.records[decoded.name] += 1
                if decoded.name == VideoChunk.AVRO_NAME:
                    whole = assembler.add(VideoChunk.from_avro(decoded.datum))
                    if whole is not None:
                        chunks.append(whole.payload)
                elif decoded.name == SessionEnded.AVRO_NAME:
                    report.media_seconds = SessionEnded.from_avro(decoded.datum).media_seconds
                    assembler.end_session(report.session_id)
                    ended = True
    return chunks


async def _analyse(chunks: list[bytes], report: LiveReport) -> None:
    settings = load(Inter1Settings)
    async with AsyncExitStack() as stack:
        if settings.api_key and settings.base_url:
            key, base_url = settings.api_key.get_secret_value(), settings.base_url
            report.inter1 = f"Inter-1 at {base_url}"
        else:
            from simulator.config import SimulatorConfig
            from simulator.server import Simulator

            sim = await stack.enter_async_context(Simulator(SimulatorConfig(port=0)))
            key, base_url = _SIM_KEY, sim.http_url
            report.inter1 = f"the local Inter-1 simulator at {base_url}"
        client = InterhumanClient(access_token=key, base_url=base_url)
        stream = client.stream(api_version=settings.api_version)
        await stack.enter_async_context(stream)
        await stream.wait_for_session_ready()
        await stream.update_config(
            include=[
                IncludeFlag.CONVERSATION_QUALITY_OVERALL,
                IncludeFlag.CONVERSATION_QUALITY_TIMELINE,
            ],
            goal_dimensions=[GoalDimension.CLARITY, GoalDimension.RAPPORT],
        )
        for index, chunk in enumerate(chunks):
            await stream.send_video(chunk if index == 0 else fragments_only(chunk))
        await stream.request_close()
        async for event in stream:
            report.events[event.type] += 1
            if event.type == "session.ended":
                break
