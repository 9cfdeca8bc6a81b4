"""Per-second media features, kept as integers so analysis is exact on every CPU.

One :class:`FeatureBin` per second of media time. Every feature is an integer count or
a fixed-point sum (levels in centibels, motion and brightness in parts per million), so
the same media bytes give the same bins bit for bit on any machine: integer sums do not
depend on summation order or on a CPU's floating-point SIMD path. Audio features come
from the compressed packets (``packet_features.py``); video features come from decoded
luma (this module: H.264, VP8 and VP9 decoding are bit-exact by their specifications),
or from packets with ``decode="none"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["LUMA_GRID", "PPM", "FeatureBin", "VideoAnalyser", "luma_blocks"]

VOICE_GATE_CB = -400
"""Subframes louder than this (centibels, i.e. -40.0 dBFS) count as voice activity."""
PAUSE_MIN_SUBFRAMES = 6
"""A silent run of at least this many 50 ms subframes after voice counts as a pause."""
PPM = 1_000_000
"""Fixed-point scale of motion and brightness (parts per million of full scale)."""
LUMA_GRID = (32, 24)
"""Luma is averaged over this grid of blocks (columns, rows) before comparing samples."""
_BLOCK_FRACTION_BITS = 12
"""Block means are kept with this many fractional bits (integers, exact)."""


@dataclass
class FeatureBin:
    """Features of one second of media ``[index, index + 1)`` s, as exact integers."""

    index: int
    subframes: int = 0
    voiced: int = 0
    level_cb_sum: int = 0
    pauses: int = 0
    video_frames: int = 0
    motion_ppm_sum: int = 0
    motion_samples: int = 0
    luma_ppm_sum: int = 0
    luma_samples: int = 0

    @property
    def voice_ratio(self) -> float:
        """Share of the second with voice activity (0 when there is no audio)."""
        return self.voiced / self.subframes if self.subframes else 0.0

    @property
    def level_db(self) -> float:
        """Mean audio level in dBFS (-90 when there is no audio)."""
        return self.level_cb_sum / (10 * self.subframes) if self.subframes else -90.0

    @property
    def motion(self) -> float:
        """Mean motion energy, 0..1."""
        return self.motion_ppm_sum / (PPM * self.motion_samples) if self.motion_samples else 0.0

    @property
    def brightness(self) -> float | None:
        """Mean brightness 0..1, or None without video samples."""
        return self.luma_ppm_sum / (PPM * self.luma_samples) if self.luma_samples else None


@dataclass
class _Bins:
    bins: dict[int, FeatureBin] = field(default_factory=dict)

    def at(self, index: int) -> FeatureBin:
        found = self.bins.get(index)
        if found is None:
            found = self.bins[index] = FeatureBin(index)
        return found


def luma_blocks(luma: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], int]:
    """Block means of a luma plane on :data:`LUMA_GRID`, fixed point; and the plane's sum.

    Integer arithmetic only (no scaler, no float), so the result is the same on every CPU.
    Planes smaller than the grid use one block per pixel row/column.
    """
    height, width = luma.shape
    cols, rows = min(LUMA_GRID[0], width), min(LUMA_GRID[1], height)
    col_edges = np.array([width * i // cols for i in range(cols + 1)], np.int64)
    row_edges = np.array([height * i // rows for i in range(rows + 1)], np.int64)
    wide = luma.astype(np.int64)
    sums = np.add.reduceat(np.add.reduceat(wide, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    counts = np.outer(np.diff(row_edges), np.diff(col_edges))
    means = (sums << _BLOCK_FRACTION_BITS) // counts
    return means, int(sums.sum())


class VideoAnalyser:
    """Counts video frames per bin, samples a few per second for motion and brightness."""

    def __init__(self, store: _Bins, sample_fps: float, gap_ms: int) -> None:
        self._store = store
        self._step_s = 1.0 / sample_fps
        self._gap_s = gap_ms / 1000.0
        self._next_sample_s = 0.0
        self._previous: npt.NDArray[np.int64] | None = None
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
        """Whether the decoded frame at ``time_s`` should be sampled for features."""
        if time_s + 1e-9 < self._next_sample_s:
            return False
        self._next_sample_s = time_s + self._step_s
        return True

    def frame_end(self, end_s: float) -> None:
        """Record that video is known up to ``end_s``."""
        self.end_s = max(self.end_s, end_s)

    def add_sample(self, luma: npt.NDArray[np.uint8], time_s: float) -> None:
        """Add one decoded luma plane (8-bit, full size) sampled at ``time_s``."""
        blocks, total = luma_blocks(luma)
        cell = self._store.at(math.floor(max(time_s, 0.0)))
        cell.luma_ppm_sum += total * PPM // (luma.size * 255)
        cell.luma_samples += 1
        previous, self._previous = self._previous, blocks
        if previous is not None and previous.shape == blocks.shape:
            full_scale = blocks.size * (255 << _BLOCK_FRACTION_BITS)
            cell.motion_ppm_sum += int(np.abs(blocks - previous).sum()) * PPM // full_scale
            cell.motion_samples += 1

    def close(self, media_end_s: float) -> None:
        """Close the stream: a trailing stretch without frames is a gap too."""
        last = self._last_time_s if self._last_time_s is not None else 0.0
        if media_end_s - last > self._gap_s + self._step_s:
            self.gaps.append((last, media_end_s))
