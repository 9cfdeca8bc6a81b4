"""One video session: a source read in a thread, chunked, published; ended exactly once.

The demuxing thread hands finished chunks to the event loop through a small bounded
queue (backpressure: it blocks while the queue is full). The coroutine publishes them,
keeping a bounded window of unacknowledged sends. Whatever happens after the
SessionStarted record (completion, a source error, Ctrl-C/SIGTERM, a Kafka failure,
cancellation), exactly one SessionEnded record follows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from chunks.records import ChunkTopicRecord
from producers.chunker import Chunk, Chunker
from producers.delivery import (
    DeliveryStats,
    DroppedChunks,
    OutagePolicy,
    SessionDelivery,
    dropped_dead_letter,
)
from producers.exceptions import (
    InternalProducerError,
    ProducerError,
    PublishError,
    SourceError,
)
from producers.handoff import Handoff
from producers.probe import MediaInfo
from producers.publisher import Publisher
from producers.reader import MediaReader, ReaderOptions
from producers.records import (
    SessionMeta,
    SessionTotals,
    chunk_records,
    session_ended,
    session_started,
    utc_now,
)
from producers.sources import SourceSpec
from producers.spool import SpoolRecord
from runtime.errors import PipelineError
from runtime.logs import get_logger

__all__ = [
    "RecordEncoder",
    "SessionConfig",
    "SessionObserver",
    "SessionResult",
    "SessionRunner",
    "file_batch",
]

_QUEUE_CHUNKS = 2  # handed-over batches waiting for the loop
# A file read as fast as it goes wakes the loop once per batch of about this many bytes
# of chunks (by the container's bit rate), but at least 4 and at most 16 chunks: every
# wake-up makes the two threads trade the GIL, ~50-100 µs of CPU.
_FILE_BATCH_BYTES = 2 << 20
_FILE_BATCH_CHUNKS = (4, 16)
_DELIVERY_WINDOW = 8
_PUT_POLL_S = 0.25
# The Avro envelope around a chunk payload (ids, times, framing) stays far below this.
ENVELOPE_RESERVE_BYTES = 1024


def file_batch(bit_rate: int | None, chunk_duration_s: float) -> int:
    """Chunks per loop wake-up for a file read as fast as it goes (see ``_FILE_BATCH_BYTES``)."""
    low, high = _FILE_BATCH_CHUNKS
    if not bit_rate:
        return low
    chunk_bytes = max(1.0, bit_rate * chunk_duration_s / 8)
    return max(low, min(high, int(_FILE_BATCH_BYTES // chunk_bytes)))


class RecordEncoder(Protocol):
    """What the session needs of ``schemas.codec.Codec``."""

    def encode(
        self, record_name: str, datum: dict[str, Any], *, topic: str | None = None
    ) -> bytes: ...


@dataclass(frozen=True)
class SessionConfig:
    """Per-session settings shared by every source of one producer run."""

    reader: ReaderOptions
    max_record_bytes: int
    producer_id: str
    meta: SessionMeta = field(default_factory=SessionMeta)
    outage: OutagePolicy = field(default_factory=OutagePolicy)


@dataclass
class SessionResult:
    """How a source went. ``reason`` is None when no session was started (open failed)."""

    source: str
    session_id: str
    reason: str | None = None
    error: PipelineError | None = None
    info: MediaInfo | None = None
    totals: SessionTotals = field(default_factory=SessionTotals)
    delivery: DeliveryStats = field(default_factory=DeliveryStats)

    @property
    def ok(self) -> bool:
        """True when the source was read to its end and everything was published."""
        return self.reason == "completed"


class SessionObserver(Protocol):
    """Told when a session starts and how far its media has been published."""

    def started(self, session_id: str, label: str, info: MediaInfo) -> None: ...

    def progress(self, session_id: str, media_end_s: float) -> None: ...


class SessionRunner:
    """Reads one source and publishes its session. Call :meth:`run` once."""

    def __init__(
        self,
        spec: SourceSpec,
        session_id: str,
        *,
        config: SessionConfig,
        publisher: Publisher,
        encoder: RecordEncoder,
        stop: asyncio.Event,
        observer: SessionObserver | None = None,
    ) -> None:
        self.spec = spec
        self.session_id = session_id
        self._config = config
        self._publisher = publisher
        self._encoder = encoder
        self._stop = stop
        self._thread_stop = threading.Event()
        self._observer = observer
        self._key = session_id.encode("utf-8")
        # Live media cannot wait for Kafka: it spools during an outage; files wait.
        live = spec.live or config.reader.realtime
        self._delivery = SessionDelivery(
            publisher,
            session_id,
            spool=config.outage.spool_for(session_id) if live else None,
            ack_timeout_s=config.outage.ack_timeout_s,
            window=_DELIVERY_WINDOW,
            dead_letter=self._dead_letter,
            stop=stop,
            stop_timeout_s=config.outage.stop_timeout_s,
        )
        self._gave_up = False  # a stop left records in the spool: do not wait again
        self.result = SessionResult(
            source=spec.display, session_id=session_id, delivery=self._delivery.stats
        )
        self._started = False
        self._ended = False
        self._pumping = False  # the demux thread owns (and closes) the reader once started
        self._log = get_logger("producers.session", session_id=session_id, source=spec.display)

    async def run(self) -> SessionResult:
        """Open the source, publish the session, and return how it went."""
        reader = MediaReader(self.spec, self._config.reader, self._thread_stop)
        try:
            info = await self._open(reader)
        except PipelineError as exc:
            if self._stop.is_set():  # stopped while connecting: nothing started, nothing failed
                return self.result
            self.result.error = exc
            self._log.warning("source_open_failed", error=str(exc))
            return self.result
        self.result.info = info
        if self._stop.is_set():  # stopped while the source was opening: no session
            reader.close()
            return self.result
        try:
            await self._publish_started(info)
            reason, error = await self._stream(reader)
            await self._end(reason, error)
        except PublishError as exc:
            self.result.error = exc
            await self._end("publish_error", exc, publish=False)
        except asyncio.CancelledError:
            await self._end("stopped", None)
            raise
        except Exception as exc:  # a bug: still end the session, report it, spare the others
            self._log.exception("session_failed")
            failure = InternalProducerError(f"{self.spec.display}: internal error ({exc!r})")
            self.result.error = failure
            await self._end("source_error", failure)
        finally:
            self._thread_stop.set()
            if not self._pumping:
                reader.close()
            await self._delivery.close()
        return self.result

    async def _open(self, reader: MediaReader) -> MediaInfo:
        """Open the source in a thread; a stop meanwhile tells the thread (a relay gives up)."""
        opening = asyncio.ensure_future(asyncio.to_thread(reader.open))
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({opening, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done():
                self._thread_stop.set()
            return await opening
        except asyncio.CancelledError:  # the thread goes on: release what it opens
            self._thread_stop.set()
            opening.add_done_callback(lambda _: reader.close())
            raise
        finally:
            stop_wait.cancel()

    async def _publish_started(self, info: MediaInfo) -> None:
        record = session_started(
            self.session_id,
            self.spec,
            info,
            self._config.meta,
            chunk_target_duration_s=self._config.reader.chunk_duration_s,
            producer_id=self._config.producer_id,
            started_at=utc_now(),
        )
        await self._send(record)
        self._started = True
        if self._observer is not None:
            self._observer.started(self.session_id, self.spec.display, info)
        self._log.info(
            "session_started",
            mime_type=info.mime_type,
            transcoded=info.transcoded,
            audio_transcoded=info.audio_transcoded,
        )

    async def _stream(self, reader: MediaReader) -> tuple[str, PipelineError | None]:
        """Publish chunks until the source ends, fails, or a stop is requested."""
        # A file read as fast as it goes hands chunks over a few at a time (fewer thread
        # wake-ups); live or paced media goes out chunk by chunk.
        paced = self.spec.live or self._config.reader.realtime
        batch = 1 if paced else file_batch(reader.bit_rate, self._config.reader.chunk_duration_s)
        handoff: Handoff[tuple[str, Any]] = Handoff(
            asyncio.get_running_loop(),
            _QUEUE_CHUNKS * batch,
            self._thread_stop,
            batch=batch,
            poll_s=_PUT_POLL_S,
        )
        thread = threading.Thread(
            target=self._pump,
            args=(reader, handoff),
            name=f"demux-{self.session_id[:8]}",
            daemon=True,
        )
        thread.start()
        self._pumping = True
        watcher = asyncio.ensure_future(self._interrupt_on_stop(handoff))
        try:
            while True:
                got = await handoff.get()
                if got is None:  # a stop was requested while waiting
                    return "stopped", None
                kind, item = got
                if kind == "chunk":
                    if self._stop.is_set():
                        return "stopped", None
                    await self._publish_chunk(item)
                elif kind == "error":
                    return "source_error", item
                else:
                    return ("stopped", None) if self._stop.is_set() else ("completed", None)
        finally:
            watcher.cancel()
            self._thread_stop.set()

    async def _interrupt_on_stop(self, handoff: Handoff[tuple[str, Any]]) -> None:
        await self._stop.wait()
        handoff.interrupt()

    def _pump(self, reader: MediaReader, handoff: Handoff[tuple[str, Any]]) -> None:
        """Thread body: demux, chunk, hand each chunk to the loop (blocking while full)."""
        templates = [t for t in (reader.video_template, reader.audio_template) if t is not None]
        # The whole encoded record must fit the limit: payload + envelope + session id.
        reserve = ENVELOPE_RESERVE_BYTES + len(self._key)
        limit = max(4096, self._config.max_record_bytes - reserve)
        chunker = Chunker(
            templates,
            target_duration_s=self._config.reader.chunk_duration_s,
            max_part_bytes=limit,
        )
        try:
            for chunk in chunker.chunks(reader.packets()):
                if not handoff.put(("chunk", chunk)):
                    return
            handoff.put(("done", None), last=True)
        except SourceError as exc:
            handoff.put(("error", exc), last=True)
        except Exception as exc:  # a PyAV failure we did not classify: still end the session
            self._log.exception("demux_failed")
            error = SourceError(
                self.spec.display, f"cannot process media ({type(exc).__name__}: {exc})"
            )
            handoff.put(("error", error), last=True)
        finally:
            reader.close()

    async def _publish_chunk(self, chunk: Chunk) -> None:
        topic = self._publisher.topic
        records = [
            SpoolRecord(
                topic,
                self._key,
                self._encoder.encode(record.AVRO_NAME, record.to_avro(), topic=topic),
                "chunk",
                chunk.seq,
                chunk.media_start_s,
                chunk.media_start_s + chunk.media_duration_s,
            )
            for record in chunk_records(self.session_id, chunk, utc_now())
        ]
        if not self._delivery.spools:  # files: never dropped, no totals kept on disk
            await self._delivery.put(records)
            self.result.totals.add(chunk)
        else:
            totals = dataclasses.replace(self.result.totals)
            totals.add(chunk)
            if await self._delivery.put(records, droppable=True, totals=dataclasses.asdict(totals)):
                self.result.totals = totals
        if self._observer is not None:
            self._observer.progress(self.session_id, chunk.media_start_s + chunk.media_duration_s)

    async def _send(self, record: ChunkTopicRecord) -> None:
        topic = self._publisher.topic
        value = self._encoder.encode(record.AVRO_NAME, record.to_avro(), topic=topic)
        kind = "ended" if record.AVRO_NAME == "SessionEnded" else "started"
        await self._delivery.put([SpoolRecord(topic, self._key, value, kind)])

    def _dead_letter(self, run: DroppedChunks) -> SpoolRecord:
        """The DeadLetter record accounting for chunks dropped because the spool was full."""
        policy = self._config.outage
        limit = policy.budget.max_bytes if policy.budget is not None else 0
        datum = dropped_dead_letter(self.session_id, run, limit_bytes=limit, failed_at=utc_now())
        topic = policy.dead_letter_topic
        value = self._encoder.encode("DeadLetter", datum, topic=topic)
        return SpoolRecord(topic, self._key, value, "dead_letter", run.first_seq)

    async def _flush(self) -> None:
        """Everything acknowledged; after a stop, at most ``stop_timeout_s`` of waiting in an
        outage (then the records stay in the spool for the next start)."""
        timeout = 0.0 if self._gave_up else self._config.outage.stop_timeout_s
        if not await self._delivery.flush(self._stop, timeout):
            self._gave_up = True

    async def _end(self, reason: str, error: PipelineError | None, *, publish: bool = True) -> None:
        """Publish the one SessionEnded record (a second call does nothing)."""
        if self._ended or not self._started:
            return
        self._ended = True
        self.result.reason = reason
        if error is not None and self.result.error is None:
            self.result.error = error
        totals = self.result.totals
        log = self._log.bind(
            reason=reason, chunks=totals.chunks, media_s=round(totals.media_seconds, 3)
        )
        try:
            if publish:  # chunks acknowledged first (or, in an outage, spooled before it)
                await self._delivery.flush(drain=False)
            else:
                self._delivery.discard_unacknowledged()
            message = str(error) if error is not None else None
            await self._send(session_ended(self.session_id, reason, message, totals, utc_now()))
            await self._flush()
        except ProducerError as exc:
            if reason != "publish_error":
                self.result.reason = "publish_error"
                self.result.error = exc
            log.error("session_end_not_published", error=str(exc))
            return
        if self._gave_up:
            log.warning("session_ended_in_spool", error=str(error) if error else None)
        else:
            log.info("session_ended", error=str(error) if error else None)
