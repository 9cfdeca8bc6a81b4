"""How many concurrent ~2 Mbit/s live sessions one simulator process sustains at ratio 0.3.

Starts ``inter1-pipeline simulate --ratio 0.3`` as its own process, then ramps the number
of concurrent sessions (each streams a generated 720p, ~2 Mbit/s fragmented-MP4 clip paced
in real time through the official SDK) and reads the simulator's ``GET /usage`` totals and
its CPU time from /proc. The figure is the highest session count whose every window was
analysed (zero ``coverage.dropped``). Baseline, measured in the same run: plain PyAV
decoding of the same clip, as real-time streams per CPU core.

Run: ``.venv/bin/python bench/simulator_bench.py [--max-sessions 64] [--seconds 12]``.
Bounded: at most ~5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import sys
import time
from dataclasses import dataclass

import av
import httpx
from interhumanai import InterhumanClient

from simulator.clips import ClipSpec, make_clip

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_DEADLINE_S = 280.0


@dataclass
class Step:
    sessions: int
    dropped_ms: int
    analysed_ms: int
    media_ms: int
    cpu_cores: float
    completed: int
    p99_delivery_s: float


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def decode_baseline(clip: bytes, seconds: float) -> float:
    """Media seconds PyAV decodes per CPU second (all frames, audio and video)."""
    start = time.process_time()
    with av.open(io.BytesIO(clip), mode="r") as container:
        for _ in container.decode(video=0):
            pass
    return seconds / (time.process_time() - start)


async def _session(url: str, clip: bytes, seconds: float, delays: list[float]) -> bool:
    stream = InterhumanClient(access_token="sim-key", base_url=url).stream()
    await stream.connect()
    await stream.wait_for_session_ready()
    chunks = 4 * int(seconds)
    size = -(-len(clip) // chunks)
    started = time.monotonic()

    async def consume() -> None:
        async for event in stream:
            data = getattr(event, "data", None)
            media_end = getattr(data, "end", None) if event.type == "signal.ended" else None
            if event.type == "conversation_quality.updated" and data is not None:
                media_end = data.timeline[-1].end if data.timeline else None
            if media_end is not None:
                delays.append(time.monotonic() - started - media_end)

    reader = asyncio.create_task(consume())
    await stream.update_config(include=["conversation_quality_timeline"])
    for i in range(chunks):
        await asyncio.sleep(max(0.0, started + i * seconds / chunks - time.monotonic()))
        await stream.send_video(clip[i * size : (i + 1) * size])
    await stream.request_close()
    await reader
    return (await stream.wait_closed()).code == 1000


async def run_step(url: str, pid: int, clip: bytes, seconds: float, sessions: int) -> Step:
    async with httpx.AsyncClient(base_url=url) as http:
        before = (await http.get("/usage")).json()["totals"]
        cpu_before, wall_before = _cpu_seconds(pid), time.monotonic()
        delays: list[float] = []
        results = await asyncio.gather(
            *(_session(url, clip, seconds, delays) for _ in range(sessions)),
            return_exceptions=True,
        )
        cpu = (_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
        await asyncio.sleep(0.2)
        after = (await http.get("/usage")).json()["totals"]
    delays.sort()
    p99 = delays[int(0.99 * (len(delays) - 1))] if delays else float("nan")
    return Step(
        sessions=sessions,
        dropped_ms=after["dropped_ms"] - before["dropped_ms"],
        analysed_ms=after["analysed_ms"] - before["analysed_ms"],
        media_ms=after["media_received_ms"] - before["media_received_ms"],
        cpu_cores=cpu,
        completed=sum(1 for r in results if r is True),
        p99_delivery_s=p99,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-sessions", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=12.0, help="clip length per session")
    parser.add_argument(
        "--keyframes-only", action="store_true", help="run the simulator with --keyframes-only"
    )
    args = parser.parse_args()
    bench_start = time.monotonic()

    spec = ClipSpec(
        seconds=args.seconds, width=1280, height=720, fps=25, bitrate=2_000_000, noise=24
    )
    clip = make_clip(spec)
    mbit = len(clip) * 8 / args.seconds / 1e6
    per_core = decode_baseline(clip, args.seconds)
    print(f"clip: {spec.width}x{spec.height} {spec.fps} fps, {mbit:.2f} Mbit/s, {args.seconds:g} s")
    print(f"baseline: PyAV decode alone = {per_core:.1f}x real time per CPU core")

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from inter1_pipeline.cli import main; main()",
        "simulate", "--port", "0", "--ratio", "0.3", "--capacity", "10000",
        *(["--keyframes-only"] if args.keyframes_only else []),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"},
    )  # fmt: skip
    assert proc.stderr is not None
    url = ""
    while not url:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise SystemExit("simulator did not start")
        found = re.search(r"Inter-1 simulator on (http://\S+) ", line)
        url = found.group(1) if found else ""

    steps: list[Step] = []
    sessions = 1
    try:
        while sessions <= args.max_sessions:
            if time.monotonic() - bench_start + args.seconds * 2 > _DEADLINE_S:
                print("stopping: time budget")
                break
            step = await run_step(url, proc.pid, clip, args.seconds, sessions)
            steps.append(step)
            print(
                f"{step.sessions:4d} sessions: dropped {step.dropped_ms / 1000:7.1f} s of "
                f"{step.media_ms / 1000:8.1f} s, simulator CPU {step.cpu_cores:4.2f} cores, "
                f"p99 delivery {step.p99_delivery_s:5.2f} s after media, "
                f"{step.completed}/{step.sessions} closed 1000"
            )
            if step.dropped_ms or step.completed < step.sessions:
                break
            sessions *= 2
    finally:
        proc.terminate()
        await proc.wait()

    clean = [s for s in steps if not s.dropped_ms and s.completed == s.sessions]
    best = max(clean, key=lambda s: s.sessions) if clean else None
    if best is None:
        print("result: no step ran without shedding")
        return
    per_session_cpu = best.cpu_cores / best.sessions
    print(
        f"result: {best.sessions} concurrent ~{mbit:.1f} Mbit/s sessions at ratio 0.3 with zero "
        f"coverage.dropped, simulator CPU {best.cpu_cores:.2f} cores "
        f"({per_session_cpu * 100:.1f}% of a core per session)"
    )
    decode_share = 1.0 / per_core
    print(
        f"ratio: simulator CPU per session / decode-only baseline CPU per stream = "
        f"{per_session_cpu / decode_share:.2f}"
    )
    print(f"bench wall time: {time.monotonic() - bench_start:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
