"""Reconciliation with known usage figures and one deliberate discrepancy of each cause."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import CLIP_A, Driver, frames_of, instant_config

from simulator.server import Simulator
from sinks.clickhouse_client import make_client
from sinks.migrations import migrate
from sinks.store import Store
from sinks.tables import COLUMNS, KafkaCoordinates, rows_for
from sinks.warehouse import open_warehouse

pytestmark = pytest.mark.clickhouse

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def usage(sid: str, tenant: str = "acme", **seconds: Any) -> dict[str, Any]:
    figures = {"analysed_s": 0.0, "degraded_s": 0.0, "dropped_s": 0.0, "reanalysed_s": 0.0}
    reason = seconds.pop("reason", "analysed")
    source = seconds.pop("source", "inter1")
    figures.update(seconds)
    return {
        "usage_id": f"{sid}:{reason}:{source}",
        "session_id": sid,
        "api_version": "v1",
        "media_start_s": 0.0,
        "media_end_s": 10.0,
        "reason": reason,
        "source": source,
        "incarnation": 0,
        "correlation_id": None,
        "tenant": tenant,
        "app": "coach",
        "recorded_at": AT,
        **figures,
    }


USAGE = [
    usage("r-ok", analysed_s=10.0),
    usage("r-reanalysis", analysed_s=10.0),
    usage("r-reanalysis", reason="failover", source="worker", reanalysed_s=4.0),
    usage("r-shed", analysed_s=10.0),
    usage("r-shed", reason="backpressure", source="worker", dropped_s=2.0),
    usage("r-skip", analysed_s=10.0),
    usage("r-skip", reason="stream_skip", dropped_s=3.0),
    usage("r-failed", analysed_s=5.0),
    usage("r-failed", reason="session_error", source="worker", dropped_s=5.0),
    usage("r-missing", analysed_s=8.0),
    usage("r-missing", reason="video_gap_degraded", degraded_s=2.0),
    usage("r-degraded", "globex", analysed_s=6.0),
    usage("r-degraded", "globex", reason="video_gap_degraded", degraded_s=3.0),
    usage("r-small", analysed_s=10.0),
]
VENDOR_CSV = (
    "session_id,billed_seconds,day,tenant\n"
    "r-ok,10,2026-11-25,acme\n"
    "r-reanalysis,14,2026-11-25,acme\n"
    "r-shed,12,2026-11-25,acme\n"
    "r-skip,8,2026-11-25,acme\n"
    "r-skip,5,2026-11-26,acme\n"
    "r-failed,7,2026-11-25,acme\n"
    "r-unknown,6,2026-11-25,acme\n"
    "r-degraded,9,2026-11-25,globex\n"
    "r-small,10.3,2026-11-25,acme\n"
)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"chdb://{tmp_path / 'clickhouse'}"
    store = Store(make_client(url))
    try:
        migrate(store.client)
        at = KafkaCoordinates("inter1.usage", 0, 0)
        rows = [r for d in USAGE for r in (rows_for("UsageRecord", d, at) or {})["usage"]]
        store.insert("usage", rows, COLUMNS["usage"])
    finally:
        store.close()
    return url


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "CLICKHOUSE_URL": url, "LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "inter1_pipeline", "reconcile", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_each_cause_is_found(store_url: str, tmp_path: Path) -> None:
    vendor = tmp_path / "vendor.csv"
    vendor.write_text(VENDOR_CSV)
    result = run_cli(store_url, "--vendor-usage", str(vendor))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[: 1 + 8] == [
        "session_id               tenant       day        billable_s reanalysed_s "
        "dropped:worker dropped:skip",
        "r-degraded               globex       2026-11-25      9.000        0.000"
        "          0.000        0.000",
        "r-failed                 acme         2026-11-25      5.000        0.000"
        "          0.000        0.000",
        "r-missing                acme         2026-11-25     10.000        0.000"
        "          0.000        0.000",
        "r-ok                     acme         2026-11-25     10.000        0.000"
        "          0.000        0.000",
        "r-reanalysis             acme         2026-11-25     10.000        4.000"
        "          0.000        0.000",
        "r-shed                   acme         2026-11-25     10.000        0.000"
        "          2.000        0.000",
        "r-skip                   acme         2026-11-25     10.000        0.000"
        "          0.000        3.000",
        "r-small                  acme         2026-11-25     10.000        0.000"
        "          0.000        0.000",
    ]
    assert lines[10:17] == [
        "session_id               expected_s   vendor_s    diff_s  cause: detail",
        "r-failed                      5.000      7.000    +2.000  session failed: "
        "the session failed; difference +2.000 s",
        "r-missing                    10.000      0.000   -10.000  missing from vendor: "
        "the vendor has no figure for this session",
        "r-reanalysis                 10.000     14.000    +4.000  re-analysis: "
        "difference +4.000 s matches 4.000 seconds re-analysed after a failover",
        "r-shed                       10.000     12.000    +2.000  shed at worker: "
        "difference +2.000 s matches 2.000 seconds the session worker shed",
        "r-skip                       10.000     13.000    +3.000  stream skip: "
        "difference +3.000 s matches 3.000 seconds the stream skipped",
        "r-unknown                     0.000      6.000    +6.000  unknown to pipeline: "
        "the vendor billed a session the pipeline has no usage for",
    ]
    assert lines[17].startswith("6 discrepancies beyond 0.5 s stored as run ")
    run_id = lines[17].split(" as run ")[1].split()[0]
    warehouse = open_warehouse(store_url)
    try:
        stored = warehouse.rows(
            "SELECT session_id, tenant, day, expected_s, vendor_s, difference_s, cause "
            f"FROM reconcile_discrepancies WHERE run_id = '{run_id}' ORDER BY session_id"
        )
    finally:
        warehouse.close()
    assert stored == [
        {"session_id": "r-failed", "tenant": "acme", "day": "2026-11-25", "expected_s": 5,
         "vendor_s": 7, "difference_s": 2, "cause": "session failed"},
        {"session_id": "r-missing", "tenant": "acme", "day": "2026-11-25", "expected_s": 10,
         "vendor_s": 0, "difference_s": -10, "cause": "missing from vendor"},
        {"session_id": "r-reanalysis", "tenant": "acme", "day": "2026-11-25", "expected_s": 10,
         "vendor_s": 14, "difference_s": 4, "cause": "re-analysis"},
        {"session_id": "r-shed", "tenant": "acme", "day": "2026-11-25", "expected_s": 10,
         "vendor_s": 12, "difference_s": 2, "cause": "shed at worker"},
        {"session_id": "r-skip", "tenant": "acme", "day": "2026-11-25", "expected_s": 10,
         "vendor_s": 13, "difference_s": 3, "cause": "stream skip"},
        {"session_id": "r-unknown", "tenant": "acme", "day": None, "expected_s": 0,
         "vendor_s": 6, "difference_s": 6, "cause": "unknown to pipeline"},
    ]  # fmt: skip


def test_simulator_json_and_tenant_filter_match_exactly(store_url: str, tmp_path: Path) -> None:
    vendor = tmp_path / "usage.json"
    vendor.write_text(
        json.dumps(
            {
                "sessions": [
                    {"session_id": "r-degraded", "analysed_seconds": 6.0, "degraded_seconds": 3.0}
                ],
                "totals": {},
            }
        )
    )
    result = run_cli(store_url, "--vendor-usage", str(vendor), "--tenant", "globex")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "no discrepancies beyond 0.5 s (1 sessions)"


def test_unreadable_vendor_usage_is_bad_input(store_url: str, tmp_path: Path) -> None:
    vendor = tmp_path / "vendor.csv"
    vendor.write_text("session,seconds\nx,1\n")
    result = run_cli(store_url, "--vendor-usage", str(vendor))
    assert result.returncode == 65
    assert result.stderr.splitlines()[-1].startswith(
        f"error: {vendor}: record 1 needs session_id and billed_seconds"
    )


async def test_vendor_usage_by_url_from_the_simulator(tmp_path: Path) -> None:
    """``--vendor-usage URL`` reads the real simulator's ``GET /usage`` (one session driven
    through the SDK on CLIP_A): equal figures pass, a short pipeline figure is a discrepancy,
    a URL where nothing listens is a clear error with exit 69, a non-usage URL exit 65."""
    sim = Simulator(instant_config())
    await sim.start()
    try:
        run = await Driver(sim).run(frames_of(CLIP_A))
        assert run.session_id is not None
        usage_url = f"{sim.http_url}/usage"
        served = await Driver(sim).usage(run.session_id)
        assert (served["analysed_seconds"], served["degraded_seconds"]) == (14.2, 0.0)
        url = f"chdb://{tmp_path / 'clickhouse'}"
        store = Store(make_client(url))
        try:
            migrate(store.client)
            at = KafkaCoordinates("inter1.usage", 0, 0)
            rows = rows_for("UsageRecord", usage(run.session_id, "sim", analysed_s=14.2), at)
            short = rows_for("UsageRecord", usage("sim-short", "sim", analysed_s=5.0), at)
            store.insert("usage", (rows or {})["usage"], COLUMNS["usage"])
        finally:
            store.close()
        ok = await asyncio.to_thread(run_cli, url, "--vendor-usage", usage_url)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.splitlines()[-1] == "no discrepancies beyond 0.5 s (1 sessions)"
        # the pipeline has a session the simulator never saw, and bills it
        store = Store(make_client(url))
        try:
            store.insert("usage", (short or {})["usage"], COLUMNS["usage"])
        finally:
            store.close()
        found = await asyncio.to_thread(run_cli, url, "--vendor-usage", usage_url)
        assert found.returncode == 1, found.stdout + found.stderr
        assert found.stdout.splitlines()[-3:-1] == [
            "session_id               expected_s   vendor_s    diff_s  cause: detail",
            "sim-short                     5.000      0.000    -5.000  missing from vendor: "
            "the vendor has no figure for this session",
        ]
        wrong = await asyncio.to_thread(run_cli, url, "--vendor-usage", f"{sim.http_url}/nope")
        assert wrong.returncode == 65
        assert wrong.stderr.splitlines()[-1] == (
            f"error: vendor usage URL {sim.http_url}/nope answered HTTP 404, not 200: it is "
            "not a usage endpoint (the simulator serves GET /usage)"
        )
    finally:
        await sim.stop()
    # nothing listens on the simulator's port any more
    gone = await asyncio.to_thread(
        run_cli, url, "--vendor-usage", "http://u:secret@" + usage_url.split("//")[1]
    )
    assert gone.returncode == 69
    line = gone.stderr.splitlines()[-1]
    assert line.startswith(
        f"error: cannot reach vendor usage URL http://u:***@{usage_url.split('//')[1]}: "
    )
    assert line.endswith(
        "; check the address and that the service (e.g. `inter1-pipeline simulate`) is running"
    )
    assert "secret" not in gone.stderr + gone.stdout
