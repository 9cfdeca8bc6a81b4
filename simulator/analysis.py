"""The deterministic "model": media features of one 8 s window -> signals, engagement, quality.

Everything here is a pure function of the window's :class:`~simulator.features.FeatureBin` s,
so the same clip always yields the same results. The mapping is documented in
``simulator/README.md``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.features import FeatureBin
from simulator.protocol import GOAL_DIMENSIONS

__all__ = ["WindowAnalysis", "analyse_window", "probability_band"]

SIGNAL_THRESHOLD = 0.5
"""A signal is active in a window when its score reaches this."""

_ADVICE = {
    "clarity": "speak in fuller phrases with fewer pauses",
    "authority": "keep a steadier, more assertive voice level",
    "energy": "bring more movement and vocal energy",
    "rapport": "stay visibly engaged with the other side",
    "learning": "check understanding before moving on",
}


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True)
class WindowAnalysis:
    """What the model concluded about one window.

    Attributes:
        scores: signal type -> score 0..1 (rounded to 2 decimals), every type.
        engagement: engaged | neutral | disengaged.
        quality: quality_index, clarity, authority, energy, rapport, learning (0..100).
        rationale: the evidence in words, shared by the window's signals.
    """

    scores: dict[str, float]
    engagement: str
    quality: dict[str, float]
    rationale: str

    def active(self) -> dict[str, float]:
        """Signals at or above the threshold, in signal-type order."""
        return {k: v for k, v in sorted(self.scores.items()) if v >= SIGNAL_THRESHOLD}

    def feedback(self, dimensions: Sequence[str]) -> str:
        """One deterministic sentence about the weakest of the requested goal dimensions."""
        chosen = [d for d in GOAL_DIMENSIONS if d in dimensions] or list(GOAL_DIMENSIONS)
        weakest = min(chosen, key=lambda d: (self.quality[d], d))
        score = self.quality[weakest]
        return f"{weakest.capitalize()} is at {score:.0f}/100: {_ADVICE[weakest]}."


def probability_band(score: float) -> str:
    """low | medium | high for an active signal's score."""
    if score >= 0.8:
        return "high"
    if score >= 0.65:
        return "medium"
    return "low"


def analyse_window(bins: Sequence[FeatureBin]) -> WindowAnalysis:
    """Score one window of per-second features (see the README for the mapping)."""
    audio = [b for b in bins if b.subframes]
    video = [b for b in bins if b.luma_samples or b.motion_samples]
    voice = statistics.fmean(b.voice_ratio for b in audio) if audio else 0.0
    levels = [b.level_db for b in audio]
    level = _clamp((statistics.fmean(levels) + 50.0) / 40.0) if levels else 0.0
    level_var = _clamp(statistics.pstdev(levels) / 6.0) if len(levels) > 1 else 0.0
    pauses = sum(b.pauses for b in bins)
    pause = _clamp(pauses / 4.0)
    motions = [b.motion for b in video]
    motion = _clamp(statistics.fmean(motions) / 0.2) if motions else 0.0
    motion_var = _clamp(statistics.pstdev(motions) / 0.04) if len(motions) > 1 else 0.0
    half = len(motions) // 2
    trend = (
        _clamp((statistics.fmean(motions[half:]) - statistics.fmean(motions[:half])) / 0.04, -1.0)
        if half
        else 0.0
    )
    lumas = [b.brightness for b in video if b.brightness is not None]
    bright_change = _clamp((max(lumas) - min(lumas)) / 0.2) if lumas else 0.0

    raw = {
        "engagement": 0.5 * voice + 0.5 * motion,
        "disengagement": (1.0 - voice) * (1.0 - motion),
        "interest": 0.4 * motion + 0.3 * voice + 0.3 * max(trend, 0.0),
        "confidence": voice * (1.0 - pause) * (0.5 + 0.5 * level),
        "hesitation": pause * (0.5 + 0.5 * voice),
        "uncertainty": 0.6 * pause + 0.4 * voice * (1.0 - level),
        "confusion": 0.5 * bright_change + 0.5 * pause,
        "stress": 0.5 * motion_var + 0.5 * level * level_var,
        "tension": level_var * (1.0 - motion),
        "frustration": level * motion * (0.5 + 0.5 * level_var),
        "agreement": voice * motion * (1.0 - motion_var),
        "disagreement": 0.5 * bright_change + 0.5 * level * level_var,
        "skepticism": (1.0 - motion) * voice * (0.5 + 0.5 * pause),
    }
    scores = {k: round(_clamp(v), 2) for k, v in raw.items()}

    activity = 0.5 * voice + 0.5 * motion
    engagement = "engaged" if activity >= 0.55 else "disengaged" if activity < 0.25 else "neutral"

    def score(x: float) -> float:
        return round(_clamp(50.0 + 50.0 * x, 0.0, 100.0), 1)

    has_audio, has_video = bool(audio), bool(video)
    energy_parts = ([2 * motion - 1] if has_video else []) + ([2 * level - 1] if has_audio else [])
    quality = {
        "clarity": score(voice - pause if has_audio else 0.0),
        "authority": score(level * voice - 0.5 * level_var if has_audio else 0.0),
        "energy": score(statistics.fmean(energy_parts) if energy_parts else 0.0),
        "rapport": score(
            scores["engagement"] - scores["disengagement"] if has_audio or has_video else 0.0
        ),
        "learning": score(
            scores["interest"] - scores["confusion"] if has_audio or has_video else 0.0
        ),
    }
    quality = {
        "quality_index": round(statistics.fmean(quality.values()), 1),
        **quality,
    }
    level_db = statistics.fmean(levels) if levels else -90.0
    rationale = (
        f"voice activity {voice:.0%}, {pauses} pause(s), motion energy {motion:.2f}, "
        f"level {level_db:.0f} dBFS, brightness change {bright_change:.2f}"
    )
    return WindowAnalysis(scores, engagement, quality, rationale)
