"""How many concurrent ~2 Mbit/s live sessions one simulator process sustains, per decode depth.

For each analysis depth (``--decode all|keyframes|none|boxes``) starts ``inter1-pipeline simulate
--ratio 0.3 --decode DEPTH`` as its own process, then ramps the number of concurrent
sessions (each streams a generated 720p, ~2 Mbit/s fragmented-MP4 clip paced in real time
through the official SDK) and reads the simulator's ``GET /usage`` totals and its CPU time
from /proc. The figure is the highest session count whose every window was analysed (zero
``coverage.dropped``). Then, at twice the sustained count of ``all``, it reports the share
of media shed per session (min/median/max): with decode shedding each session sheds part
of its media and catches up instead of shedding everything. Baseline, measured in the same
run: plain PyAV decoding of the same clip, as real-time streams per CPU core; and for
``boxes``, the box-header reader alone on the same clip (CPU per media second).

The bench clients share the machine with the simulator; steps where they could not send
in real time are flagged client-bound and prove nothing.

Run: ``.venv/bin/python bench/simulator_bench.py [--decode boxes] [--seconds 10]``.
Bounded: under 8 minutes in all (each depth has its own time budget).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field

import av
import httpx
from interhumanai import InterhumanClient
from proc_stats import cpu_s
from websockets.asyncio.client import connect

from simulator.box_media import BoxMediaStream
from simulator.clips import ClipSpec, make_clip

_BUDGET_S = {"all": 80.0, "keyframes": 60.0, "none": 80.0, "boxes": 110.0}
"""Wall-time budget of each depth's ramp (all four plus the overload step: < 8 min)."""
_FIRST_STEP = {"all": 8, "keyframes": 32, "none": 64, "boxes": 256}
_TOTAL_BUDGET_S = 420.0
"""The whole bench (clips, ramps, overload step) stays under 8 minutes."""
_STEP_SLACK_S = 20.0
_MAX_DELAY_S = 8.0
"""A step keeps up only if p99 window delivery stays within the simulator's --max-lag."""


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
    client_cpu_cores: float = 0.0
    shed_fractions: list[float] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Every window analysed and delivered in time, every session closed normally."""
        return (
            not self.dropped_ms
            and self.completed == self.sessions
            and self.p99_delivery_s <= _MAX_DELAY_S
            and not self.client_bound
        )

    @property
    def client_bound(self) -> bool:
        """The bench's own clients could not send in real time: the step proves nothing."""
        return self.max_send_late_s > 1.0


def boxes_baseline(clip: bytes, seconds: float) -> float:
    """Process CPU seconds the box-header reader spends per media second (16 KiB frames)."""
    frames = [clip[i : i + 16384] for i in range(0, len(clip), 16384)]
    cpu_start, rounds = time.process_time(), 0
    while time.process_time() - cpu_start < 1.0:
        media = BoxMediaStream(
            "mp4", lambda _: None, require_video=True, video_sample_fps=4.0, video_gap_ms=1000
        )
        for frame in frames:
            media.feed(frame)
        media.finish()
        rounds += 1
    return (time.process_time() - cpu_start) / (rounds * seconds)


def decode_baseline(clip: bytes, seconds: float) -> float:
    """Media seconds PyAV decodes per CPU second (all frames, audio and video)."""
    start = time.process_time()
    with av.open(io.BytesIO(clip), mode="r") as container:
        for _ in container.decode(video=0):
            pass
    return seconds / (time.process_time() - start)


async def _session(
    url: str, clip: bytes, seconds: float, delays: list[float], lateness: list[float]
) -> tuple[str, bool]:
    """One live session: send the clip paced in real time, time each window's delivery."""
    stream = InterhumanClient(access_token="sim-key", base_url=url).stream()
    await stream.connect()
    ready = await stream.wait_for_session_ready()
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
    session_id = str(getattr(ready, "correlation_id", ""))
    return session_id, (await stream.wait_closed()).code == 1000


