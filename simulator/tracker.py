"""Turns per-window analyses into protocol events: signal lifecycles, engagement, quality."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.analysis import WindowAnalysis, probability_band
from simulator.protocol import AUDIBLE_SIGNALS, SIGNALS_BY_VERSION
from simulator.windows import Window

__all__ = ["EventTracker", "SessionOptions"]

Event = tuple[str, dict[str, Any]]


def _s(ms: int) -> float:
    return round(ms / 1000.0, 3)


@dataclass
class SessionOptions:
    """The session configuration in force (replaced by config frames)."""

    include: list[str] = field(default_factory=list)
    goal_dimensions: list[str] | None = None
    model: str | None = None
    audio_format: dict[str, Any] | None = None
    """Raw PCM declared by the client (``inter-2-audio``): binary frames are samples."""


@dataclass
class EventTracker:
    """Signal and engagement state across windows; builds each window's events in order.

    Order within a window: ``coverage.dropped`` (stream skips), ``coverage.degraded``,
    ``signal.ended``, ``signal.detected``, ``signal.updated``, ``engagement.updated``,
    ``conversation_quality.updated``, ``feedback.generated``.
    """

    api_version: str
    audio_only: bool = False
    active: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    """Active signal -> (start ms, probability band, rationale)."""
    engagement: str | None = None
    quality_weighted: dict[str, float] = field(default_factory=dict)
    quality_ms: int = 0

    def window_events(
        self, window: Window, result: WindowAnalysis, options: SessionOptions
    ) -> list[Event]:
        """The events one analysed window produces."""
        events: list[Event] = []
        if window.stream_skips_ms:  # media the client never sent: not analysed, not billed
            ranges = [{"start": _s(a), "end": _s(b)} for a, b in window.stream_skips_ms]
            events.append(("coverage.dropped", {"ranges": ranges}))
        if window.all_skipped:
            return events
        if window.degraded_ms and not self.audio_only:
            ranges = [{"start": _s(a), "end": _s(b)} for a, b in window.degraded_ms]
            events.append(("coverage.degraded", {"ranges": ranges, "reason": "video_gap"}))
        active = {
            kind: score
            for kind, score in result.active().items()
            if (not self.audio_only or kind in AUDIBLE_SIGNALS)
            and kind in SIGNALS_BY_VERSION[self.api_version]
        }
        for kind in sorted(set(self.active) - set(active)):
            del self.active[kind]
            events.append(("signal.ended", {"signal_type": kind, "end": _s(window.grid_start_ms)}))
        detected: list[Event] = []
        updated: list[Event] = []
        for kind, score in active.items():
            band = probability_band(score)
            previous = self.active.get(kind)
            if previous is not None and previous[1:] == (band, result.rationale):
                continue
            start_ms = previous[0] if previous is not None else window.grid_start_ms
            self.active[kind] = (start_ms, band, result.rationale)
            data: dict[str, Any] = {
                "signal_type": kind,
                "start": _s(start_ms),
                "probability": band,
                "rationale": result.rationale,
            }
            if self.api_version == "v1":
                data["modality"] = ["video"]
            (updated if previous is not None else detected).append(
                ("signal.updated" if previous is not None else "signal.detected", data)
            )
        events += detected + updated
        if result.engagement != self.engagement:
            self.engagement = result.engagement
            events.append(
                (
                    "engagement.updated",
                    {"state": result.engagement, "start": _s(window.grid_start_ms)},
                )
            )
        quality = self._quality(window, result, options.include)
        if quality is not None:
            events.append(("conversation_quality.updated", quality))
        if options.goal_dimensions:
            events.append(
                ("feedback.generated", {"feedback": result.feedback(options.goal_dimensions)})
            )
        return events

    def _quality(
        self, window: Window, result: WindowAnalysis, include: Sequence[str]
    ) -> dict[str, Any] | None:
        for key, value in result.quality.items():
            self.quality_weighted[key] = (
                self.quality_weighted.get(key, 0.0) + value * window.owned_ms
            )
        self.quality_ms += window.owned_ms
        data: dict[str, Any] = {}
        if "conversation_quality_overall" in include and self.quality_ms:
            data["overall"] = {
                k: round(v / self.quality_ms, 1) for k, v in self.quality_weighted.items()
            }
        if "conversation_quality_timeline" in include:
            data["timeline"] = [
                {
                    "start": _s(window.grid_start_ms),
                    "end": _s(window.end_ms),
                    "values": dict(result.quality),
                }
            ]
        return data or None

    def finish(self, media_end_ms: int) -> list[Event]:
        """``signal.ended`` for every signal still active when the media ends."""
        events: list[Event] = [
            ("signal.ended", {"signal_type": kind, "end": _s(media_end_ms)})
            for kind in sorted(self.active)
        ]
        self.active.clear()
        return events
