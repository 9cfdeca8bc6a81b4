"""Synthetic test-pattern clips (PyAV): a moving pattern with a tone, as a live byte stream.

Used to try the simulator without a camera, by the tests and by the benchmark. Every
parameter changes the media, and so what the simulator detects in it.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

__all__ = ["ClipSpec", "make_clip", "split_fragments"]


@dataclass(frozen=True)
class ClipSpec:
    """What to generate.

    Attributes:
        seconds: duration.
        width, height, fps: video geometry (``fps=0`` makes an audio-only clip).
        speed: pixels per frame the bar moves (motion energy).
        tone_db: tone level in dBFS (``None``: silence).
        speech_pattern: on/off seconds of the tone, cycled (e.g. ``(2.0, 1.0)``).
        video_gap: (start, end) seconds with no video frames (a video gap).
        container: ``mp4`` (fragmented) or ``webm``.
        bitrate: video bit rate in bit/s (``None``: encoder default quality).
        ramp: the bar's speed grows linearly to ``speed * (1 + ramp)`` by the end.
        noise: amplitude of per-frame pixel noise (makes the encoder spend its bit rate).
    """

    seconds: float = 12.0
    width: int = 160
    height: int = 120
    fps: int = 10
    speed: int = 4
    tone_db: float | None = -12.0
    speech_pattern: tuple[float, float] | None = (2.0, 1.0)
    video_gap: tuple[float, float] | None = None
    container: str = "mp4"
    bitrate: int | None = None
    sample_rate: int = 16000
    ramp: float = 0.0
    noise: int = 0


def _video_frame(spec: ClipSpec, index: int) -> npt.NDArray[np.uint8]:
    img = np.full((spec.height, spec.width, 3), 40, np.uint8)
    frames = max(1.0, spec.seconds * spec.fps)
    travelled = spec.speed * (index + spec.ramp * index * index / (2 * frames))
    x = int(travelled) % spec.width
    img[:, x : x + max(4, spec.width // 8)] = 230
    y = int(travelled / 2) % spec.height
    img[y : y + max(4, spec.height // 8), :, 1] = 180
    if spec.noise:
        rng = np.random.default_rng(index)
        grain = rng.integers(0, spec.noise, size=img.shape, dtype=np.uint8)
        img = img + grain  # values stay below 256: 230 + noise <= 255 for noise <= 25
    return img


def _tone(spec: ClipSpec, start: int, count: int) -> npt.NDArray[np.float32]:
    t = (np.arange(count) + start) / spec.sample_rate
    if spec.tone_db is None:
        return np.zeros((1, count), np.float32)
    amplitude = 10 ** (spec.tone_db / 20)
    wave = amplitude * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) / 1.5
    if spec.speech_pattern is not None:
        on, off = spec.speech_pattern
        wave = wave * ((t % (on + off)) < on)
    return wave.astype(np.float32)[None, :]


def make_clip(spec: ClipSpec) -> bytes:
    """Encode the clip into one fragmented-MP4 (or WebM) byte stream."""
    buf = io.BytesIO()
    mp4 = spec.container == "mp4"
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"} if mp4 else {}
    with av.open(buf, mode="w", format=spec.container, options=options) as out:
        video: av.VideoStream | None = None
        if spec.fps:
            video = out.add_stream("libx264" if mp4 else "libvpx", rate=spec.fps)
            video.options = {"threads": "1"}
            video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
            video.gop_size = spec.fps
            if spec.bitrate:
                video.bit_rate = spec.bitrate
        rate = spec.sample_rate if mp4 else 48000
        audio = out.add_stream("aac" if mp4 else "libopus", rate=rate)
        audio.layout = "mono"
        if video is not None:
            _encode_video(spec, out, video)
        step, total = 960, round(spec.seconds * rate)
        tone_spec = dataclasses.replace(spec, sample_rate=rate)
        for start in range(0, total, step):
            samples = _tone(tone_spec, start, min(step, total - start))
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _encode_video(spec: ClipSpec, out: av.container.OutputContainer, video: av.VideoStream) -> None:
    for i in range(round(spec.seconds * spec.fps)):
        t = i / spec.fps
        if spec.video_gap and spec.video_gap[0] <= t < spec.video_gap[1]:
            continue
        frame = av.VideoFrame.from_ndarray(_video_frame(spec, i), format="rgb24")
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
    for packet in video.encode(None):
        out.mux(packet)


def split_fragments(data: bytes, chunk_bytes: int = 16384) -> list[bytes]:
    """Cut a byte stream into ``chunk_bytes`` frames (the first carries the init header)."""
    return [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