async def _raw_session(
    url: str, clip: bytes, seconds: float, delays: list[float], lateness: list[float]
) -> tuple[str, bool]:
    """A lighter client: plain ``websockets``, one binary frame per media second.

    The same protocol as the SDK session (bearer key, config frame, ``session.close``);
    used for ``--decode boxes``, where SDK clients in one process run out of CPU before
    the simulator does. One-second segments are still below the docs' 3 s minimum.
    """
    await asyncio.sleep(random.random())  # clients join over a second, not all at once
    ws_url = url.replace("http://", "ws://") + "/v1/stream/analyze"
    headers = {"Authorization": "Bearer sim-key"}
    async with connect(ws_url, additional_headers=headers, compression=None) as ws:
        ready = json.loads(await ws.recv())
        chunks = max(1, int(seconds))
        size = -(-len(clip) // chunks)
        started = time.monotonic()

        async def consume() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "conversation_quality.updated":
                    window_end = event["data"]["timeline"][-1]["end"]
                    delays.append(time.monotonic() - started - window_end)

        reader = asyncio.create_task(consume())
        await ws.send(json.dumps({"include": ["conversation_quality_timeline"]}))
        for i in range(chunks):
            due = started + i * seconds / chunks
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            lateness.append(time.monotonic() - due)
            await ws.send(clip[i * size : (i + 1) * size])
        await ws.send(json.dumps({"type": "session.close"}))
        await reader
    return str(ready.get("correlation_id", "")), ws.close_code == 1000


async def run_step(
    url: str, pid: int, clip: bytes, seconds: float, sessions: int, *, raw: bool = False
) -> Step:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
        before = (await http.get("/usage")).json()["totals"]
        cpu_before, wall_before = cpu_s(pid), time.monotonic()
        client_before = time.process_time()
        delays: list[float] = []
        lateness: list[float] = []
        limit_s = 2 * seconds + _STEP_SLACK_S  # a saturated simulator must not stall the bench
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    (_raw_session if raw else _session)(url, clip, seconds, delays, lateness),
                    limit_s,
                )
                for _ in range(sessions)
            ),
            return_exceptions=True,
        )
        wall = time.monotonic() - wall_before
        cpu = (cpu_s(pid) - cpu_before) / wall
        client_cpu = (time.process_time() - client_before) / wall
        await asyncio.sleep(0.2)
        summary = (await http.get("/usage")).json()
    after = summary["totals"]
    ids = {r[0] for r in results if isinstance(r, tuple)}
    fractions = [
        u["dropped_ms"] / u["media_received_ms"]
        for u in summary["sessions"]
        if u["session_id"] in ids and u["media_received_ms"]
    ]
    delays.sort()
    p99 = delays[int(0.99 * (len(delays) - 1))] if delays else float("nan")
    return Step(
        sessions=sessions,
        dropped_ms=after["dropped_ms"] - before["dropped_ms"],
        analysed_ms=after["analysed_ms"] - before["analysed_ms"],
        media_ms=after["media_received_ms"] - before["media_received_ms"],
        cpu_cores=cpu,
        completed=sum(1 for r in results if isinstance(r, tuple) and r[1]),
        p99_delivery_s=p99,
        max_send_late_s=max(lateness, default=0.0),
        client_cpu_cores=client_cpu,
        shed_fractions=sorted(fractions),
    )


