"""Per-second media features, computed cheaply from decoded audio and downscaled luma.

One :class:`FeatureBin` per second of media time. Audio is folded to mono and cut into
50 ms subframes (RMS level in dBFS, voiced when above a fixed gate); video frames are
sampled a few times a second, downscaled to 32x24 luma, and compared with the previous
sample (motion energy) and averaged (brightness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["AudioAnalyser", "FeatureBin", "VideoAnalyser"]

VOICE_GATE_DB = -40.0
"""Subframes louder than this (dBFS) count as voice activity."""
PAUSE_MIN_SUBFRAMES = 6
"""A silent run of at least this many 50 ms subframes after voice counts as a pause."""
_SUBFRAME_S = 0.05
_LUMA_SIZE = (32, 24)


@dataclass
class FeatureBin:
    """Features of one second of media ``[index, index + 1)`` s."""

    index: int
    subframes: int = 0
    voiced: int = 0
    level_db_sum: float = 0.0
    pauses: int = 0
    video_frames: int = 0
    motion_sum: float = 0.0
    motion_samples: int = 0
    luma_sum: float = 0.0
    luma_samples: int = 0

    @property
    def voice_ratio(self) -> float:
        """Share of the second with voice activity (0 when there is no audio)."""
        return self.voiced / self.subframes if self.subframes else 0.0

    @property
    def level_db(self) -> float:
        """Mean audio level in dBFS (-90 when there is no audio)."""
        return self.level_db_sum / self.subframes if self.subframes else -90.0

    @property
    def motion(self) -> float:
        """Mean absolute luma change between samples, 0..1."""
        return self.motion_sum / self.motion_samples if self.motion_samples else 0.0

    @property
    def brightness(self) -> float | None:
        """Mean luma 0..1, or None without video samples."""
        return self.luma_sum / self.luma_samples if self.luma_samples else None


@dataclass
class _Bins:
    bins: dict[int, FeatureBin] = field(default_factory=dict)

    def at(self, index: int) -> FeatureBin:
        found = self.bins.get(index)
        if found is None:
            found = self.bins[index] = FeatureBin(index)
        return found


class AudioAnalyser:
    """Feeds decoded audio into bins; keeps its own sample clock so it is gap-free."""

    def __init__(self, store: _Bins) -> None:
        self._store = store
        self._origin_s: float | None = None
        self._rate = 0
        self._carry: npt.NDArray[np.float32] = np.zeros(0, np.float32)
        self._consumed = 0
        self._silent_run = 0
        self._had_voice = False
        self._skipped_until_s: float | None = None

    @property
    def end_s(self) -> float:
        """Media time up to which audio has been binned (or skipped)."""
        skipped = self._skipped_until_s or 0.0
        if self._origin_s is None or not self._rate:
            return skipped
        return max(skipped, self._origin_s + self._consumed / self._rate)

    def skip_to(self, end_s: float) -> None:
        """Audio up to ``end_s`` is not decoded; the next samples restart the clock."""
        self._skipped_until_s = max(self._skipped_until_s or 0.0, end_s)

    def feed(self, samples: npt.NDArray[np.float32], rate: int, time_s: float) -> None:
        """Add mono float samples starting at media time ``time_s``."""
        if self._skipped_until_s is not None:  # resume after decode shedding: re-anchor
            self._origin_s, self._rate, self._consumed = None, 0, 0
            self._carry = np.zeros(0, np.float32)
            self._skipped_until_s = None
        if self._origin_s is None:
            self._origin_s, self._rate = max(time_s, 0.0), rate
        data = np.concatenate([self._carry, samples]) if self._carry.size else samples
        step = max(1, int(self._rate * _SUBFRAME_S))
        whole = (data.size // step) * step
        if whole:
            blocks = data[:whole].reshape(-1, step).astype(np.float64)
            rms = np.sqrt(np.mean(blocks * blocks, axis=1))
            levels = 20.0 * np.log10(np.maximum(rms, 1e-9))
            for level in levels.tolist():
                self._add_subframe(level)
        self._carry = data[whole:].astype(np.float32, copy=True)

    def _add_subframe(self, level: float) -> None:
        assert self._origin_s is not None
        t = self._origin_s + self._consumed / self._rate
        self._consumed += max(1, int(self._rate * _SUBFRAME_S))
        cell = self._store.at(math.floor(t))
        cell.subframes += 1
        cell.level_db_sum += max(level, -90.0)
        if level > VOICE_GATE_DB:
            cell.voiced += 1
            self._silent_run = 0
            self._had_voice = True
            return
        self._silent_run += 1
        if self._had_voice and self._silent_run == PAUSE_MIN_SUBFRAMES:
            cell.pauses += 1


class VideoAnalyser:
    """Counts video frames per bin, samples a few per second for motion and brightness."""

    def __init__(self, store: _Bins, sample_fps: float, gap_ms: int) -> None:
        self._store = store
        self._step_s = 1.0 / sample_fps
        self._gap_s = gap_ms / 1000.0
        self._next_sample_s = 0.0
        self._previous: npt.NDArray[np.float32] | None = None
        self._last_time_s: float | None = None
        self.gaps: list[tuple[float, float]] = []
        self.end_s = 0.0

    def packet(self, time_s: float) -> None:
        """Count one video packet at ``time_s`` (presentation time) and track gaps."""
        previous = self._last_time_s if self._last_time_s is not None else 0.0
        if time_s - previous > self._gap_s:
            self.gaps.append((previous, time_s))
        self._last_time_s = max(previous, time_s)
        self._store.at(math.floor(max(time_s, 0.0))).video_frames += 1

    def restart(self) -> None:
        """Decoding stops and later resumes: motion is not measured across the skip."""
        self._previous = None
        self._next_sample_s = 0.0

    def wants_sample(self, time_s: float) -> bool:
        """Whether the decoded frame at ``time_s`` should be downscaled for features."""
        if time_s + 1e-9 < self._next_sample_s:
            return False
        self._next_sample_s = time_s + self._step_s
        return True

    def frame_end(self, end_s: float) -> None:
        """Record that video is known up to ``end_s``."""
        self.end_s = max(self.end_s, end_s)

    def add_sample(self, luma: npt.NDArray[np.uint8], time_s: float) -> None:
        """Add one downscaled luma sample taken at ``time_s``."""
        current = luma.astype(np.float32) / 255.0
        cell = self._store.at(math.floor(max(time_s, 0.0)))
        cell.luma_sum += float(current.mean())
        cell.luma_samples += 1
        if self._previous is not None:
            cell.motion_sum += float(np.abs(current - self._previous).mean())
            cell.motion_samples += 1
        self._previous = current

    def close(self, media_end_s: float) -> None:
        """Close the stream: a trailing stretch without frames is a gap too."""
        last = self._last_time_s if self._last_time_s is not None else 0.0
        if media_end_s - last > self._gap_s + self._step_s:
            self.gaps.append((last, media_end_s))


LUMA_SIZE = _LUMA_SIZE
