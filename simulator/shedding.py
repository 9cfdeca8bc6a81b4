"""Decode shedding: when a session's decoder falls behind live media, stop decoding.

A window whose media is decoded more than ``max_lag_s`` after it arrived would be shed
anyway, so decoding it only deepens the backlog. :class:`DecodeShedder` decides per
*owned slice* (the media a window adds: ``[0, window)``, then one hop at a time) whether
to decode it or only demux it: a slice starting while the decoder runs more than half of
``max_lag_s`` behind the arrival of its bytes is skipped whole, and a decoded slice is
abandoned as soon as the lag passes ``max_lag_s`` (its window would be shed anyway).
(Half rather than ``max_lag_s`` minus one hop: measured, the larger threshold let more
decoded slices overrun ``max_lag_s`` and be wasted.)
After a skip, video decoding restarts at the first keyframe (packets before it are
neither decoded nor counted as skipped). Skipped media is recorded as ranges; the windows
owning any of it are shed as ``lag`` (see ``windows.py``). Under overload each session
thus alternates decoded and skipped slices, shedding a share of its media and staying
close to live, instead of shedding everything once it fell behind.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["Decision", "DecodeShedder"]

Decision = Literal["decode", "skip", "hold"]
"""``decode`` the packet, ``skip`` it (not decoded, recorded), ``hold`` (not decoded:
video after a skip waits for a keyframe; not recorded, its slice is still analysed)."""

_MERGE_S = 0.25
"""Skipped packets closer than this are one range (audio and video interleave)."""


class DecodeShedder:
    """Per-session decode/skip decisions and the media ranges skipped (seconds)."""

    def __init__(self, max_lag_s: float, *, window_s: float = 8.0, hop_s: float = 3.0) -> None:
        self.max_lag_s = max_lag_s
        self.start_lag_s = max_lag_s / 2
        """A slice is decoded only if it starts at most this far behind."""
        self._window_s = window_s
        self._hop_s = hop_s
        self._slice = -1
        self._slice_start_s = 0.0
        self._slice_end_s = window_s
        self._await_key = False
        self.skipping = False
        self.episodes = 0
        self.ranges: list[tuple[float, float]] = []

    def slice_of(self, time_s: float) -> int:
        """Index of the owned slice holding media time ``time_s``."""
        if time_s < self._window_s:
            return 0
        return 1 + math.floor((time_s - self._window_s) / self._hop_s)

    def decide(self, lag_s: float, time_s: float, *, video_keyframe: bool | None) -> Decision:
        """What to do with the next packet.

        Args:
            lag_s: wall time since the packet's bytes arrived on the socket.
            time_s: the packet's media time.
            video_keyframe: True/False for a video packet, None for an audio packet.
        """
        was_skipping = self.skipping
        index = self.slice_of(max(time_s, 0.0))
        if index > self._slice:  # a new slice: decode it only with room to spare
            self._slice = index
            self._slice_start_s = 0.0 if index == 0 else self._window_s + (index - 1) * self._hop_s
            self._slice_end_s = self._window_s + index * self._hop_s
            self.skipping = lag_s > self.start_lag_s
        elif not self.skipping and lag_s > self.max_lag_s:  # this slice is lost anyway
            self.skipping = True
        if self.skipping:
            self.episodes += not was_skipping
            return "skip"
        if was_skipping:
            self._await_key = True
        if video_keyframe is not None and self._await_key:
            if not video_keyframe:
                return "hold"
            self._await_key = False
        return "decode"

    def record(self, start_s: float, end_s: float) -> None:
        """Note that media ``[start_s, end_s)`` of the current slice was not decoded."""
        start_s = max(start_s, self._slice_start_s)
        end_s = min(end_s, self._slice_end_s)
        if end_s <= start_s:
            return
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last[0] - _MERGE_S <= start_s <= last[1] + _MERGE_S:
            self.ranges[-1] = (min(last[0], start_s), max(last[1], end_s))
            return
        self.ranges.append((start_s, end_s))

    def ranges_ms(self) -> list[tuple[int, int]]:
        """The skipped ranges in whole milliseconds (widened outward)."""
        return [(math.floor(a * 1000), math.ceil(b * 1000)) for a, b in self.ranges]
