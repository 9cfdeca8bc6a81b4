"""``inter1-pipeline simulate`` as users run it: a real process, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from interhumanai import InterhumanClient
from sim_helpers import CLIP_A, compact, frames_of

_CLI = [sys.executable, "-c", "from inter1_pipeline.cli import main; main()"]
_ENV = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}


async def _read_url(stream: asyncio.StreamReader) -> str:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 60)).decode()
        assert line, "the simulator exited before announcing its URL"
        found = re.search(r"Inter-1 simulator on (http://\S+) ", line)
        if found:
            return found.group(1)


async def _stream_clip(url: str, key: str) -> list[tuple[Any, ...]]:
    """CLIP_A through one SDK session, closed gracefully; the compacted events."""
    stream = InterhumanClient(access_token=key, base_url=url).stream()
    await stream.connect()
    await stream.wait_for_session_ready()
    for frame in frames_of(CLIP_A):
        await stream.send_video(frame)
    await stream.request_close()
    return [compact(e) async for e in stream]


async def test_cli_serves_custom_keys_and_faults_until_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_CLI, "simulate", "--port", "0", "--api-key", "team-key", "--ratio", "0",
        "--fault", "error=ih1001@0",
        stderr=asyncio.subprocess.PIPE, env=_ENV, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        url = await asyncio.wait_for(_read_url(proc.stderr), 60)
        events = await _stream_clip(url, "team-key")
        refused = InterhumanClient(access_token="sim-key", base_url=url).stream()
        try:
            await refused.connect()
            default_key_accepted = True
        except Exception:
            default_key_accepted = False
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)

    assert events[:2] == [("session.ready",), ("error", "ih1001")]
    assert events[-1] == ("session.ended", "client_shutdown")
    assert not default_key_accepted  # --api-key replaces the default key set
    assert proc.returncode == 0
    log = err.decode()
    assert '"event": "session ended"' in log
    assert '"event": "simulator stopped"' in log
    assert "team-key" not in log


async def test_cli_rejects_a_bad_fault_spec(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_CLI, "simulate", "--port", "0", "--fault", "explode",
        stderr=asyncio.subprocess.PIPE, env=_ENV, cwd=tmp_path,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 78
    assert err.decode().strip().splitlines()[-1] == (
        "error: unknown fault 'explode'; expected drop@S, close=1011|1013@S, stall=SECONDS@S, "
        "slow=RATIO, unknown_event@S, unknown_value@S, ready_delay=SECONDS or error=CODE@S"
    )


@pytest.mark.parametrize("depth", ["none", "boxes"])
async def test_cli_decode_none_or_boxes_analyses_from_packets(tmp_path: Path, depth: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_CLI, "simulate", "--port", "0", "--ratio", "0", "--decode", depth,
        stderr=asyncio.subprocess.PIPE, env=_ENV, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        url = await asyncio.wait_for(_read_url(proc.stderr), 60)
        events = await _stream_clip(url, "sim-key")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)

    assert [e for e in events if e[0].startswith(("signal.", "engagement"))] == [
        ("signal.detected", "disagreement", "low", 0.0),
        ("signal.detected", "engagement", "medium", 0.0),
        ("engagement.updated", "engaged", 0.0),
        ("signal.ended", "disagreement", 3.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.updated", "engagement", "medium", 0.0),
        ("signal.ended", "engagement", 14.2),
    ]
    assert proc.returncode == 0


async def test_cli_rejects_keyframes_only_with_another_depth(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_CLI, "simulate", "--port", "0", "--keyframes-only", "--decode", "none",
        stderr=asyncio.subprocess.PIPE, env=_ENV, cwd=tmp_path,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 2
    assert err.decode().strip().splitlines()[-1] == (
        "Error: --keyframes-only contradicts --decode none"
    )
