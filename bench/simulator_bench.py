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
    max_send_late_s: float

    @property
    def client_bound(self) -> bool:
        """The bench's own clients could not send in real time: the step proves nothing."""
        return self.max_send_late_s > 1.0


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


async def _session(
    url: str, clip: bytes, seconds: float, delays: list[float], lateness: list[float]
) -> bool:
    """One live session: send the clip paced in real time, time each window's delivery."""
    stream = InterhumanClient(access_token="sim-key", base_url=url).stream()
    await stream.connect()
    await stream.wait_for_session_ready()
    chunks = 4 * int(seconds)
    size = -(-len(clip) // chunks)
    started = time.monotonic()

    async def consume() -> None:
        async for event in stream:
            if event.type == "conversation_quality.updated":
                window_end = event.data.timeline[-1].end  # type: ignore[union-attr,index]
                delays.append(time.monotonic() - started - window_end)

    reader = asyncio.create_task(consume())
    await stream.update_config(include=["conversation_quality_timeline"])
    for i in range(chunks):
        due = started + i * seconds / chunks
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        lateness.append(time.monotonic() - due)
        await stream.send_video(clip[i * size : (i + 1) * size])
    await stream.request_close()
    await reader
    return (await stream.wait_closed()).code == 1000


async def run_step(url: str, pid: int, clip: bytes, seconds: float, sessions: int) -> Step:
    async with httpx.AsyncClient(base_url=url) as http:
        before = (await http.get("/usage")).json()["totals"]
        cpu_before, wall_before = _cpu_seconds(pid), time.monotonic()
        delays: list[float] = []
        lateness: list[float] = []
        results = await asyncio.gather(
            *(_session(url, clip, seconds, delays, lateness) for _ in range(sessions)),
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
        max_send_late_s=max(lateness, default=0.0),
    )


async def _start_simulator(keyframes_only: bool) -> tuple[asyncio.subprocess.Process, str]:
    """``inter1-pipeline simulate --ratio 0.3`` in its own process, and its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from inter1_pipeline.cli import main; main()",
        "simulate", "--port", "0", "--ratio", "0.3", "--capacity", "10000",
        *(["--keyframes-only"] if keyframes_only else []),
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"},
    )  # fmt: skip
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode()
        if not line:
            raise SystemExit("simulator did not start")
        found = re.search(r"Inter-1 simulator on (http://\S+) ", line)
        if found:
            return proc, found.group(1)


class _Ramp:
    """Doubles the session count until the first shed, then bisects; stays in budget."""

    def __init__(self, url: str, pid: int, clip: bytes, seconds: float, started: float) -> None:
        self.url, self.pid, self.clip, self.seconds, self.started = url, pid, clip, seconds, started
        self.steps: list[Step] = []

    async def attempt(self, count: int) -> bool | None:
        """Run one step; True clean, False shed, None out of budget or client-bound."""
        if time.monotonic() - self.started + self.seconds * 2 > _DEADLINE_S:
            print("stopping: time budget")
            return None
        step = await run_step(self.url, self.pid, self.clip, self.seconds, count)
        self.steps.append(step)
        print(
            f"{step.sessions:4d} sessions: dropped {step.dropped_ms / 1000:7.1f} s of "
            f"{step.media_ms / 1000:8.1f} s, simulator CPU {step.cpu_cores:4.2f} cores, "
            f"p99 window delivery {step.p99_delivery_s:5.2f} s after its media, "
            f"clients up to {step.max_send_late_s:4.2f} s late, "
            f"{step.completed}/{step.sessions} closed 1000"
        )
        if step.client_bound:
            print("stopping: the bench clients fell behind real time (client-bound)")
            return None
        return not step.dropped_ms and step.completed == step.sessions

    async def run(self, max_sessions: int) -> Step | None:
        """The clean step with the most sessions."""
        low, high, sessions = 0, 0, 1
        while sessions <= max_sessions:
            outcome = await self.attempt(sessions)
            if outcome is None:
                break
            if not outcome:
                high = sessions
                break
            low, sessions = sessions, sessions * 2
        while high and high - low > max(1, low // 8):
            middle = (low + high) // 2
            outcome = await self.attempt(middle)
            if outcome is None:
                break
            low, high = (middle, high) if outcome else (low, middle)
        clean = [
            s
            for s in self.steps
            if not s.dropped_ms and s.completed == s.sessions and not s.client_bound
        ]
        return max(clean, key=lambda s: s.sessions) if clean else None


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

    proc, url = await _start_simulator(args.keyframes_only)
    try:
        best = await _Ramp(url, proc.pid, clip, args.seconds, bench_start).run(args.max_sessions)
    finally:
        proc.terminate()
        await proc.wait()

    if best is None:
        print("result: no step ran without shedding")
        return
    per_session_cpu = best.cpu_cores / best.sessions
    print(
        f"result: {best.sessions} concurrent ~{mbit:.1f} Mbit/s sessions at ratio 0.3 with zero "
        f"coverage.dropped, simulator CPU {best.cpu_cores:.2f} cores "
        f"({per_session_cpu * 100:.1f}% of a core per session)"
    )
    print(
        "ratio: simulator CPU per session / decode-only baseline CPU per stream = "
        f"{per_session_cpu * per_core:.2f}"
    )
    print(f"bench wall time: {time.monotonic() - bench_start:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
