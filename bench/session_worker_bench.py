"""Session worker benchmarks at a chosen bitrate (default 2 Mbit/s).

``relay`` (default): publishes ``--sessions`` copies of a committed fixture clip (keyframe
chunks, each padded with an MP4 ``free`` box to ``--kbit`` kbit/s of media) to fresh
prefixed topics, then measures this process's CPU time (a) reading every chunk record with a
plain aiokafka consumer and (b) running the session worker over the same records until every
session ended, relaying them to the simulator (a subprocess, ``--decode none``, instant model,
so its CPU is not counted), and (floor) the raw consume plus a ``websockets`` send of every
value. The worker paces the recorded sessions as configured (``--pace``, default the
setting's 3x real time: ~7 s of wall time at 40 sessions; 0 sends every frame once
complete). Each is measured on a fresh asyncio loop and a fresh uvloop loop, the loops taking
turns first (``--repeat`` runs, medians). ``--profile FILE`` writes a cProfile of (b).

``capacity``: the worker and ``simulate --decode boxes`` run as subprocesses; for each
``--steps`` count N, N live sessions publish their chunks in real time (``produced_at`` =
send time) for the clip's 20 s, session ``i`` starting ``i / N * --stagger-s`` late (real
sessions start at random times; ``--stagger-s 0`` sends every session's chunk at the same
instant, so they all land in one fetch). Per step: the worker's CPU per media second, RSS
per session (peak minus idle) and p50/p99 of each latency leg, from the worker's
``/metrics`` histograms (interpolated inside a bucket): end to end (``produced_at`` ->
frame written), the chunk handed to the worker, the worker's own relay (handed over ->
frame written, and the WebSocket send inside it) and its event leg (event received ->
acknowledged by Kafka, and the produce -> ack inside it). Frames held for the segment
minimum (policy) are timed from the chunk or SessionEnded that completed them. Baseline:
Kafka transit (``produced_at`` -> a raw aiokafka consumer in the bench holds the record).
The publisher is its own process (``publish-live``, uvloop, each chunk's record encoded
once), so it does not share a loop or a core's time slice with the bench; ``--loop
asyncio`` runs the worker on the standard loop.

Prints figures; asserts nothing. The machine is shared: compare ratios from one run.

    .venv/bin/python bench/session_worker_bench.py relay [--sessions 100] [--kbit 2000]
    .venv/bin/python bench/session_worker_bench.py capacity [--steps 25,50,100] [--stagger-s 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT),
    str(ROOT / "tests" / "simulator"),
    str(ROOT / "tests" / "workers" / "session"),
]

import httpx  # noqa: E402
from proc_stats import cpu_s, rss_mb  # noqa: E402
from session_helpers import (  # noqa: E402
    ChunkPublisher,
    ClipChunk,
    ClipChunks,
    cut_clip,
    fixture_chunks,
    started_record,
)
from sim_helpers import CLIP_RAMP  # noqa: E402
from worker_process import create_prefixed_topics, delete_topics  # noqa: E402

from chunks import VideoChunk  # noqa: E402
from inter1_pipeline.kafka_address import kafka_settings  # noqa: E402
from runtime.kafka import make_consumer  # noqa: E402
from runtime.logs import configure_logging  # noqa: E402
from runtime.settings import Inter1Settings, SecretStr, SessionWorkerSettings, load  # noqa: E402
from schemas.codec import Codec, get_codec  # noqa: E402
from simulator.clips import make_clip  # noqa: E402
from workers.session.app import WorkerRuntime, run_worker  # noqa: E402
from workers.session.event_loop import LoopName, run_on  # noqa: E402
from workers.session.outbox import WorkerTopics  # noqa: E402

_CLI = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def padded(clip: ClipChunks, kbit: float) -> ClipChunks:
    """Each chunk grown to ``kbit`` kbit/s of its media with a trailing ``free`` box (the
    simulator and the worker skip it; the bytes travel like media)."""
    chunks = []
    for chunk in clip.chunks:
        want = int(kbit * 1000 / 8 * chunk.media_duration_s) - len(chunk.payload)
        pad = struct.pack(">I4s", want, b"free") + bytes(want - 8) if want >= 8 else b""
        chunks.append(replace(chunk, payload=chunk.payload + pad))
    return ClipChunks(chunks, clip.stream, clip.duration_s)


def _simulator(port: int, decode: str, sessions: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *_CLI,
            *("simulate", "--port", str(port), "--decode", decode, "--ratio", "0"),
            *("--max-lag", "3600", "--capacity", str(sessions + 10)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- relay ----------------------------------------------------------------------------------


async def _raw_consume(topic: str, count: int) -> tuple[float, float, int]:
    consumer = make_consumer(group_id=None)
    await consumer.start()
    try:
        consumer.subscribe([topic])
        seen = size = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += len(records)
                size += sum(len(r.value or b"") for r in records)
        return time.perf_counter() - wall, time.process_time() - cpu, size
    finally:
        await consumer.stop()


_SINK = """
import asyncio, sys
from websockets.asyncio.server import serve

