"""What a video session is told: its options (from the settings) and the queue's end marker."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["End", "SessionOptions"]


@dataclass(frozen=True)
class SessionOptions:
    """How sessions connect and behave (from the settings)."""

    api_key: str
    base_url: str | None
    api_version: str = "v1"
    model: str | None = None
    include: tuple[str, ...] = ()
    goal_dimensions: tuple[str, ...] = ()
    window_s: float = 8.0
    hop_s: float = 3.0
    context_s: float = 8.0
    open_timeout_s: float = 15.0
    drain_timeout_s: float = 30.0
    idle_timeout_s: float = 120.0
    reconnect_attempts: int = 5
    reconnect_base_s: float = 0.5
    reconnect_max_s: float = 20.0
    queue_chunks: int = 16
    live_max_lag_s: float = 30.0
    tail_hold_s: float = 1.0
    """A recorded session's complete frame waits this long for more media before it is
    sent alone (so a short tail can join it: v1 flags every frame under 3 s)."""
    recorded_pace: float = 3.0
    """Recorded sessions: media seconds sent per second (0: unpaced)."""


@dataclass(frozen=True)
class End:
    """Queue marker: ``ended`` (the video session ended: close for good), ``shutdown`` (the
    worker stops: close the connection, the session stays open) or ``idle``."""

    kind: str
    media_seconds: float | None = None
    consumed_at: float = 0.0
    """``time.monotonic()`` when the SessionEnded record was handed to the worker (0: not a
    record): the end flush's frame is timed from it."""
