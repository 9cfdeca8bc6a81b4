"""Sink process CPU while live events arrive: fetches that gather them against one per event.

Runs ``inter1-pipeline sink`` as a subprocess (embedded engine in a temporary directory) on
fresh prefixed topics, publishes ``--rate`` events a second for ``--seconds`` from this
process, and reads the sink process's CPU from ``/proc`` over that window. Each run is one
fetch configuration; they alternate (``--repeat`` pairs):

* baseline: aiokafka's defaults, ``PIPELINE_SINK_FETCH_MAX_WAIT_MS=500`` and
  ``PIPELINE_SINK_FETCH_MIN_BYTES=1`` (a fetch returns with the first record);
* the sink's defaults (a fetch waits up to 250 ms for 1 MiB).

Prints figures; asserts nothing. The machine is shared: compare runs of one invocation.

    .venv/bin/python bench/sink_live_bench.py [--rate 200] [--seconds 15] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc_stats import cpu_s
from sink_bench import ROOT, create_topics, ensure_broker, event, publish

from deploy.kafka_broker import LocalBroker
from runtime.logs import configure_logging
from runtime.settings import SinkSettings, load
from runtime.topics import load_topic_specs

_BASELINE = {"PIPELINE_SINK_FETCH_MAX_WAIT_MS": "500", "PIPELINE_SINK_FETCH_MIN_BYTES": "1"}


async def _run(fetch: dict[str, str], rate: float, seconds: float) -> tuple[float, float]:
    """One sink process on fresh topics: its CPU seconds per second while events arrive."""
    prefix = f"sinklive-{uuid.uuid4().hex[:6]}."
    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    load.cache_clear()
    load_topic_specs.cache_clear()
    await create_topics(prefix)
    topic = prefix + load_topic_specs(prefix="")["events"].name
    state = tempfile.mkdtemp(prefix="sink-live-bench-")
    env = {
        **os.environ,
        **fetch,
        "CLICKHOUSE_URL": f"chdb://{state}/clickhouse",
        "PIPELINE_STATE_DIR": state,
        "PIPELINE_SINK_GROUP_ID": f"bench-{prefix}",
        "PIPELINE_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()", "sink"]
    sink = await asyncio.create_subprocess_exec(*cli, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        # started, migrated and in the group once it has stored a first event
        await publish(topic, [event(0, 900000 + i, "warm") for i in range(20)], None, 20)
        await asyncio.sleep(10)
        live = [event(i % 50, 100000 + i, "live") for i in range(int(rate * seconds))]
        cpu, wall = cpu_s(sink.pid), time.monotonic()
        await publish(topic, live, None, rate)
        cpu, wall = cpu_s(sink.pid) - cpu, time.monotonic() - wall
        if sink.returncode is not None:
            raise SystemExit(f"the sink exited with {sink.returncode} during the run")
        return cpu / wall, len(live) / wall
    finally:
        if sink.returncode is None:
            sink.terminate()
        await asyncio.wait_for(sink.wait(), 60)


async def main() -> None:
    """Alternate the two fetch configurations and print each run and the medians."""
    configure_logging("WARNING", "console")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="live events per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each run sends")
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs")
    args = parser.parse_args()
    brokers: list[LocalBroker] = []
    await ensure_broker(brokers)
    defaults = SinkSettings()
    configs = {
        "one fetch per event (500 ms, 1 byte)": _BASELINE,
        f"the sink's ({defaults.fetch_max_wait_ms} ms, {defaults.fetch_min_bytes} bytes)": {},
    }
    used: dict[str, list[float]] = {label: [] for label in configs}
    try:
        for run in range(args.repeat):
            order = list(configs) if run % 2 == 0 else list(configs)[::-1]
            for label in order:
                cpu, rate = await _run(configs[label], args.rate, args.seconds)
                used[label].append(cpu)
                print(f"run {run + 1}, {label}: {cpu * 1000:.0f} ms CPU per s at {rate:.0f}/s")
    finally:
        for broker in brokers:
            await broker.stop()
    base, ours = (statistics.median(used[label]) for label in configs)
    print(
        f"sink process CPU while live events arrive, medians: one fetch per event "
        f"{base * 1000:.0f} ms per s, the sink's fetches {ours * 1000:.0f} ms per s "
        f"({ours / base:.2f} of the baseline)"
    )


if __name__ == "__main__":
    asyncio.run(main())
