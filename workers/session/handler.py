"""The session worker's :class:`BatchHandler`: chunk-topic records -> video sessions.

``process`` decodes each record, joins split chunks, and hands whole chunks to their
:class:`VideoSession` (created on ``SessionStarted`` or the first chunk). Undecodable
records and chunks with missing or out-of-order parts go to the dead-letter topic with
the reason; the session goes on. ``flush`` publishes the outbox (events, usage, dead
letters, then progress), so the loop commits offsets only after that is durable.

On assignment the handler reads the partitions' progress from the session-state topic,
restores each open session and seeks the partition back to the earliest restart chunk;
records below the committed offset (the replay zone) are relayed again only for the
restored sessions, from their restart chunk on. On revoke (after the loop's checkpoint)
the partition's sessions are abandoned and whatever they queued since is discarded: the
next owner redoes it from the same progress.

Records of a session that ended for good are dropped (a redelivery must not start it
again) for as long as they can come back: its id is remembered with the last chunk-topic
offset routed when it ended (for one restored as closed: the partition's end then), and
forgotten once a checkpoint has committed past that offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from chunks import (
    ChunkAssembler,
    ChunkError,
    ChunkTopicRecord,
    MissingPartError,
    SessionEnded,
    SessionStarted,
    VideoChunk,
    VideoChunkReader,
    chunk_topic_record,
)
from runtime.batch_handler import Backpressure, BatchHandler, Record
from runtime.logs import get_logger
from runtime.settings import KafkaSettings
from schemas.codec import Codec
from schemas.exceptions import CodecError
from workers.session import metrics
from workers.session.dead_letters import record_dead_letter
from workers.session.outbox import Outbox
from workers.session.readback import apply_published, read_back
from workers.session.segmenter import ChunkRef
from workers.session.session import End, SessionOptions, VideoSession
from workers.session.state_store import SessionProgress, read_progress

__all__ = ["SessionHandler"]

_log = get_logger("workers.session.handler")
_LABEL_INCLUDE = "inter1.include"
_LABEL_GOALS = "inter1.goal_dimensions"


class SessionHandler(BatchHandler):
    """Routes chunk-topic records to video sessions; see the module docstring."""

    def __init__(
        self,
        options: SessionOptions,
        outbox: Outbox,
        codec: Codec,
        *,
        kafka: KafkaSettings | None = None,
        max_sessions: int = 500,
    ) -> None:
        self._options = options
        self._outbox = outbox
        self._codec = codec
        self._kafka = kafka
        self._max_sessions = max_sessions
        self._sessions: dict[str, VideoSession] = {}
        self._finished: dict[str, tuple[int, int]] = {}  # sid -> (partition, last offset)
        self._finished_total = 0
        self._releasable: set[str] = set()  # committed past by the last checkpoint
        self._routed: dict[int, int] = {}  # partition -> highest offset routed
        self._assembler = ChunkAssembler()
        self._wire = VideoChunkReader(codec.known_writers(VideoChunk.AVRO_NAME))
        self._part0: dict[str, tuple[VideoChunk, int]] = {}  # session -> part 0 and its offset
        self._accepted_seq: dict[str, int] = {}
        self._replay_until: dict[TopicPartition, int] = {}
        self._replay_from: dict[str, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._ready: set[TopicPartition] = set()  # partitions whose on_assign completed
        self._ready_changed = asyncio.Condition()
        self._seeked: dict[TopicPartition, int] = {}  # skip records until this offset returns
        self._batch_wall_s = 0.0  # wall time the batch being routed was handed over
        self._queued_to: list[VideoSession] = []  # sessions given a chunk in this batch

    def attach(self, consumer: AIOKafkaConsumer) -> None:
        """The started consumer (seeking back to restart chunks needs it)."""
        self._consumer = consumer

    @property
    def sessions(self) -> dict[str, VideoSession]:
        """Sessions held now (by id)."""
        return dict(self._sessions)

    @property
    def finished(self) -> int:
        """Sessions ended for good since the start (closed, or failed and ended)."""
        return self._finished_total

    @property
    def finished_ids(self) -> frozenset[str]:
        """Ended sessions whose records are still dropped (not yet committed past)."""
        return frozenset(self._finished)

    # -- BatchHandler -----------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> Backpressure | None:
        # aiokafka may hand over records of a partition while its assignment callback (which
        # restores sessions and seeks back) still runs: wait for it to finish first.
        partitions = {TopicPartition(r.topic, r.partition) for r in records}
        if not partitions <= self._ready:  # no task or timer per batch once assigned
            async with self._ready_changed:
                await asyncio.wait_for(
                    self._ready_changed.wait_for(lambda: partitions <= self._ready), 60.0
                )
        consumed = time.monotonic()
        self._batch_wall_s = time.time()
        self._queued_to.clear()
        for record in records:
            self._route(record, consumed)
        # only a session that got a chunk now can have filled its queue (live sessions come
        # one record per batch: scanning every session per batch was O(sessions) per chunk)
        full = frozenset(
            TopicPartition(self._outbox.topics.chunks, s.progress.partition)
            for s in self._queued_to
            if s.queued >= self._options.queue_chunks
        )
        return Backpressure(full) if full else None

    async def flush(self) -> None:
        # The loop flushes again only after the previous checkpoint's commit succeeded.
        for sid in self._releasable:
            if self._finished.pop(sid, None) is not None:
                self._outbox.forget(sid)  # committed past its end: its state is not needed
        covered = {
            sid
            for sid, (partition, offset) in self._finished.items()
            if self._routed.get(partition, -1) >= offset
        }
        started = time.monotonic()
        await self._outbox.publish()
        await self.prune()
        metrics.CHECKPOINT_FLUSH_LATENCY.observe(time.monotonic() - started)
        self._releasable = covered

    async def prune(self) -> None:
        """Forget sessions that ended for good (their progress is published)."""
        for sid, session in list(self._sessions.items()):
            finished = session.progress.status == "closed" or session.end_seen
            if session.done and finished and session.stopped:
                del self._sessions[sid]
                self._remember_finished(sid, session.progress.partition)
                self._forget(sid)

    async def resumable(self, paused: frozenset[TopicPartition]) -> frozenset[TopicPartition]:
        busy = {
            s.progress.partition
            for s in self._sessions.values()
            if s.queued > self._options.queue_chunks // 2
        }
        return frozenset(tp for tp in paused if tp.partition not in busy)

    async def on_assign(self, partitions: frozenset[TopicPartition]) -> None:
        try:
            await self._restore(partitions)
        finally:
            async with self._ready_changed:
                self._ready |= partitions
                self._ready_changed.notify_all()

    async def _restore(self, partitions: frozenset[TopicPartition]) -> None:
        if not partitions:
            return
        state_topic = self._outbox.topics.session_state
        restored = await read_progress(
            state_topic, {tp.partition for tp in partitions}, self._kafka
        )
        _log.info(
            "session_state_read",
            partitions=sorted(tp.partition for tp in partitions),
            sessions=len(restored),
        )
        await self._read_back(restored)
        seek_to: dict[int, int] = {}
        closed = any(p.status == "closed" for p in restored.values())
        ends = await self._end_offsets(partitions) if closed else {}
        for sid, progress in restored.items():
            if sid in self._sessions:
                continue
            if progress.status == "closed":
                self._remember_finished(sid, progress.partition, ends.get(progress.partition))
                continue
            session = self._open(progress)
            if progress.status == "open":
                session.start()
            if progress.restart_offset is not None and progress.status == "open":
                self._replay_from[sid] = progress.restart_offset
                self._accepted_seq[sid] = (progress.restart_seq or 0) - 1
                part = progress.partition
                seek_to[part] = min(
                    seek_to.get(part, progress.restart_offset), progress.restart_offset
                )
            else:
                self._accepted_seq[sid] = progress.last_seq
            _log.info(
                "session_restored",
                session_id=sid,
                partition=progress.partition,
                status=progress.status,
                incarnation=progress.incarnation,
                watermark_s=progress.watermark_s,
                restart_offset=progress.restart_offset,
            )
        consumer = self._consumer
        for tp in partitions:
            if tp.partition not in seek_to or consumer is None:
                continue
            committed = await consumer.committed(tp)
            target = seek_to[tp.partition]
            if committed is not None and target < committed:
                self._replay_until[tp] = committed
                self._seeked[tp] = target
                consumer.seek(tp, target)
                _log.info(
                    "replay_from_restart", partition=tp.partition, offset=target, until=committed
                )

    async def _end_offsets(self, partitions: frozenset[TopicPartition]) -> dict[int, int]:
        if self._consumer is None:
            return {}
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(partitions))
        return {tp.partition: end for tp, end in ends.items()}

    def _remember_finished(self, sid: str, partition: int, end: int | None = None) -> None:
        """Drop ``sid``'s records until a commit passes its last record (``end - 1`` for a
        session restored as closed; else the last offset routed on its partition)."""
        if sid not in self._finished:
            self._finished_total += 1
        last = end - 1 if end is not None else self._routed.get(partition, -1)
        self._finished[sid] = (partition, last)

    async def _read_back(self, restored: dict[str, SessionProgress]) -> None:
        """Raise restored progress to what was published after it (see ``readback``)."""
        open_ = {
            sid: p
            for sid, p in restored.items()
            if p.status == "open" and sid not in self._sessions
        }
        found = await read_back(
            open_,
            self._outbox.topics.readback_roles(),
            self._codec,
            window_s=self._options.window_s,
            hop_s=self._options.hop_s,
            settings=self._kafka,
        )
        for sid, published in found.items():
            progress = open_[sid]
            before = (progress.incarnation, progress.watermark_s, progress.accounted_ms)
            if apply_published(progress, published):
                _log.warning(
                    "session_progress_read_back",
                    session_id=sid,
                    partition=progress.partition,
                    events=published.events,
                    usage=published.usage,
                    incarnation=[before[0], progress.incarnation],
                    watermark_s=[before[1], progress.watermark_s],
                    accounted_ms=[before[2], progress.accounted_ms],
                )

    async def on_revoke(self, partitions: frozenset[TopicPartition]) -> None:
        moved = {tp.partition for tp in partitions}
        gone = {sid for sid, s in self._sessions.items() if s.progress.partition in moved}
        await asyncio.gather(*(self._sessions[sid].abandon() for sid in sorted(gone)))
        self._outbox.discard(gone)
        for sid in gone:
            self._sessions.pop(sid, None)  # the publisher may have pruned it meanwhile
            self._forget(sid)
        for tp in partitions:
            self._replay_until.pop(tp, None)
            self._seeked.pop(tp, None)
            self._routed.pop(tp.partition, None)
        for sid in [sid for sid, (part, _) in self._finished.items() if part in moved]:
            del self._finished[sid]  # the next owner restores them from their state
        async with self._ready_changed:
            self._ready -= partitions

    # -- lifecycle --------------------------------------------------------------------------

    async def shutdown(self, timeout_s: float) -> None:
        """Close every connection gracefully within ``timeout_s``, then abandon the rest."""
        sessions = list(self._sessions.values())  # the publisher may prune while we wait
        for session in sessions:
            if not session.done:
                session.end(End("shutdown"))
        finished = await asyncio.gather(*(s.wait(timeout_s) for s in sessions))
        late = [s for s, ok in zip(sessions, finished, strict=True) if not ok]
        for session in late:
            _log.warning("session_drain_timeout", session_id=session.session_id)
            await session.abandon()

    async def abort(self) -> None:
        """Abandon every session (a crash-like stop)."""
        await asyncio.gather(*(s.abandon() for s in list(self._sessions.values())))

    # -- routing ----------------------------------------------------------------------------

    def _route(self, record: Record, consumed: float) -> None:  # noqa: PLR0912 - per record kind
        tp = TopicPartition(record.topic, record.partition)
        seeked = self._seeked.get(tp)
        if seeked is not None:
            if record.offset != seeked:
                return  # fetched before the seek back: it comes again after the replay
            del self._seeked[tp]
        self._routed[record.partition] = max(self._routed.get(record.partition, -1), record.offset)
        until = self._replay_until.get(tp)
        replaying = until is not None and record.offset < until
        if until is not None and not replaying:
            del self._replay_until[tp]
        try:
            item = self._read(record)
        except (CodecError, ChunkError) as exc:
            if not replaying:
                self._dead_letter(record, exc, None)
            return
        sid = item.session_id
        if sid in self._finished:
            return
        if replaying and (sid not in self._replay_from or record.offset < self._replay_from[sid]):
            return
        if isinstance(item, SessionStarted):
            if sid not in self._sessions:
                self._open(self._new_progress(sid, record.partition, item), fresh=True).start()
            return
        session = self._sessions.get(sid)
        if session is None:
            session = self._open(self._new_progress(sid, record.partition, None), fresh=True)
            session.start()
        if isinstance(item, VideoChunk):
            self._chunk(session, item, record, consumed)
        elif isinstance(item, SessionEnded):
            try:
                self._assembler.end_session(sid)
            except MissingPartError as exc:
                self._poison_partial(session, record, exc)
            session.end(End("ended", item.media_seconds, consumed_at=consumed))

    def _read(self, record: Record) -> ChunkTopicRecord:
        """The record's typed value.

        Chunk records are read by the wire reader (payload not copied); everything else,
        and any value the wire reader does not know or cannot parse, by the codec, so a
        damaged record raises (and is dead-lettered with) the codec's error, as before.

        Raises:
            CodecError, ChunkError: the value does not decode to a chunk-topic record.
        """
        value = record.value or b""
        with contextlib.suppress(ChunkError):
            chunk = self._wire.read(value)
            if chunk is not None:
                return chunk
        decoded = self._codec.decode(value, topic=record.topic)
        item = chunk_topic_record(decoded.name, decoded.datum)
        if decoded.name == VideoChunk.AVRO_NAME:  # e.g. a registry id resolved just now
            self._wire.learn(self._codec.known_writers(VideoChunk.AVRO_NAME))
        return item

    def _chunk(
        self, session: VideoSession, part: VideoChunk, record: Record, consumed: float
    ) -> None:
        sid = session.session_id
        if part.seq <= self._accepted_seq.get(sid, -1):
            return  # already relayed (a redelivery)
        try:
            whole = self._assembler.add(part)
        except MissingPartError as exc:
            self._poison_partial(session, record, exc)
            self._chunk(session, part, record, consumed)  # the record that revealed the gap
            return
        except ChunkError as exc:
            self._dead_letter(record, exc, sid)
            if part.part_index == 0 or sid in self._part0:
                first = part if part.part_index == 0 else self._part0[sid][0]
                session.drop_poison(
                    first.media_start_s, first.media_start_s + first.media_duration_s
                )
            self._part0.pop(sid, None)
            return
        if part.part_index == 0:
            self._part0[sid] = (part, record.offset)
        if whole is None:
            return
        _, offset = self._part0.pop(sid, (part, record.offset))
        self._accepted_seq[sid] = whole.seq
        if session.progress.live:
            metrics.CHUNK_CONSUME_LATENCY.observe(
                max(0.0, self._batch_wall_s - whole.produced_at.timestamp())
            )
        self._queued_to.append(session)
        session.add_chunk(
            ChunkRef(
                seq=whole.seq,
                offset=offset,
                media_start_s=whole.media_start_s,
                media_end_s=whole.media_end_s,
                payload=whole.payload,
                produced_at=whole.produced_at,
                keyframe_start=whole.keyframe_start,
                consumed_at=consumed,
            )
        )

    def _poison_partial(self, session: VideoSession, record: Record, exc: ChunkError) -> None:
        self._dead_letter(record, exc, session.session_id)
        first = self._part0.pop(session.session_id, None)
        if first is not None:
            chunk = first[0]
            session.drop_poison(chunk.media_start_s, chunk.media_start_s + chunk.media_duration_s)

    # -- helpers ----------------------------------------------------------------------------

    def _new_progress(
        self, sid: str, partition: int, started: SessionStarted | None
    ) -> SessionProgress:
        if started is None:
            return SessionProgress(session_id=sid, partition=partition)
        return SessionProgress(
            session_id=sid,
            partition=partition,
            live=started.live,
            tenant=started.tenant,
            app=started.app,
            labels=dict(started.labels),
        )

    def _open(self, progress: SessionProgress, *, fresh: bool = False) -> VideoSession:
        options = self._options
        labels = progress.labels
        if _LABEL_INCLUDE in labels or _LABEL_GOALS in labels:
            options = dataclasses.replace(
                options,
                include=_split(labels.get(_LABEL_INCLUDE), options.include),
                goal_dimensions=_split(labels.get(_LABEL_GOALS), options.goal_dimensions),
            )
        if len(self._sessions) >= self._max_sessions:
            _log.warning("max_sessions_exceeded", sessions=len(self._sessions))
        self._outbox.set_live(progress.session_id, progress.live)
        session = VideoSession(
            progress, options, self._outbox, api_version=options.api_version, fresh=fresh
        )
        self._sessions[progress.session_id] = session
        return session

    def _forget(self, sid: str) -> None:
        self._outbox.set_live(sid, False)
        self._assembler.discard(sid)
        self._part0.pop(sid, None)
        self._accepted_seq.pop(sid, None)
        self._replay_from.pop(sid, None)

    def _dead_letter(self, record: Record, exc: Exception, session_id: str | None) -> None:
        if session_id is None and record.key:
            session_id = record.key.decode(errors="replace")
        _log.error(
            "record_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            session_id=session_id,
            error=str(exc),
        )
        self._outbox.dead_letter(session_id or "", record_dead_letter(record, exc, session_id))


def _split(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())
