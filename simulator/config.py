"""The simulator's configuration: small frozen groups (keys, session limits, load, analysis)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from runtime.errors import ConfigError
from simulator.faults import FaultPlan
from simulator.protocol import GOAL_DIMENSIONS, INCLUDE_FLAGS, STREAM_MODELS

__all__ = [
    "DEFAULT_KEYS",
    "AnalysisConfig",
    "DecodeDepth",
    "KeyGrant",
    "LoadConfig",
    "SessionLimits",
    "SimulatorConfig",
]

STREAM_SCOPE = "interhumanai.stream"
FAULT_KEY_PREFIX = "sim-fault:"


@dataclass(frozen=True)
class KeyGrant:
    """What one API key may do: its scopes and the v2 models it may select."""

    scopes: frozenset[str] = frozenset({STREAM_SCOPE})
    models: frozenset[str] = frozenset(STREAM_MODELS)
    feedback: bool = True

    @property
    def can_stream(self) -> bool:
        """Whether the key carries the stream scope."""
        return STREAM_SCOPE in self.scopes


DEFAULT_KEYS: dict[str, KeyGrant] = {
    "sim-key": KeyGrant(),
    "sim-key-noscope": KeyGrant(scopes=frozenset()),
    "sim-key-inter-2-only": KeyGrant(models=frozenset({"inter-2"})),
    "sim-key-no-feedback": KeyGrant(feedback=False),
}
"""Keys accepted when none are configured (plus ``sim-fault:<spec>`` keys, see faults.py)."""


@dataclass(frozen=True)
class SessionLimits:
    """Limits advertised in ``session.ready`` and enforced.

    Attributes:
        min_segment_duration_s: advertised on v1 as ``min_segment_duration_seconds`` (3 in
            the docs, which say each segment must be at least 3 s long) and enforced there
            unless ``enforce_min_segment_duration`` is False. The V2 docs list no such field
            and advise 1-3 s frames: v2 neither advertises nor enforces it.
        max_segment_duration_s: advertised and enforced when set.
        feedback: advertise ``goal_dimensions`` (False: feedback is off for every key).
        ping_interval_s, ping_timeout_s: keepalive; a client that does not answer a ping
            within the timeout is dropped (1006, usage reason ``keepalive_timeout``).
    """

    idle_timeout_s: float = 300.0
    max_duration_s: float = 3600.0
    min_segment_size_bytes: int = 1
    max_segment_size_bytes: int = 32 * 1024 * 1024
    min_segment_duration_s: float = 3.0
    enforce_min_segment_duration: bool = True
    max_segment_duration_s: float | None = None
    max_drain_s: float = 30.0
    feedback: bool = True
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0

    def ready_data(self, models: list[str] | None, *, feedback: bool = True) -> dict[str, Any]:
        """The ``session.ready`` data (``models``: None on v1; ``feedback``: False omits goals).

        ``min_segment_duration_seconds`` is a v1 field (``models`` is None there).
        """
        data: dict[str, Any] = {
            "session_idle_timeout_seconds": math.ceil(self.idle_timeout_s),
            "session_max_duration_seconds": math.ceil(self.max_duration_s),
            **(
                {"min_segment_duration_seconds": self.min_segment_duration_s}
                if models is None
                else {}
            ),
            "min_segment_size_bytes": self.min_segment_size_bytes,
            "max_segment_size_bytes": self.max_segment_size_bytes,
            "supported_session_config_options": {
                "include": list(INCLUDE_FLAGS),
                "goal_dimensions": list(GOAL_DIMENSIONS) if feedback else None,
                "model": models,
            },
        }
        if self.max_segment_duration_s is not None:
            data["max_segment_duration_seconds"] = self.max_segment_duration_s
        return data


@dataclass(frozen=True)
class LoadConfig:
    """Simulated model cost and the backpressure rules.

    Attributes:
        processing_ratio: simulated model seconds per media second analysed (0 = instant).
        queue_windows: media, in whole windows (``window_ms`` each), that may wait for the
            model; a window that would queue more is shed (``backpressure``).
        max_lag_s: a window whose analysis would start more than this long after its
            media arrived is shed (the service does not queue behind live media).
        capacity: concurrent sessions; the next one gets ``ih1003`` and close 1013.
        backend_capacity_s: model-seconds per second of one model backend shared by all
            sessions, each window costing ``processing_ratio x window length``; None gives
            each session a model of its own (``simulator/backend.py``).
        backend_max_wait_s: a window that would wait longer for the shared backend is shed
            (``backpressure``), sessions served more than average first.
        backend_refuse_wait_s: past this backlog (seconds of wait) new sessions are refused
            with ``ih1003`` and close 1013.
    """

    processing_ratio: float = 0.05
    queue_windows: int = 2
    max_lag_s: float = 8.0
    capacity: int = 200
    backend_capacity_s: float | None = None
    backend_max_wait_s: float = 4.0
    backend_refuse_wait_s: float = 8.0


DecodeDepth = Literal["all", "keyframes", "none", "boxes"]
"""How much media the simulator decodes: every frame, keyframes only, nothing (demux only),
or nothing and no demuxer either (``boxes``: container box headers read on the event loop)."""
DECODE_DEPTHS: tuple[str, ...] = get_args(DecodeDepth)


@dataclass(frozen=True)
class AnalysisConfig:
    """Windowing and decode budget.

    Attributes:
        video_sample_fps: decoded frames per second downscaled for motion and brightness.
        video_gap_ms: a stretch without video packets longer than this is a video gap.
        stream_skip_ms: a stretch without packets of any track longer than this is a stream
            skip (media the client never sent: dropped, not billed).
        decode: ``all`` frames (default), ``keyframes`` only (several times cheaper; motion
            is measured between keyframes) or ``none`` (demux only: features come from the
            compressed packets, see the README) or ``boxes`` (no demuxer either: the same
            packet features from the container's box headers, parsed on the event loop).
        keyframes_only: older spelling of ``decode="keyframes"``.
    """

    window_ms: int = 8000
    hop_ms: int = 3000
    video_sample_fps: float = 4.0
    video_gap_ms: int = 1000
    stream_skip_ms: int = 1000
    decode: DecodeDepth = "all"
    keyframes_only: bool = False

    def __post_init__(self) -> None:
        if self.decode not in DECODE_DEPTHS:
            raise ConfigError(f"decode must be one of {', '.join(DECODE_DEPTHS)}: {self.decode!r}")
        if self.keyframes_only and self.decode in ("none", "boxes"):
            raise ConfigError(f"keyframes_only contradicts decode={self.decode!r}")

    @property
    def depth(self) -> DecodeDepth:
        """The effective decode depth (``keyframes_only`` selects ``keyframes``)."""
        return "keyframes" if self.keyframes_only else self.decode


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything a :class:`~simulator.server.Simulator` needs. ``port=0`` picks a free port."""

    host: str = "127.0.0.1"
    port: int = 0
    keys: dict[str, KeyGrant] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    allow_fault_keys: bool = True
    faults: FaultPlan = field(default_factory=FaultPlan)
    limits: SessionLimits = field(default_factory=SessionLimits)
    load: LoadConfig = field(default_factory=LoadConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def grant_for(self, key: str) -> KeyGrant | None:
        """The grant of ``key``, or None when the key is unknown (401)."""
        grant = self.keys.get(key)
        if grant is None and self.allow_fault_keys and key.startswith(FAULT_KEY_PREFIX):
            return KeyGrant()
        return grant
