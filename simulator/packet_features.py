"""Per-second media features read from compressed packets alone (``--decode none``).

No frame is decoded: the encoder's own rate allocation is the signal. Each audio packet
becomes one "subframe" whose level proxy grows with its bit rate (silence encodes to a
few bytes, voice to hundreds), so voice activity, pauses and level variation read as
they do from decoded audio. Each inter-coded video packet's bits per pixel is a motion
proxy (residuals grow with movement); each keyframe's bits per pixel stands in for the
brightness/scene measure (intra-coded detail). Both fill the same :class:`FeatureBin`
fields the decoding analysers fill, so the window model in ``analysis.py`` is shared.
The mapping is documented in ``simulator/README.md``.
"""

from __future__ import annotations

import math

from simulator.features import PAUSE_MIN_SUBFRAMES, VOICE_GATE_DB, _Bins

__all__ = ["PacketAudioAnalyser", "PacketVideoAnalyser", "packet_level_db"]

REFERENCE_BITS_PER_S = 48_000.0
"""An audio packet at this bit rate reads as -12 dBFS (the level of a clear voice)."""
MOTION_HALF_BPP = 0.02
"""Inter-frame bits per pixel at which the motion proxy reaches half its range."""
DETAIL_HALF_BPP = 0.1
"""Keyframe bits per pixel at which the brightness proxy reaches half its range."""
_PAUSE_S = PAUSE_MIN_SUBFRAMES * 0.05


def packet_level_db(size_bytes: int, duration_s: float) -> float:
    """The level proxy (dBFS-like, -90..0) of an audio packet of ``size_bytes``."""
    if duration_s <= 0 or size_bytes <= 0:
        return -90.0
    bits_per_s = size_bytes * 8 / duration_s
    return max(-90.0, min(0.0, -12.0 + 20.0 * math.log10(bits_per_s / REFERENCE_BITS_PER_S)))


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
        self.end_s = max(self.end_s, time_s + duration_s)
        level = packet_level_db(size_bytes, duration_s)
        cell = self._store.at(math.floor(max(time_s, 0.0)))
        cell.subframes += 1
        cell.level_db_sum += level
        if level > VOICE_GATE_DB:
            cell.voiced += 1
            self._silent_s, self._had_voice, self._paused = 0.0, True, False
            return
        self._silent_s += duration_s
        if self._had_voice and not self._paused and self._silent_s >= _PAUSE_S - 1e-9:
            cell.pauses += 1
            self._paused = True


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
            cell.luma_sum += 0.25 * bpp / (bpp + DETAIL_HALF_BPP)
            cell.luma_samples += 1
            return
        cell.motion_sum += 0.2 * bpp / (bpp + MOTION_HALF_BPP)
        cell.motion_samples += 1
