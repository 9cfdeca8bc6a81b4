"""``inter1-pipeline simulate``: serve the local Inter-1 Stream API simulator."""

from __future__ import annotations

import asyncio
import signal
from typing import cast

import click

__all__ = ["simulate"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind (0 picks a free one).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    metavar="KEY",
    help="Accept KEY (stream scope, every model). Repeatable. "
    "Default set: sim-key, sim-key-noscope, sim-key-inter-2-only.",
)
@click.option(
    "--api-key-noscope",
    "noscope_keys",
    multiple=True,
    metavar="KEY",
    help="Accept KEY without the stream scope (sessions get ih2003 / 4003). Repeatable.",
)
@click.option("--no-fault-keys", is_flag=True, help="Reject sim-fault:<spec> keys.")
@click.option(
    "--ratio",
    default=0.05,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Simulated model seconds per media second.",
)
@click.option(
    "--queue-windows",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Media, in whole windows (8 s each), that may wait for the model; a window that "
    "would queue more is shed.",
)
@click.option(
    "--max-lag",
    "max_lag_s",
    default=8.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Shed a window whose analysis would start this many seconds after its media arrived.",
)
@click.option(
    "--capacity",
    default=200,
    show_default=True,
    type=click.IntRange(min=0),
    help="Concurrent sessions; the next gets ih1003 and close 1013.",
)
@click.option(
    "--backend-capacity",
    "backend_capacity_s",
    default=None,
    type=click.FloatRange(min=0.001),
    help="One model backend shared by all sessions, in model-seconds per second (each "
    "window costs ratio x 8 s); overload sheds windows fairly across sessions. Default: "
    "a model per session.",
)
@click.option(
    "--backend-max-wait",
    "backend_max_wait_s",
    default=4.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Shed a window that would wait longer than this for the shared backend.",
)
@click.option(
    "--backend-refuse-wait",
    "backend_refuse_wait_s",
    default=8.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Refuse new sessions (ih1003, close 1013) while the shared backend's backlog "
    "is longer than this.",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds without a frame before ih6003.",
)
@click.option(
    "--max-duration",
    "max_duration_s",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Session length limit in seconds (ih6004).",
)
@click.option(
    "--max-segment-bytes",
    default=32 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest binary frame accepted (ih6002 above).",
)
@click.option(
    "--decode",
    type=click.Choice(["all", "keyframes", "none", "boxes"]),
    default=None,
    help="Analysis depth: decode all frames (default), keyframes only (several times "
    "cheaper, coarser motion), none (demux only: features from packet sizes and "
    "timestamps), or boxes (the same features from container box headers, no demuxer; "
    "cheapest, for 1,000 sessions; see simulator/README.md).",
)
@click.option(
    "--keyframes-only",
    is_flag=True,
    help="Alias of --decode keyframes.",
)
@click.option(
    "--fault",
    "fault_spec",
    default="",
    metavar="SPEC",
    help="Faults for every session, e.g. 'drop@5' or 'close=1013@3,slow=2' "
    "(see simulator/README.md).",
)
def simulate(  # noqa: PLR0917 - click passes each option as a parameter
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    noscope_keys: tuple[str, ...],
    no_fault_keys: bool,
    ratio: float,
    queue_windows: int,
    max_lag_s: float,
    capacity: int,
    backend_capacity_s: float | None,
    backend_max_wait_s: float,
    backend_refuse_wait_s: float,
    idle_timeout_s: float,
    max_duration_s: float,
    max_segment_bytes: int,
    decode: str | None,
    keyframes_only: bool,
    fault_spec: str,
) -> None:
    """Serve WS /v1/stream/analyze and /v2/stream/analyze (plus GET /usage) until stopped.

    Point the pipeline at it with INTER1_BASE_URL=http://HOST:PORT and INTER1_API_KEY=sim-key.
    """
    from simulator.config import (
        DEFAULT_KEYS,
        AnalysisConfig,
        DecodeDepth,
        KeyGrant,
        LoadConfig,
        SessionLimits,
        SimulatorConfig,
    )
    from simulator.faults import parse_faults
    from simulator.server import Simulator

    if keyframes_only and decode not in (None, "keyframes"):
        raise click.UsageError(f"--keyframes-only contradicts --decode {decode}")
    depth = "keyframes" if keyframes_only else decode or "all"
    keys = dict(DEFAULT_KEYS) if not (api_keys or noscope_keys) else {}
    keys.update({key: KeyGrant() for key in api_keys})
    keys.update({key: KeyGrant(scopes=frozenset()) for key in noscope_keys})
    config = SimulatorConfig(
        host=host,
        port=port,
        keys=keys,
        allow_fault_keys=not no_fault_keys,
        faults=parse_faults(fault_spec),
        limits=SessionLimits(
            idle_timeout_s=idle_timeout_s,
            max_duration_s=max_duration_s,
            max_segment_size_bytes=max_segment_bytes,
        ),
        load=LoadConfig(
            processing_ratio=ratio,
            queue_windows=queue_windows,
            max_lag_s=max_lag_s,
            capacity=capacity,
            backend_capacity_s=backend_capacity_s,
            backend_max_wait_s=backend_max_wait_s,
            backend_refuse_wait_s=backend_refuse_wait_s,
        ),
        analysis=AnalysisConfig(decode=cast(DecodeDepth, depth)),  # click.Choice checked it
    )
    asyncio.run(_serve(Simulator(config)))


async def _serve(simulator: object) -> None:
    from simulator.server import Simulator

    assert isinstance(simulator, Simulator)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start()
    click.echo(
        f"Inter-1 simulator on {simulator.http_url} "
        f"(usage: {simulator.http_url}/usage); Ctrl-C to stop",
        err=True,
    )
    await simulator.serve_forever(stop)
