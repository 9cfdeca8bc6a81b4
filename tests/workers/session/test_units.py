"""Pure parts of the session worker: segment policy, close-code table, window placement,
usage tiling, progress records."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from runtime.errors import ConfigError
from schemas.codec import get_codec
from schemas.examples import example_inter1_events
from workers.session.events import EventContext, WindowPlacer, event_record
from workers.session.exceptions import PoisonChunkError
from workers.session.faults import parse_crash_at
from workers.session.outbox import Outbox, WorkerTopics
from workers.session.readback import apply_published, summarise
from workers.session.reconnect import backoff_s, policy_for, restart_index
from workers.session.segmenter import ChunkRef, Segmenter, SegmentLimits
from workers.session.state_store import STATE_VERSION, SessionProgress
from workers.session.usage import UsageLedger, classify_dropped

NOW = datetime(2026, 12, 1, tzinfo=UTC)
INIT = b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00" + b"\x00\x00\x00\x08moov"


def chunk(seq: int, start: float, end: float, body: bytes = b"x" * 8) -> ChunkRef:
    fragment = (8 + len(body)).to_bytes(4, "big") + b"moof" + body
    return ChunkRef(seq, seq * 10, start, end, INIT + fragment, NOW)


def test_segments_coalesce_to_the_minimum_and_carry_the_init_header_once() -> None:
    segmenter = Segmenter(SegmentLimits(min_duration_s=3.0))
    frames = [f for i in range(7) for f in segmenter.add(chunk(i, float(i), i + 1.0))]
    frames += segmenter.flush()
    assert [(f.first_seq, f.last_seq) for f in frames] == [(0, 2), (3, 5), (6, 6)]
    assert frames[0].data.startswith(INIT)
    assert all(INIT not in f.data for f in frames[1:])
    assert [(f.media_start_s, f.media_end_s) for f in frames] == [(0, 3), (3, 6), (6, 7)]


def test_held_back_frames_absorb_a_short_tail() -> None:
    segmenter = Segmenter(SegmentLimits(min_duration_s=3.0), hold_back=True)
    sent = [[(f.first_seq, f.last_seq) for f in segmenter.add(chunk(i, float(i), i + 1.0))]
            for i in range(7)]  # fmt: skip

    # (0, 2) is complete at chunk 2 but sent only once (3, 5) is complete too.
    assert sent == [[], [], [], [], [], [(0, 2)], []]
    assert [c.seq for c in segmenter.pending_chunks] == [3, 4, 5, 6]
    tail = segmenter.flush()
    assert [(f.first_seq, f.last_seq, f.media_start_s, f.media_end_s) for f in tail] == [
        (3, 6, 3.0, 7.0)
    ]
    assert segmenter.flush() == []


def test_a_short_tail_stays_apart_when_joining_would_pass_a_maximum() -> None:
    segmenter = Segmenter(SegmentLimits(min_duration_s=3.0, max_duration_s=3.5), hold_back=True)
    for i in range(4):
        segmenter.add(chunk(i, float(i), i + 1.0))

    assert [(f.first_seq, f.last_seq) for f in segmenter.flush()] == [(0, 2), (3, 3)]


def test_segments_never_exceed_the_maximums() -> None:
    limits = SegmentLimits(min_duration_s=3.0, max_bytes=60, max_duration_s=2.0)
    segmenter = Segmenter(limits)
    frames = [f for i in range(5) for f in segmenter.add(chunk(i, float(i), i + 1.0))]
    # 40 + 16 bytes fit, a third chunk would not; two chunks are the 2 s maximum
    assert [(f.first_seq, f.last_seq) for f in frames] == [(0, 1), (2, 3)]
    assert all(len(f.data) <= 60 for f in frames)
    with pytest.raises(PoisonChunkError, match="over the service's max_segment_size_bytes 60"):
        segmenter.add(chunk(9, 9.0, 10.0, b"y" * 100))


def test_limits_come_from_session_ready() -> None:
    ready = {
        "min_segment_duration_seconds": 3,
        "min_segment_size_bytes": 1,
        "max_segment_size_bytes": 33554432,
        "max_segment_duration_seconds": 10,
    }
    assert SegmentLimits.from_ready(ready) == SegmentLimits(3.0, 1, 33554432, 10.0)


@pytest.mark.parametrize(
    ("code", "retriable", "cause"),
    [
        (1006, True, "abnormal_close"),
        (1011, True, "server_error"),
        (1013, True, "try_again_later"),
        (401, False, "unauthorized"),
        (4003, False, "missing_scope"),
        (1008, False, "policy_violation"),
        (4999, False, "unexpected_close"),
    ],
)
def test_close_code_table(code: int, retriable: bool, cause: str) -> None:
    policy = policy_for(code)
    assert (policy.retriable, policy.cause) == (retriable, cause)


def test_backoff_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    delays = [backoff_s(n, base_s=0.5, max_s=4.0, rng=rng) for n in range(1, 9)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(0.0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len(set(delays)) == len(delays)


def envelope(kind: str, **data: object) -> dict[str, object]:
    return {"type": kind, "timestamp": "2026-12-01T00:00:00Z", "correlation_id": "c", "data": data}


def test_window_placement_and_deterministic_ids() -> None:
    context = EventContext("s1", "v1", 1, 6.0)
    placer = WindowPlacer(context)
    placed = []
    stream = [
        envelope("session.ready"),
        envelope("signal.detected", signal_type="stress", start=0.0, probability="low"),
        envelope("conversation_quality.updated", timeline=[{"start": 0.0, "end": 8.0}]),
        envelope("feedback.generated", feedback="f"),
        envelope("signal.updated", signal_type="stress", start=0.0, probability="high"),
        envelope("conversation_quality.updated", timeline=[{"start": 3.0, "end": 11.0}]),
        envelope("coverage.dropped", ranges=[{"start": 11.0, "end": 14.0}]),
        envelope("sim.unknown", note="x"),
    ]
    for item in stream:
        placed += placer.add(item)
    placed += placer.finish()
    assert [(p.envelope["type"], p.window_s, p.reach_s) for p in placed] == [
        ("session.ready", None, None),
        ("signal.detected", 6.0, None),
        ("conversation_quality.updated", 6.0, 14.0),
        ("feedback.generated", 6.0, None),
        ("signal.updated", 9.0, None),
        ("conversation_quality.updated", 9.0, 17.0),
        ("coverage.dropped", 12.0, 20.0),
        ("sim.unknown", None, None),
    ]
    again = WindowPlacer(EventContext("s1", "v1", 2, 0.0))
    same = again.add(envelope("signal.detected", signal_type="stress", start=6.0))
    assert same[0].event_id == placed[1].event_id  # same window, kind, subject: same event
    assert len({p.event_id for p in placed}) == len(placed)
    record = event_record(placed[1], context, chunk_seq=3, first_chunk_seq=1, received_at=NOW)
    assert record["media_offset_s"] == 6.0
    assert record["payload"][0] == "ai.interhuman.pipeline.inter1.SignalDetected"
    assert record["payload"][1]["start"] == 0.0


def test_usage_tiles_once_with_drops_and_degraded_inside() -> None:
    ledger = UsageLedger("s1", "v1")
    ledger.note_dropped(3.0, 5.0, "backpressure")
    ledger.note_degraded(6.0, 7.0)
    first = ledger.account(8.0, incarnation=0, correlation_id="c")
    ledger.note_dropped(7.5, 9.0, "worker_shed")  # partly accounted already: the rest counts
    second = ledger.account(10.0, incarnation=0, correlation_id="c", rest_reason="session_error")
    ranges = [
        (
            r["media_start_s"],
            r["media_end_s"],
            r["reason"],
            r["analysed_s"],
            r["degraded_s"],
            r["dropped_s"],
        )
        for r in first + second
    ]
    assert ranges == [
        (0.0, 3.0, "analysed", 3.0, 0.0, 0.0),
        (3.0, 5.0, "backpressure", 0.0, 0.0, 2.0),
        (5.0, 8.0, "analysed", 2.0, 1.0, 0.0),
        (8.0, 9.0, "worker_shed", 0.0, 0.0, 1.0),
        (9.0, 10.0, "session_error", 0.0, 0.0, 1.0),
    ]
    assert ledger.account(10.0, incarnation=0, correlation_id=None) == []
    reanalysed = ledger.reanalysed(4.0, 10.0, incarnation=1, correlation_id="d")
    assert reanalysed is not None
    assert (reanalysed["reanalysed_s"], reanalysed["reason"]) == (6.0, "failover")


def test_progress_round_trips() -> None:
    progress = SessionProgress("s1", 3, watermark_s=9.0, dropped=[(1, 2, "x")], labels={"a": "b"})
    assert SessionProgress.from_json(progress.to_json()) == progress


def test_progress_json_holds_every_field_as_asdict_gives_it() -> None:
    # to_json names the fields itself (asdict is slow): a field added later must be written too
    progress = SessionProgress(
        "s1", 3, watermark_s=9.0, dropped=[(1, 2, "x")], degraded=[(3, 4)], labels={"a": "b"}
    )
    progress.readback = {"events": {0: 17}}
    expected = json.loads(json.dumps({"v": STATE_VERSION, **dataclasses.asdict(progress)}))
    assert json.loads(progress.to_json()) == expected


def test_signal_ended_at_the_media_end_joins_the_last_window() -> None:
    placer = WindowPlacer(EventContext("s1", "v1", 0, 0.0))
    placed = []
    for item in [
        envelope("conversation_quality.updated", timeline=[{"start": 9.0, "end": 16.0}]),
        envelope("session.closing", max_drain_seconds=20),
        envelope("signal.ended", signal_type="stress", end=16.0),
        envelope("session.ended", reason="client_shutdown"),
    ]:
        placed += placer.add(item)
    placed += placer.finish()
    assert [(p.envelope["type"], p.window_s) for p in placed] == [
        ("conversation_quality.updated", 9.0),
        ("session.closing", None),
        ("signal.ended", 9.0),
        ("session.ended", None),
    ]


def test_restart_chunk_gives_context_and_keeps_the_window_grid() -> None:
    starts = [0.0, 1.2, 2.2, 3.0, 4.1, 6.0, 7.2, 9.0, 10.1]
    options = {"grid_origin_s": 0.0, "hop_s": 3.0, "context_s": 8.0}
    assert restart_index(starts, watermark_s=None, **options) == 0
    assert restart_index(starts, watermark_s=12.0, **options) == 5  # 6.0 <= 12 + 3 - 8, grid
    assert restart_index(starts, watermark_s=15.0, **options) == 7  # 9.0 <= 10.0, grid
    # nothing on the grid early enough: the latest chunk early enough
    assert restart_index([0.5, 1.5, 2.5], watermark_s=12.0, **options) == 2


def test_progress_round_trips_with_read_back_offsets_and_an_unclaimed_first_state() -> None:
    progress = SessionProgress(
        "s1", 3, incarnation=2, watermark_s=9.0, accounted_ms=9000, live=True, tenant="t"
    )
    progress.readback = {"events": {0: 17, 1: 4}, "usage": {0: 9}}
    assert SessionProgress.from_json(progress.to_json()) == progress
    first = progress.unclaimed(40, 2)
    assert first == SessionProgress(
        "s1", 3, restart_offset=40, restart_seq=2, live=True, tenant="t"
    )
    copy = progress.copy()
    copy.readback["events"][0] = 99
    assert progress.readback["events"][0] == 17


def _records(incarnation: int, offset_s: float, items: list[dict[str, object]]) -> list[dict]:
    context = EventContext("s1", "v1", incarnation, offset_s)
    placer = WindowPlacer(context)
    placed = [p for item in items for p in placer.add(item)]
    return [
        event_record(p, context, chunk_seq=0, first_chunk_seq=0, received_at=NOW) for p in placed
    ]


def test_read_back_recovers_incarnation_watermark_and_usage_position() -> None:
    events = _records(
        0,
        0.0,
        [
            envelope("session.ready"),
            envelope("conversation_quality.updated", timeline=[{"start": 0.0, "end": 8.0}]),
            envelope("signal.detected", signal_type="stress", start=3.0, probability="low"),
            envelope("conversation_quality.updated", timeline=[{"start": 3.0, "end": 11.0}]),
        ],
    )
    second = _records(
        1,
        3.0,
        [
            envelope("signal.detected", signal_type="stress", start=3.0),
            envelope("session.ended", reason="client_close"),
        ],
    )
    events += second[:1]
    ledger = UsageLedger("s1", "v1")
    usage = ledger.account(8.0, incarnation=0, correlation_id="c")
    usage.append(ledger.reanalysed(3.0, 8.0, incarnation=1, correlation_id="d"))
    # Each connection's last window may have been cut by the crash: only windows followed by
    # a later one count (connection 0: window 0.0; connection 1 placed only window 6.0).
    cut = summarise(list(reversed(events)), usage, 8.0, 3.0)  # placed in event_seq order
    assert (cut.incarnation, cut.watermark_s, cut.grid_origin_s) == (1, 0.0, 0.0)
    # ``session.ended`` shows connection 1's last window complete.
    events += second[1:]
    found = summarise(list(reversed(events)), usage, 8.0, 3.0)
    assert (found.incarnation, found.watermark_s, found.grid_origin_s) == (1, 6.0, 3.0)
    assert (found.reach_s, found.accounted_ms, found.events, found.usage) == (11.0, 8000, 6, 2)
    progress = SessionProgress("s1", 0, incarnation=0, watermark_s=3.0, accounted_ms=5000)
    progress.dropped = [(4000, 6000, "backpressure"), (9000, 9500, "backpressure")]
    assert apply_published(progress, found)
    assert (progress.incarnation, progress.watermark_s, progress.grid_origin_s) == (1, 6.0, 3.0)
    assert (progress.accounted_ms, progress.dropped) == (8000, [(9000, 9500, "backpressure")])
    assert not apply_published(progress, found)


@pytest.mark.parametrize(("spec", "events"), [(None, None), ("", None), ("records_acked@7", 7)])
def test_parse_crash_at(spec: str | None, events: int | None) -> None:
    point = parse_crash_at(spec)
    assert (point.events if point is not None else None) == events


def test_parse_crash_at_names_the_expected_form() -> None:
    with pytest.raises(ConfigError) as info:
        parse_crash_at("after_state@3")
    assert str(info.value) == (
        "PIPELINE_WORKER_CRASH_AT='after_state@3': expected records_acked@<events>"
    )


def test_read_back_completes_the_window_the_saved_state_had_open() -> None:
    # The state was written while window 0.0 was open; the read-back starts after its
    # events and finds only window 3.0, which shows window 0.0 complete.
    events = _records(
        0, 0.0, [envelope("conversation_quality.updated", timeline=[{"start": 3.0, "end": 11.0}])]
    )
    saved = SessionProgress("s1", 0, incarnation=0, open_window_s=0.0)
    assert summarise(events, [], 8.0, 3.0, progress=saved).watermark_s == 0.0
    assert summarise(events, [], 8.0, 3.0).watermark_s is None
    # a state of an older connection says nothing about this one's windows
    older = SessionProgress("s1", 0, incarnation=-1, open_window_s=0.0)
    assert summarise(events, [], 8.0, 3.0, progress=older).watermark_s is None


@pytest.mark.parametrize(
    ("sent", "own", "expected"),
    [
        ([(0.0, 30.0)], [], [(12.0, 15.0, "backpressure")]),  # the service shed media it got
        ([(0.0, 12.0), (15.0, 30.0)], [], [(12.0, 15.0, "stream_skip")]),  # never sent
        (
            [(0.0, 12.0), (15.0, 30.0)],
            [],
            [(10.0, 12.0, "backpressure"), (12.0, 15.0, "stream_skip")],
        ),
        ([(0.0, 12.0), (15.0, 30.0)], [(12.0, 15.0)], []),  # shed here: the worker's record
        ([(0.0, 12.05), (12.1, 30.0)], [], [(12.0, 15.0, "backpressure")]),  # clock noise
    ],
)
def test_dropped_ranges_are_told_apart_by_what_was_sent(
    sent: list[tuple[float, float]],
    own: list[tuple[float, float]],
    expected: list[tuple[float, float, str]],
) -> None:
    start = 10.0 if expected[:1] == [(10.0, 12.0, "backpressure")] else 12.0
    assert classify_dropped(start, 15.0, sent, own) == expected


async def test_only_a_live_sessions_records_wake_the_publisher() -> None:
    async def no_offsets(_topics: list[str]) -> dict[str, dict[int, int]]:
        return {}

    topics = WorkerTopics("c", "e", "u", "d", "s")
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")  # never started: no I/O
    outbox = Outbox(producer, get_codec(), topics, end_offsets=no_offsets)
    outbox.set_live("live-1", True)
    outbox.set_live("rec-1", False)
    event = example_inter1_events("rec-1")[0]
    waiter = asyncio.ensure_future(outbox.records_waiting())
    outbox.event("rec-1", event)  # recorded: waits for the periodic publish
    await asyncio.sleep(0)
    assert (outbox.pending, waiter.done()) == (1, False)
    outbox.event("live-1", {**event, "session_id": "live-1"})
    await asyncio.sleep(0)
    assert (outbox.pending, waiter.done()) == (2, True)
    outbox.set_live("live-1", False)  # a session forgotten is no longer live
    outbox.discard({"live-1", "rec-1"})
    assert outbox.pending == 0
    await producer.stop()