async def _start_simulator(decode: str, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    """``inter1-pipeline simulate --ratio 0.3 --decode DEPTH`` in its own process, and its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from inter1_pipeline.cli import main; main()",
        "simulate", "--port", "0", "--ratio", "0.3", "--capacity", "10000",
        "--decode", decode, *extra,
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

    def __init__(
        self, url: str, pid: int, clip: bytes, seconds: float, budget_s: float, *, raw: bool
    ) -> None:
        self.url, self.pid, self.clip, self.seconds, self.raw = url, pid, clip, seconds, raw
        self.deadline = time.monotonic() + budget_s
        self.steps: list[Step] = []
        self.last_wall_s = seconds + 6.0

    async def attempt(self, count: int) -> bool | None:
        """Run one step; True clean, False shed, None out of budget or client-bound."""
        if time.monotonic() + self.last_wall_s > self.deadline:
            print("  stopping: time budget")
            return None
        started = time.monotonic()
        step = await run_step(self.url, self.pid, self.clip, self.seconds, count, raw=self.raw)
        self.last_wall_s = max(self.last_wall_s, time.monotonic() - started)
        self.steps.append(step)
        _print_step(step)
        if step.client_bound:
            print("  stopping: the bench clients fell behind real time (client-bound)")
            return None
        return step.clean

    async def run(self, first: int, max_sessions: int) -> Step | None:
        """The clean step with the most sessions."""
        low, high, sessions = 0, 0, first
        while sessions <= max_sessions:
            outcome = await self.attempt(sessions)
            if outcome is None:
                break
            if not outcome:
                high = sessions
                break
            low, sessions = sessions, sessions * 2
        if high and not low:  # the first step already shed: halve down
            while high > 1:
                outcome = await self.attempt(high // 2)
                if outcome is None:
                    break
                if outcome:
                    low = high // 2
                    break
                high //= 2
        while low and high and high - low > max(1, low // 8):
            middle = (low + high) // 2
            outcome = await self.attempt(middle)
            if outcome is None:
                break
            low, high = (middle, high) if outcome else (low, middle)
        clean = [s for s in self.steps if s.clean]
        return max(clean, key=lambda s: s.sessions) if clean else None


def _print_step(step: Step) -> None:
    print(
        f"  {step.sessions:4d} sessions: dropped {step.dropped_ms / 1000:7.1f} s of "
        f"{step.media_ms / 1000:8.1f} s, simulator CPU {step.cpu_cores:4.2f} cores, "
        f"p99 window delivery {step.p99_delivery_s:5.2f} s after its media, "
        f"clients up to {step.max_send_late_s:4.2f} s late (client CPU "
        f"{step.client_cpu_cores:4.2f} cores), "
        f"{step.completed}/{step.sessions} closed 1000"
    )


async def _sustained(
    depth: str, clip: bytes, seconds: float, max_sessions: int, budget_s: float
) -> Step | None:
    """The most sessions one simulator at ``depth`` serves with zero shedding."""
    print(f"decode {depth}: ramp (budget {budget_s:.0f} s)")
    proc, url = await _start_simulator(depth)
    try:
        raw = depth == "boxes"
        print(f"  clients: {'plain websockets, 1 frame/s' if raw else 'official SDK, 4 frames/s'}")
        ramp = _Ramp(url, proc.pid, clip, seconds, budget_s, raw=raw)
        return await ramp.run(min(_FIRST_STEP[depth], max_sessions), max_sessions)
    finally:
        proc.terminate()
        await proc.wait()


async def _overload(clip: bytes, seconds: float, sessions: int) -> Step:
    """One step at ``sessions`` (past capacity) with ``--decode all``."""
    proc, url = await _start_simulator("all")
    try:
        step = await run_step(url, proc.pid, clip, seconds, sessions)
    finally:
        proc.terminate()
        await proc.wait()
    _print_step(step)
    return step


async def _backend_overload(clip: bytes, seconds: float, sessions: int) -> None:
    """``sessions`` against one shared backend of half their demand (``--decode boxes``)."""
    capacity = sessions * 0.3 * 8 / 3 / 2  # each session offers 0.3 x 8 s every 3 s
    args = ("--backend-capacity", f"{capacity:g}", "--backend-refuse-wait", "3600")
    print(f"shared backend: {sessions} sessions, --backend-capacity {capacity:g} (2x overload)")
    proc, url = await _start_simulator("boxes", *args)
    try:
        step = await run_step(url, proc.pid, clip, seconds, sessions, raw=True)
    finally:
        proc.terminate()
        await proc.wait()
    _print_step(step)
    shed = step.shed_fractions
    if not shed:
        print("shared backend: no session reported usage")
        return
    partial = sum(1 for f in shed if 0.0 < f < 1.0)
    print(
        f"shared backend at 2x: media shed per session min {shed[0]:.0%} / median "
        f"{statistics.median(shed):.0%} / max {shed[-1]:.0%}; {partial}/{len(shed)} sessions "
        f"shed part of their media, {sum(1 for f in shed if f >= 1.0)} all of it, "
        f"{sum(1 for f in shed if f == 0.0)} none; overall {step.dropped_ms / step.media_ms:.0%}"
    )


def _report(depth: str, best: Step | None, mbit: float, per_core: float) -> None:
    if best is None:
        print(f"result {depth}: no step ran without shedding")
        return
    per_session_cpu = best.cpu_cores / best.sessions
    print(
        f"result {depth}: {best.sessions} concurrent ~{mbit:.1f} Mbit/s sessions at ratio 0.3 "
        f"with zero coverage.dropped and p99 window delivery {best.p99_delivery_s:.2f} s "
        f"after its media, simulator CPU {best.cpu_cores:.2f} cores "
        f"({per_session_cpu * 100:.2f}% of a core per session); simulator CPU per session / "
        f"decode-only baseline CPU per stream = {per_session_cpu * per_core:.2f}"
    )


def _report_overload(step: Step, sustained: int) -> None:
    shed = step.shed_fractions
    if not shed:
        print("overload: no session reported usage")
        return
    partial = sum(1 for f in shed if 0.0 < f < 1.0)
    print(
        f"overload ({step.sessions} sessions = 2 x {sustained}, --decode all): media shed per "
        f"session min {shed[0]:.0%} / median {statistics.median(shed):.0%} / max {shed[-1]:.0%}; "
        f"{partial}/{len(shed)} sessions shed part of their media, "
        f"{sum(1 for f in shed if f >= 1.0)} shed all of it; "
        f"p99 window delivery {step.p99_delivery_s:.2f} s after its media"
    )


def _clip(seconds: float) -> bytes:
    spec = ClipSpec(seconds=seconds, width=1280, height=720, fps=25, bitrate=2_000_000, noise=24)
    return make_clip(spec)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-sessions", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length per session")
    parser.add_argument(
        "--overload-seconds",
        type=float,
        default=24.0,
        help="clip length of the overload step (long enough for the decoders to fall behind)",
    )
    parser.add_argument(
        "--decode",
        choices=["all", "keyframes", "none", "boxes"],
        default=None,
        help="measure this depth only (default: all four, then the overload step)",
    )
    parser.add_argument("--keyframes-only", action="store_true", help="alias of --decode keyframes")
    parser.add_argument(
        "--backend-sessions",
        type=int,
        default=128,
        help="with boxes: sessions of the shared-backend step at 2x its capacity (0: skip)",
    )
    args = parser.parse_args()
    bench_start = time.monotonic()
    depths = ["keyframes"] if args.keyframes_only else [args.decode] if args.decode else []
    depths = depths or ["all", "keyframes", "none", "boxes"]

    clip = _clip(args.seconds)
    mbit = len(clip) * 8 / args.seconds / 1e6
    per_core = decode_baseline(clip, args.seconds)
    print(f"clip: 1280x720 25 fps, {mbit:.2f} Mbit/s, {args.seconds:g} s")
    print(f"baseline: PyAV decode alone = {per_core:.1f}x real time per CPU core")
    if "boxes" in depths:
        parse = boxes_baseline(clip, args.seconds)
        print(f"baseline: box-header reader alone = {parse * 1e6:.0f} us CPU per media second")

    overload_clip = _clip(args.overload_seconds) if len(depths) > 1 else b""
    deadline = bench_start + _TOTAL_BUDGET_S
    results: dict[str, Step | None] = {}
    for depth in depths:
        left = deadline - time.monotonic()
        budget = min(_BUDGET_S[depth], left) if len(depths) > 1 else min(240.0, left)
        results[depth] = await _sustained(depth, clip, args.seconds, args.max_sessions, budget)
        _report(depth, results[depth], mbit, per_core)
        best_all = results.get("all")
        if depth == "all" and best_all is not None and overload_clip:
            step = await _overload(overload_clip, args.overload_seconds, 2 * best_all.sessions)
            _report_overload(step, best_all.sessions)
    if "boxes" in depths and args.backend_sessions:
        long_clip = overload_clip or _clip(args.overload_seconds)
        await _backend_overload(long_clip, args.overload_seconds, args.backend_sessions)
    print("summary: " + ", ".join(
        f"{d} {r.sessions if r else 0} sessions" for d, r in results.items()
    ))  # fmt: skip
    print(f"bench wall time: {time.monotonic() - bench_start:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