async def drain(ws):
    async for _ in ws:
        pass

async def main():
    async with serve(drain, "127.0.0.1", int(sys.argv[1]), compression=None, max_size=None):
        await asyncio.Future()

asyncio.run(main())
"""


async def _floor(topic: str, count: int, port: int) -> tuple[float, float]:
    """The same records consumed raw and their values sent, one WebSocket per session, to a
    server that discards them (a subprocess): aiokafka + websockets, nothing of ours."""
    from websockets.asyncio.client import ClientConnection, connect

    consumer = make_consumer(group_id=None)
    await consumer.start()
    sockets: dict[bytes, ClientConnection] = {}
    try:
        consumer.subscribe([topic])
        seen = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += len(records)
                for record in records:
                    key = record.key or b""
                    if key not in sockets:
                        sockets[key] = await connect(
                            f"ws://127.0.0.1:{port}", compression=None, max_size=None
                        )
                    await sockets[key].send(record.value or b"")
        for ws in sockets.values():
            await ws.close()
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()


async def _relay(
    topics: WorkerTopics, base_url: str, sessions: int, profile: str | None, pace: float
) -> tuple[float, float]:
    out: list[WorkerRuntime] = []
    started = asyncio.Event()
    worker = SessionWorkerSettings(
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        http_port=0,
        commit_interval_s=1.0,
        publish_interval_s=0.2,
        session_queue_chunks=64,
        max_sessions=max(500, sessions),
        recorded_pace=pace,
    )
    inter1 = Inter1Settings(api_key=SecretStr("sim-key"), base_url=base_url)
    task = asyncio.create_task(
        run_worker(topics, worker=worker, inter1=inter1, started=started, runtime_out=out)
    )
    await started.wait()
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not wall
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    handler = out[0].handler
    while handler.finished < sessions:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    if profiler is not None:
        profiler.disable()
    elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
    out[0].loop.request_stop()
    await task
    if profiler is not None and profile:
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())
    return elapsed, used


def _clip(clip_s: float | None) -> ClipChunks:
    """The committed 20 s fixture clip, or one of ``clip_s`` seconds encoded here (the same
    spec, longer: sessions long enough that per-session set-up and close no longer dominate)."""
    if clip_s is None:
        return fixture_chunks(CLIP_RAMP)
    return cut_clip(make_clip(replace(CLIP_RAMP, seconds=clip_s)))


async def _publish_clip(
    sessions: int, kbit: float, clip_s: float | None
) -> tuple[WorkerTopics, ClipChunks]:
    topics = await create_prefixed_topics(f"bench{uuid.uuid4().hex[:8]}.")
    clip = padded(_clip(clip_s), kbit)
    async with ChunkPublisher(topics.chunks) as publisher:
        for index in range(sessions):
            await publisher.session(f"bench-{index}", clip)
    return topics, clip


async def _fresh_relay(
    chunks: str, base_url: str, sessions: int, profile: str | None, pace: float
) -> tuple[float, float]:
    # fresh output and state topics: the last run's closed sessions are not restored
    out = await create_prefixed_topics(f"bench{uuid.uuid4().hex[:8]}.")
    try:
        return await _relay(replace(out, chunks=chunks), base_url, sessions, profile, pace)
    finally:
        await delete_topics(out)


_KINDS = ("raw", "floor", "relay")


def relay(args: argparse.Namespace) -> None:
    """Every measurement on a fresh loop of each kind; loops alternate first between runs."""
    loops: list[LoopName] = ["asyncio", "uvloop"]
    port = _free_port()
    sim = _simulator(port, "none", args.sessions)
    topics, clip = run_on("asyncio", _publish_clip(args.sessions, args.kbit, args.clip_s))
    records = args.sessions * (len(clip.chunks) + 2)
    base_url = f"http://127.0.0.1:{port}"
    sink_port = _free_port()
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(sink_port)])
    time.sleep(1.5)
    cpu: dict[tuple[str, str], list[float]] = {}
    size = 0
    try:
        for run in range(args.repeat):
            for loop in loops if run % 2 == 0 else loops[::-1]:
                _w, raw_cpu, size = run_on(loop, _raw_consume(topics.chunks, records))
                _w, floor_cpu = run_on(loop, _floor(topics.chunks, records, sink_port))
                _w, relay_cpu = run_on(
                    loop,
                    _fresh_relay(topics.chunks, base_url, args.sessions, args.profile, args.pace),
                )
                for kind, used in zip(_KINDS, (raw_cpu, floor_cpu, relay_cpu), strict=True):
                    cpu.setdefault((kind, loop), []).append(used)
                print(
                    f"run {run + 1} {loop:7s}: raw {raw_cpu * 1000:.0f} ms, floor "
                    f"{floor_cpu * 1000:.0f} ms, relay {relay_cpu * 1000:.0f} ms CPU"
                )
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        sim.terminate()
        sim.wait(timeout=30)
        run_on("asyncio", delete_topics(topics))
    med = {key: statistics.median(values) for key, values in cpu.items()}
    media_s = args.sessions * clip.duration_s
    bitrate = size * 8 / media_s
    print(
        f"{args.sessions} sessions x {clip.duration_s:g} s ({len(clip.chunks)} chunks, "
        f"{bitrate / 1000:.0f} kbit/s), {records} records, {size / 1e6:.1f} MB, "
        f"recorded pace {args.pace:g}"
    )
    print(f"medians of {args.repeat} interleaved runs, ms CPU:  asyncio | uvloop")
    for kind, label in zip(
        _KINDS,
        ("raw aiokafka consume", "floor (raw + websockets send)", "session worker relay"),
        strict=True,
    ):
        print(
            f"  {label:30s} {med[kind, 'asyncio'] * 1000:7.0f} | {med[kind, 'uvloop'] * 1000:6.0f}"
        )
    raw = med["raw", "asyncio"]
    for loop in loops:
        used = med["relay", loop]
        same = med["raw", loop]
        per_media_s = used / media_s
        print(
            f"relay on {loop}: {used / raw:.2f}x the asyncio raw consume (raw / relay "
            f"{raw / used:.2f}), {used / same:.2f}x the raw consume on {loop} (raw / relay "
            f"{same / used:.2f}), {used / med['floor', loop]:.2f}x the floor on {loop}; "
            f"target raw / relay >= 0.7"
        )
        print(
            f"  CPU per media-second per session: {per_media_s * 1e6:.0f} us "
            f"-> {1 / per_media_s:,.0f} sessions per core at {bitrate / 1000:.0f} kbit/s"
        )


# -- capacity -------------------------------------------------------------------------------


def _histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram from the /metrics text."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = float(line.split()[-1])
    return buckets


def _histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Quantile ``q`` of the observations between two scrapes, interpolated linearly inside
    its bucket (as Prometheus' ``histogram_quantile``); NaN when there were none."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    lower, below = 0.0, 0.0
    for bound in sorted(after):
        count = after[bound] - before.get(bound, 0.0)
        if count >= q * total:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((q * total - below) / inside if inside else 1.0)
        lower, below = bound, count
    return float("inf")


def _zigzag(value: int) -> bytes:
    """An Avro ``long``: zigzag, then base-128 little-endian."""
    number = (value << 1) ^ (value >> 63)
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


class _PreEncoded:
    """One chunk's VideoChunk record encoded once: per send only the session id (the first
    field) and ``produced_at`` (the last, timestamp-micros) are written around the encoded
    middle, so the publisher spends no CPU re-encoding megabytes of payload."""

    def __init__(self, codec: Codec, topic: str, chunk: ClipChunk) -> None:
        def encoded(sid: str) -> bytes:
            record = VideoChunk(
                session_id=sid,
                seq=chunk.seq,
                media_start_s=chunk.media_start_s,
                media_duration_s=chunk.media_duration_s,
                keyframe_start=True,
                payload=chunk.payload,
                produced_at=datetime(1970, 1, 1, tzinfo=UTC),  # micros 0: one trailing 0x00
            )
            return codec.encode(record.AVRO_NAME, record.to_avro(), topic=topic)

        empty, one = encoded(""), encoded("a")
        at = next(i for i, (x, y) in enumerate(zip(empty, one, strict=False)) if x != y)
        self.header, self.middle = empty[:at], empty[at + 1 : -1]

    def value(self, sid: bytes, produced_at: datetime) -> bytes:
        micros = (produced_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return b"".join((self.header, _zigzag(len(sid)), sid, self.middle, _zigzag(micros)))


async def _publish_live(args: argparse.Namespace) -> None:
    """``publish-live``: ``--sids`` live sessions, each chunk sent when its media time comes
    (``produced_at`` = send time); session ``i`` of ``n`` starts ``i / n * --stagger-s`` late
    (real sessions start at random times; 0: every session's chunk at the same instant);
    prints the worst lateness (s) as JSON. Run by ``capacity`` as its own process on uvloop,
    so the publisher is not what the step measures."""
    clip = padded(fixture_chunks(CLIP_RAMP), args.kbit)
    sids = args.sids.split(",")
    async with ChunkPublisher(args.topic) as publisher:
        codec, producer = publisher._codec, publisher._producer
        for sid in sids:
            await publisher.send(started_record(sid, live=True))
        pre = [_PreEncoded(codec, args.topic, chunk) for chunk in clip.chunks]
        probe = codec.decode(pre[0].value(b"probe", datetime.now(UTC)), topic=args.topic).datum
        if (probe["session_id"], probe["seq"]) != ("probe", clip.chunks[0].seq):
            raise SystemExit(f"pre-encoded record decodes wrong: {probe}")
        keys = [sid.encode() for sid in sids]
        phase = [index / len(keys) * args.stagger_s for index in range(len(keys))]
        plan = sorted(
            (chunk.media_start_s + phase[index], index, encoded)
            for chunk, encoded in zip(clip.chunks, pre, strict=True)
            for index in range(len(keys))
        )
        start, worst = time.monotonic(), 0.0
        sends: list[asyncio.Future[object]] = []
        for at, index, encoded in plan:
            due = start + at
            if due > time.monotonic():
                await asyncio.gather(*sends)
                sends = []
                await asyncio.sleep(due - time.monotonic())
            worst = max(worst, time.monotonic() - due)
            key = keys[index]
            sends.append(
                await producer.send(args.topic, encoded.value(key, datetime.now(UTC)), key=key)
            )
        await asyncio.gather(*sends)
        for sid in sids:
            await publisher.end(sid, clip)
    print(json.dumps({"lag_s": worst}), flush=True)


async def _transit(topic: str, ready: asyncio.Event, out: list[float]) -> None:
    """Baseline of the added latency: ``produced_at`` -> a raw aiokafka consumer (in this
    process) holds the chunk record, for every chunk record published from now on."""
    consumer = make_consumer(group_id=None, auto_offset_reset="latest")
    await consumer.start()
    try:
        consumer.subscribe([topic])
        while not consumer.assignment():  # nothing is published before ``ready``
            await consumer.getmany(timeout_ms=50)
        for part in consumer.assignment():
            await consumer.position(part)  # at the end now: only records published later
        ready.set()
        codec = get_codec()
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                now = datetime.now(UTC)
                for record in records:
                    decoded = codec.decode(record.value or b"", topic=topic)
                    if decoded.name == "VideoChunk":
                        out.append((now - decoded.datum["produced_at"]).total_seconds())
    finally:
        await consumer.stop()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


_LEGS = (
    ("end to end: produced_at -> frame written", "inter1_worker_frame_send_seconds"),
    ("chunk consumed: produced_at -> handed to worker", "inter1_worker_chunk_consume_seconds"),
    ("worker relay: handed over -> frame written", "inter1_worker_frame_relay_seconds"),
    ("  of which the WebSocket send", "inter1_worker_frame_ws_send_seconds"),
    ("worker events: received -> acked by Kafka", "inter1_worker_event_publish_seconds"),
    ("  of which the produce -> ack", "inter1_worker_publish_ack_seconds"),
    (
        "checkpoint flush (no records handed over meanwhile)",
        "inter1_worker_checkpoint_flush_seconds",
    ),
)


async def _capacity_step(
    args: argparse.Namespace,
    count: int,
    clip: ClipChunks,
    *,
    topic: str,
    http: httpx.AsyncClient,
    pid: int,
    sim_pid: int,
) -> None:
    """One step: ``count`` live sessions through the worker; prints CPU, RSS, each leg."""
    idle_rss = rss_mb(pid)
    text = (await http.get("/metrics")).text
    before = {name: _histogram(text, name) for _label, name in _LEGS}
    cpu0, load0 = cpu_s(pid), os.getloadavg()[0]
    sim0, wall0 = cpu_s(sim_pid), time.monotonic()
    own0, kids0 = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    sids = [f"cap-{count}-{i}-{uuid.uuid4().hex[:4]}" for i in range(count)]
    peak = idle_rss
    transit: list[float] = []
    listening = asyncio.Event()
    watcher = asyncio.create_task(_transit(topic, listening, transit))
    await asyncio.wait(
        [watcher, asyncio.create_task(listening.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if watcher.done():
        watcher.result()  # the baseline consumer failed: raise it
    sender = await asyncio.create_subprocess_exec(
        *(sys.executable, __file__, "publish-live", "--topic", topic),
        *("--kbit", str(args.kbit), "--sids", ",".join(sids)),
        *("--stagger-s", str(args.stagger_s)),
        stdout=asyncio.subprocess.PIPE,
    )
    out_task = asyncio.create_task(sender.communicate())
    while not out_task.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.5)
    lag = json.loads(out_task.result()[0].decode().splitlines()[-1])["lag_s"]
    while True:  # every session drained
        text = (await http.get("/metrics")).text
        active = [
            line for line in text.splitlines() if line.startswith("inter1_worker_active_sessions ")
        ]
        peak = max(peak, rss_mb(pid))
        if active and float(active[0].split()[-1]) == 0:
            break
        await asyncio.sleep(0.5)
    used = cpu_s(pid) - cpu0
    wall = time.monotonic() - wall0
    sim_used = cpu_s(sim_pid) - sim0
    own1, kids1 = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    bench_used = own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime
    publisher_used = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    load = (load0 + os.getloadavg()[0]) / 2
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    per = used / (count * clip.duration_s)
    print(
        f"\n{count} sessions: worker {per * 1e6:.0f} us CPU per media-s ({1 / per:,.0f} "
        f"sessions/core), RSS {(peak - idle_rss) / count:.2f} MB/session, publisher late "
        f"<= {lag * 1000:.0f} ms, load average ~{load:.1f} (2 cores, shared)"
    )
    print(
        f"  cores busy over the step's {wall:.0f} s: worker {used / wall:.2f}, simulator "
        f"{sim_used / wall:.2f}, publisher {publisher_used / wall:.2f}, bench (transit "
        f"consumer) {bench_used / wall:.2f}"
    )
    print(f"  {'leg':50s} {'p50 ms':>8s} {'p99 ms':>8s} {'n':>6s}")
    print(
        f"  {'Kafka transit (bench consumer, baseline)':50s} {_quantile(transit, 0.5) * 1000:8.1f}"
        f" {_quantile(transit, 0.99) * 1000:8.1f} {len(transit):6d}"
    )
    for label, name in _LEGS:
        after = _histogram(text, name)
        seen = after.get(float("inf"), 0.0) - before[name].get(float("inf"), 0.0)
        p50 = _histogram_quantile(before[name], after, 0.5) * 1000
        p99 = _histogram_quantile(before[name], after, 0.99) * 1000
        print(f"  {label:50s} {p50:8.1f} {p99:8.1f} {seen:6.0f}")


async def capacity(args: argparse.Namespace) -> None:
    steps = [int(n) for n in args.steps.split(",")]
    sim_port, http_port = _free_port(), _free_port()
    sim = _simulator(sim_port, "boxes", max(steps))
    prefix = f"cap{uuid.uuid4().hex[:8]}."
    topics = await create_prefixed_topics(prefix)
    env = {
        **os.environ,
        "KAFKA_TOPIC_PREFIX": prefix,
        "INTER1_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "INTER1_API_KEY": "sim-key",
        "PIPELINE_WORKER_GROUP_ID": f"cap-{uuid.uuid4().hex[:8]}",
        "PIPELINE_WORKER_HTTP_PORT": str(http_port),
        "PIPELINE_WORKER_MAX_SESSIONS": str(max(steps) + 10),
        "PIPELINE_WORKER_SESSION_QUEUE_CHUNKS": "64",
        "PIPELINE_WORKER_EVENT_LOOP": args.loop,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [*_CLI, "session-worker"], env=env, stdout=subprocess.DEVNULL
    )
    clip = padded(fixture_chunks(CLIP_RAMP), args.kbit)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise SystemExit("the worker did not become ready")
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)
            print(
                f"clip: {clip.duration_s:g} s, {len(clip.chunks)} chunks at {args.kbit:g} kbit/s; "
                f"session starts staggered over {args.stagger_s:g} s; worker on {args.loop}"
            )
            for count in steps:
                await _capacity_step(
                    args,
                    count,
                    clip,
                    topic=topics.chunks,
                    http=http,
                    pid=worker.pid,
                    sim_pid=sim.pid,
                )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        sim.terminate()
        sim.wait(timeout=30)
        await delete_topics(topics)


def _main(args: argparse.Namespace) -> None:
    configure_logging("WARNING", "json")  # as the CLI does; per-session info lines off
    settings = kafka_settings()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    load.cache_clear()
    if args.mode == "relay":
        relay(args)
    elif args.mode == "capacity":
        run_on("uvloop", capacity(args))
    else:
        run_on("uvloop", _publish_live(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", nargs="?", choices=("relay", "capacity", "publish-live"), default="relay"
    )
    parser.add_argument("--sessions", type=int, default=40, help="relay: sessions")
    parser.add_argument("--kbit", type=float, default=2000.0, help="media bitrate per session")
    parser.add_argument(
        "--clip-s",
        type=float,
        default=None,
        help="relay: session length in media seconds (a clip encoded here; default: the "
        "committed 20 s fixture)",
    )
    parser.add_argument("--profile", help="relay: write a cProfile of the relay here")
    parser.add_argument(
        "--pace",
        type=float,
        default=SessionWorkerSettings().recorded_pace,
        help="relay: the worker's PIPELINE_WORKER_RECORDED_PACE (default: the setting's "
        "default; 0: unpaced, each frame sent once complete)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="relay: interleaved runs (median)")
    parser.add_argument("--steps", default="25,50,100", help="capacity: session counts")
    parser.add_argument("--loop", default="uvloop", help="capacity: the worker's event loop")
    parser.add_argument(
        "--stagger-s",
        type=float,
        default=3.0,
        help="capacity: spread session starts over this many seconds (0: all at once)",
    )
    parser.add_argument("--topic", help="publish-live (run by capacity): the chunk topic")
    parser.add_argument("--sids", help="publish-live (run by capacity): session ids")
    _main(parser.parse_args())


if __name__ == "__main__":
    main()
