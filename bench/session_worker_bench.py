"""Session worker: relay cost against a raw aiokafka consume of the same chunk bytes, and
CPU per media-second per session.

Publishes ``--sessions`` copies of a committed fixture clip (keyframe chunks) to fresh
prefixed topics on ``KAFKA_BOOTSTRAP_SERVERS`` (or the local stack), then measures this
process's CPU time (a) reading every chunk record with a plain aiokafka consumer and
(b) running the session worker over the same records until every session ended, relaying
them to the simulator (a subprocess, ``--decode none``, instant model, so its CPU is not
counted). Prints figures; asserts nothing.

    .venv/bin/python bench/session_worker_bench.py [--sessions 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(ROOT),
    str(ROOT / "tests" / "simulator"),
    str(ROOT / "tests" / "workers" / "session"),
]

from session_helpers import ChunkPublisher, fixture_chunks  # noqa: E402
from sim_helpers import CLIP_RAMP  # noqa: E402
from worker_process import create_prefixed_topics, delete_topics  # noqa: E402

from inter1_pipeline.kafka_address import kafka_settings  # noqa: E402
from runtime.kafka import make_consumer  # noqa: E402
from runtime.settings import Inter1Settings, SessionWorkerSettings, load  # noqa: E402
from workers.session.app import WorkerRuntime, run_worker  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def _relay(topics: object, base_url: str, sessions: int) -> tuple[float, float]:
    out: list[WorkerRuntime] = []
    started = asyncio.Event()
    worker = SessionWorkerSettings(
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        http_port=0,
        commit_interval_s=1.0,
        publish_interval_s=0.2,
        session_queue_chunks=64,
        max_sessions=max(500, sessions),
    )
    inter1 = Inter1Settings(api_key="sim-key", base_url=base_url)
    task = asyncio.create_task(
        run_worker(topics, worker=worker, inter1=inter1, started=started, runtime_out=out)  # type: ignore[arg-type]
    )
    await started.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    handler = out[0].handler
    while handler.finished < sessions:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
    out[0].loop.request_stop()
    await task
    return elapsed, used


async def _main(args: argparse.Namespace) -> None:
    settings = kafka_settings()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    load.cache_clear()
    port = _free_port()
    sim = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [
            sys.executable,
            "-c",
            "from inter1_pipeline.cli import main; main()",
            "simulate",
            "--port",
            str(port),
            "--decode",
            "none",
            "--ratio",
            "0",
            "--max-lag",
            "3600",
            "--capacity",
            str(args.sessions + 10),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    topics = await create_prefixed_topics(f"bench{uuid.uuid4().hex[:8]}.")
    try:
        clip = fixture_chunks(CLIP_RAMP)
        async with ChunkPublisher(topics.chunks) as publisher:
            for index in range(args.sessions):
                await publisher.session(f"bench-{index}", clip)
        records = args.sessions * (len(clip.chunks) + 2)
        raw_wall, raw_cpu, size = await _raw_consume(topics.chunks, records)
        relay_wall, relay_cpu = await _relay(topics, f"http://127.0.0.1:{port}", args.sessions)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
        await delete_topics(topics)
    media_s = args.sessions * clip.duration_s
    bitrate = size * 8 / media_s
    per_media_s = relay_cpu / media_s
    print(
        f"{args.sessions} sessions x {clip.duration_s:g} s ({len(clip.chunks)} chunks, "
        f"{bitrate / 1000:.0f} kbit/s), {records} records, {size / 1e6:.1f} MB"
    )
    print(f"raw aiokafka consume: {raw_cpu * 1000:.0f} ms CPU ({raw_wall * 1000:.0f} ms wall)")
    print(f"session worker relay: {relay_cpu * 1000:.0f} ms CPU ({relay_wall * 1000:.0f} ms wall)")
    print(f"relay cost ratio (raw / relay CPU): {raw_cpu / relay_cpu:.2f} (target >= 0.7)")
    print(
        f"CPU per media-second per session: {per_media_s * 1e6:.0f} us "
        f"-> {1 / per_media_s:,.0f} sessions per core at {bitrate / 1000:.0f} kbit/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
