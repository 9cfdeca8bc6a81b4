"""The in-process server API: lifecycle, plain HTTP routes, decode modes."""

from __future__ import annotations

import httpx
import pytest
from interhumanai import InterhumanClient
from sim_helpers import CLIP_A, SimulatorFactory, frames_of

from simulator.config import AnalysisConfig, SimulatorConfig
from simulator.exceptions import SimulatorNotStartedError
from simulator.server import Simulator


async def test_lifecycle_is_idempotent() -> None:
    sim = Simulator(SimulatorConfig(port=0))
    with pytest.raises(SimulatorNotStartedError):
        _ = sim.port

    await sim.start()
    await sim.start()
    port = sim.port
    assert sim.http_url == f"http://127.0.0.1:{port}"
    assert sim.url == f"ws://127.0.0.1:{port}"
    await sim.stop()
    await sim.stop()
    async with Simulator(SimulatorConfig(port=0)) as again:
        assert again.active_sessions == 0


async def test_plain_http_routes(start_simulator: SimulatorFactory) -> None:
    driver = await start_simulator()
    async with httpx.AsyncClient(base_url=driver.sim.http_url) as http:
        health = await http.get("/healthz")
        unknown = await http.get("/v3/stream/analyze", headers={"Authorization": "Bearer sim-key"})
        usage = await http.get("/usage")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert unknown.status_code == 404
    assert usage.headers["content-type"] == "application/json"
    assert usage.json() == {
        "sessions": [],
        "totals": {"media_received_ms": 0, "analysed_ms": 0, "degraded_ms": 0, "dropped_ms": 0},
        "active_sessions": 0,
    }


async def test_keyframes_only_decoding_still_covers_all_media(
    start_simulator: SimulatorFactory,
) -> None:
    driver = await start_simulator(analysis=AnalysisConfig(keyframes_only=True))
    run = await driver.run(frames_of(CLIP_A))

    usage = await driver.usage(run.session_id)
    assert usage["analysed_ms"] == usage["media_received_ms"] == 14200
    assert usage["degraded_ms"] == 0
    assert run.types.count("engagement.updated") == 1
    assert run.close.code == 1000


async def test_stop_closes_live_sessions_and_settles_their_usage() -> None:
    sim = Simulator(SimulatorConfig(port=0))
    await sim.start()
    stream = InterhumanClient(access_token="sim-key", base_url=sim.http_url).stream()
    await stream.connect()
    ready = await stream.wait_for_session_ready()
    for frame in frames_of(CLIP_A)[:3]:
        await stream.send_video(frame)

    await sim.stop()

    assert (await stream.wait_closed()).code == 1001
    usage = sim.ledger.sessions[ready.correlation_id].to_json()
    assert usage["state"] == "ended"
    assert usage["close_code"] == 1001
    assert usage["analysed_ms"] + usage["dropped_ms"] == usage["media_received_ms"]
    assert sim.active_sessions == 0
