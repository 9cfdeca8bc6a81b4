"""Live cues: events/s through ``inter1-pipeline cues`` and event -> cue latency p50/p99.

Runs the real app (a subprocess, the shipped default rules) against the broker in
``KAFKA_BOOTSTRAP_SERVERS`` (or the local stack), on fresh prefixed topics. Throughput:
a backlog of events published first, then timed from the app's start of consumption to
its commit of the last offset (startup and group join excluded). Latency: events
published live one at a time; per cue, ``fired_at`` minus the wall time its triggering
event was sent. Prints figures; asserts nothing.

    .venv/bin/python bench/cues_bench.py [--sessions 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "workers" / "cues"))  # the tests' app harness

from cues_app import CuesRun, read_cues, wait_until_consumed  # noqa: E402
from events import SessionEvents  # noqa: E402

from runtime.kafka import make_producer  # noqa: E402
from schemas.codec import get_codec  # noqa: E402
from workers.cues.rules import DEFAULT_RULES_FILE  # noqa: E402


def _session(session_id: str) -> list[dict[str, Any]]:
    """40 events; fires hesitation-burst, stress-under-tension, low-energy, disengaged."""
    s = SessionEvents(session_id)
    s.engagement("engaged", 0.0)
    for i in range(12):
        s.detected("hesitation" if i % 2 else "uncertainty", 3.0 * i, "medium")
        s.quality(3.0 * i + 3.0, energy=35.0)
    s.engagement("disengaged", 36.0)
    s.detected("tension", 39.0)
    s.detected("stress", 42.0)
    for i in range(10):
        s.updated("stress", 42.0 + 3.0 * i)
    s.engagement("engaged", 75.0)
    s.session_ended()
    return s.events


async def _publish(run: CuesRun, events: list[dict[str, Any]], live: bool) -> dict[str, float]:
    sent: dict[str, float] = {}
    producer = make_producer()
    await producer.start()
    try:
        for event in events:
            data = get_codec().encode("Inter1Event", event)
            if live:
                sent[event["event_id"]] = time.time()
                await producer.send_and_wait(
                    run.topics["events"], data, key=event["session_id"].encode()
                )
            else:
                await producer.send(run.topics["events"], data, key=event["session_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200, help="sessions in the backlog")
    parser.add_argument("--live-sessions", type=int, default=5, help="sessions sent live")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = CuesRun(Path(tmp), DEFAULT_RULES_FILE)
        asyncio.run(run.ensure_topics())
        backlog = [e for n in range(args.sessions) for e in _session(f"bench-{n}")]
        asyncio.run(_publish(run, backlog, live=False))
        run.start()
        try:
            asyncio.run(_first_commit(run))
            started = time.monotonic()
            asyncio.run(wait_until_consumed(run, deadline_s=600))
            elapsed = time.monotonic() - started
            live = [e for n in range(args.live_sessions) for e in _session(f"live-{n}")]
            sent = asyncio.run(_publish(run, live, live=True))
            asyncio.run(wait_until_consumed(run, deadline_s=120))
            cues = asyncio.run(read_cues(run))
        finally:
            run.stop()
    latencies = sorted(
        (cue["fired_at"].timestamp() - sent[cue["trigger_event_id"]]) * 1000
        for cue in cues
        if cue["trigger_event_id"] in sent
    )
    print(
        f"backlog: {len(backlog)} events of {args.sessions} sessions in {elapsed:.2f} s "
        f"= {len(backlog) / elapsed:,.0f} events/s (after the first commit)"
    )
    print(
        f"live: {len(latencies)} cues; event -> cue latency p50 "
        f"{statistics.median(latencies):.1f} ms, p99 "
        f"{latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]:.1f} ms"
    )
    print(f"cues per session: {len([c for c in cues if c['session_id'] == 'live-0'])}")


async def _first_commit(run: CuesRun) -> None:
    """Wait until the app has joined the group and committed anything (it is consuming)."""
    from runtime.kafka import make_admin

    admin = make_admin()
    await admin.start()
    try:
        deadline = time.monotonic() + 120
        while not await admin.list_consumer_group_offsets(run.app_id):
            assert time.monotonic() < deadline, "the cues app never committed an offset"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


if __name__ == "__main__":
    main()
