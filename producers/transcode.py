"""Re-encoding to H.264 + AAC for sources whose codecs do not fit fragmented MP4.

Encoders live in a scratch MP4 output container so their streams can serve as templates
for the per-chunk muxers. Timestamps are set by the caller (session media time).
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import av
from av.audio.resampler import AudioResampler

__all__ = ["AudioTranscoder", "VideoTranscoder", "encoder_container"]

_VIDEO_TIME_BASE = Fraction(1, 90000)
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_AAC_FRAME = 1024


def encoder_container() -> av.container.OutputContainer:
    """A scratch MP4 container on memory that holds the encoder streams (never written)."""
    return av.open(io.BytesIO(), "w", format="mp4")


class VideoTranscoder:
    """Decoded frames (with session-time pts in seconds) -> H.264 packets, fixed GOP."""

    def __init__(
        self,
        scratch: av.container.OutputContainer,
        *,
        width: int,
        height: int,
        fps: float,
        gop_frames: int,
    ) -> None:
        stream = scratch.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        assert isinstance(stream, av.VideoStream)
        stream.width = width - width % 2
        stream.height = height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = _VIDEO_TIME_BASE
        stream.codec_context.options = {
            "preset": "veryfast",
            # No B-frames or lookahead: dts == pts and low latency for live sources.
            "tune": "zerolatency",
            "crf": "23",
            "x264-params": f"keyint={gop_frames}:min-keyint={gop_frames}:scenecut=0",
        }
        self.stream = stream
        self._last_pts = -1

    def encode(self, frame: av.VideoFrame, time_s: float) -> list[av.Packet[Any]]:
        """Encode one frame shown at ``time_s`` (session seconds); drops non-increasing times."""
        pts = round(time_s / _VIDEO_TIME_BASE)
        if pts <= self._last_pts:
            return []
        self._last_pts = pts
        out = frame.reformat(width=self.stream.width, height=self.stream.height, format="yuv420p")
        out.pts = pts
        out.time_base = _VIDEO_TIME_BASE
        out.pict_type = av.video.frame.PictureType.NONE
        return list(self.stream.encode(out))

    def flush(self) -> list[av.Packet[Any]]:
        """Drain the encoder at the end of the session."""
        return list(self.stream.encode(None))


class AudioTranscoder:
    """Decoded audio frames -> AAC packets with gap-free sample-counted timestamps."""

    def __init__(
        self, scratch: av.container.OutputContainer, *, sample_rate: int, channels: int
    ) -> None:
        rate = sample_rate if sample_rate in _AAC_RATES else 48000
        layout = "mono" if channels == 1 else "stereo"
        stream = scratch.add_stream("aac", rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = layout
        self.stream = stream
        self._rate = rate
        self._resampler = AudioResampler(
            format="fltp", layout=layout, rate=rate, frame_size=_AAC_FRAME
        )
        self._next_sample: int | None = None

    def encode(self, frame: av.AudioFrame | None, time_s: float) -> list[av.Packet[Any]]:
        """Encode ``frame`` starting at ``time_s`` (session seconds); None flushes."""
        if self._next_sample is None:
            if frame is None:
                return []
            self._next_sample = max(0, round(time_s * self._rate))
        packets: list[av.Packet[Any]] = []
        for out in self._resampler.resample(frame):
            out.pts = self._next_sample
            out.time_base = Fraction(1, self._rate)
            self._next_sample += out.samples
            packets.extend(self.stream.encode(out))
        if frame is None:
            packets.extend(self.stream.encode(None))
        return packets
