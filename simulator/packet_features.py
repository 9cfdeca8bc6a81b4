"""Per-second media features read from compressed packets, in exact integer arithmetic.

The encoder's own rate allocation is the signal. Each audio packet becomes one
"subframe" whose level proxy grows with its bit rate (silence encodes to a few bytes,
voice to hundreds), so voice activity, pauses and level variation read as they would
from decoded audio; audio is analysed this way at every decode depth, since audio
decoders are floating point and differ in the last bits across CPUs. With
``decode="none"`` each inter-coded video packet's bits per pixel is a motion proxy
(residuals grow with movement) and each keyframe's bits per pixel stands in for the
brightness measure (intra detail). Both fill the integer :class:`FeatureBin` fields the
decoding analyser fills, so the window model in ``analysis.py`` is shared.

No transcendental function runs per packet: the level proxy is looked up in a table of
bit-rate thresholds computed once with :mod:`decimal` (software arithmetic, the same on
every machine), so a packet's level never depends on the CPU's ``log10``.
The mapping is documented in ``simulator/README.md``.
"""

from __future__ import annotations

import bisect
import decimal
import functools
import math

from simulator.features import PAUSE_MIN_SUBFRAMES, PPM, VOICE_GATE_CB, _Bins
from simulator.levels import FLOOR_CB, centibel_bounds

__all__ = ["PacketAudioAnalyser", "PacketVideoAnalyser", "packet_level_cb"]

REFERENCE_BITS_PER_S = 48_000
"""An audio packet at this bit rate reads as -12 dBFS (the level of a clear voice)."""
MOTION_HALF_BPP = 0.02
"""Inter-frame bits per pixel at which the motion proxy reaches half its range."""
DETAIL_HALF_BPP = 0.1
"""Keyframe bits per pixel at which the brightness proxy reaches half its range."""
_PAUSE_S = PAUSE_MIN_SUBFRAMES * 0.05


@functools.cache
def _level_thresholds() -> tuple[float, ...]:
    """Bit rates at which the proxy ``-12 + 20 log10(rate / 48 kbit/s)`` dB rounds up.

    Entry ``i`` is the rate from which the level, rounded to whole centibels, is at
    least ``FLOOR_CB + 1 + i``; rounding is half-up on the dB scale.
    """
    # -12 dB at 48 kbit/s: 0 cB at 48 kbit/s x 10^(12/20).
    scale = REFERENCE_BITS_PER_S * decimal.Decimal(10) ** decimal.Decimal("0.6")
    return tuple(float(bound) for bound in centibel_bounds(scale, 200))


def packet_level_cb(size_bytes: int, duration_s: float) -> int:
    """The level proxy, in whole centibels (-900..0), of an audio packet of ``size_bytes``."""
    if duration_s <= 0 or size_bytes <= 0:
        return FLOOR_CB
    bits_per_s = size_bytes * 8 / duration_s
    return FLOOR_CB + bisect.bisect_right(_level_thresholds(), bits_per_s)


class PacketAudioAnalyser:
    """Bins audio packets: one subframe each, voiced above the gate, pauses from quiet runs."""

    def __init__(self, store: _Bins) -> None:
        self._store = store
        self._silent_s = 0.0
        self._had_voice = False
        self._paused = False
        self.end_s = 0.0

    def packet(self, size_bytes: int, time_s: float, duration_s: float) -> None:
        """Add one audio packet presented at ``time_s`` lasting ``duration_s``."""
        self.subframe(packet_level_cb(size_bytes, duration_s), time_s, duration_s)

    def subframe(self, level: int, time_s: float, duration_s: float) -> None:
        """Add one subframe of ``level`` centibels (a packet, or 50 ms of raw PCM)."""
        self.end_s = max(self.end_s, time_s + duration_s)
        cell = self._store.at(math.floor(max(time_s, 0.0)))
        cell.subframes += 1
        cell.level_cb_sum += level
        if level > VOICE_GATE_CB:
            cell.voiced += 1
            self._silent_s, self._had_voice, self._paused = 0.0, True, False
            return
        self._silent_s += duration_s
        if self._had_voice and not self._paused and self._silent_s >= _PAUSE_S - 1e-9:
            cell.pauses += 1
            self._paused = True

    def skip_to(self, end_s: float) -> None:
        """Audio up to ``end_s`` is shed, not analysed; it still counts as received."""
        self.end_s = max(self.end_s, end_s)


class PacketVideoAnalyser:
    """Bins video packets: bits per pixel of inter frames (motion) and keyframes (detail)."""

    def __init__(self, store: _Bins, width: int, height: int) -> None:
        self._store = store
        self._pixels = max(1, width * height) if width and height else 320 * 240

    def packet(self, size_bytes: int, time_s: float, keyframe: bool) -> None:
        """Add one video packet presented at ``time_s``."""
        bpp = size_bytes * 8 / self._pixels
        cell = self._store.at(math.floor(max(time_s, 0.0)))
        if keyframe:
            cell.luma_ppm_sum += round(PPM * 0.25 * bpp / (bpp + DETAIL_HALF_BPP))
            cell.luma_samples += 1
            return
        cell.motion_ppm_sum += round(PPM * 0.2 * bpp / (bpp + MOTION_HALF_BPP))
        cell.motion_samples += 1
