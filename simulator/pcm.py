"""Raw PCM audio sessions (``inter-2-audio`` with ``audio_format``), analysed in integers.

A client that declares ``audio_format`` (``pcm_s16le``, mono, 16 or 24 kHz, as the SDK's
``RawAudioFormat``) sends bare samples: frames of any size, cut at any byte. Media time is
the sample count over the sample rate. Every 50 ms of samples is one subframe: its integer
sum of squares is turned into a level in whole centibels by comparing it with a table of
integer thresholds computed once with :mod:`decimal` (software arithmetic: the same on every
CPU, no ``log10`` per subframe), and the level feeds the same analyser as compressed audio
packets (:class:`~simulator.packet_features.PacketAudioAnalyser`: voice gate, pauses, level
per one-second :class:`~simulator.features.FeatureBin`), so the window model is shared.
A trailing part of a subframe counts as media time but carries no features.
"""

from __future__ import annotations

import bisect
import decimal
import functools
import math
import time
from collections.abc import Callable

import numpy as np

from simulator.features import FeatureBin, _Bins
from simulator.levels import FLOOR_CB, centibel_bounds
from simulator.media import MediaProgress
from simulator.packet_features import PacketAudioAnalyser

__all__ = ["PCM_SAMPLE_RATES", "SUBFRAME_MS", "PcmStream", "pcm_level_cb"]

PCM_SAMPLE_RATES: tuple[int, ...] = (16000, 24000)
"""Sample rates the SDK's ``RawAudioFormat`` allows."""
SUBFRAME_MS = 50
"""Raw audio is measured in subframes of this length."""
_FULL_SCALE_SQUARED = 32768 * 32768


@functools.cache
def _level_thresholds(samples: int) -> tuple[int, ...]:
    """Sums of squares of ``samples`` int16 samples at which the level rounds up a centibel.

    The level is ``100 log10(sum / (samples x 32768^2))`` cB (dBFS x 10), rounded half up:
    entry ``i`` is the smallest integer sum whose level is at least ``FLOOR_CB + 1 + i``.
    """
    full = decimal.Decimal(samples * _FULL_SCALE_SQUARED)
    ceiling = decimal.ROUND_CEILING
    return tuple(int(b.to_integral_value(rounding=ceiling)) for b in centibel_bounds(full, 100))


def pcm_level_cb(sum_of_squares: int, samples: int) -> int:
    """The level in whole centibels (-900..0) of ``samples`` samples with this energy."""
    return FLOOR_CB + bisect.bisect_right(_level_thresholds(samples), sum_of_squares)


class PcmStream:
    """One raw PCM session: feed sample bytes in, get :class:`MediaProgress` reports out.

    Same interface as :class:`~simulator.box_media.BoxMediaStream`, on the event loop
    (summing squares of a 50 ms subframe costs microseconds).
    """

    def __init__(self, report: Callable[[MediaProgress], None], *, sample_rate: int) -> None:
        self._report = report
        self._rate = sample_rate
        self._subframe = sample_rate * SUBFRAME_MS // 1000
        self._store = _Bins()
        self._audio = PacketAudioAnalyser(self._store)
        self._pending = bytearray()
        self._samples = 0
        self._subframes = 0
        self._emitted = 0
        self._frames = 0
        self._received = 0
        self._arrival = time.monotonic()
        self._done = False

    @property
    def bytes_received(self) -> int:
        """Bytes fed so far."""
        return self._received

    @property
    def started(self) -> bool:
        """Whether any media was fed."""
        return self._frames > 0

    def feed(self, data: bytes) -> None:
        """Analyse the whole subframes this frame completes, then report."""
        if self._done:
            return
        self._frames += 1
        self._received += len(data)
        self._arrival = time.monotonic()
        self._pending += data
        whole = len(self._pending) // (2 * self._subframe) * self._subframe
        if whole:
            samples = np.frombuffer(self._pending, "<i2", count=whole).astype(np.int64)
            energies = (samples * samples).reshape(-1, self._subframe).sum(axis=1)
            for energy in energies.tolist():
                start_ms = self._subframes * SUBFRAME_MS
                level = pcm_level_cb(energy, self._subframe)
                self._audio.subframe(level, start_ms / 1000, SUBFRAME_MS / 1000)
                self._subframes += 1
            del self._pending[: 2 * whole]
            self._samples += whole
        self._emit(final=False)

    def finish(self, *, abort: bool = False) -> None:
        """No more bytes will come: a trailing partial subframe counts as media time."""
        if self._done:
            return
        self._samples += len(self._pending) // 2
        self._pending.clear()
        self._done = True
        self._emit(final=True)

    def _emit(self, *, final: bool) -> None:
        media_ms = self._samples * 1000 // self._rate
        complete = math.ceil(media_ms / 1000) if final else self._subframes * SUBFRAME_MS // 1000
        if complete <= self._emitted and not final:
            return
        store = self._store.bins
        indices = range(self._emitted, max(complete, 0))
        bins = [store.pop(i) if i in store else FeatureBin(i) for i in indices]
        self._emitted = max(self._emitted, complete)
        self._report(
            MediaProgress(
                bins=bins,
                media_ms=media_ms,
                gaps_ms=[],
                arrival=self._arrival,
                finished=final,
                has_video=False,
            )
        )
