"""Synthetic test media: a moving pattern plus an audio tone, written with PyAV.

Used by the tests and the benchmarks (and handy for demos): any container and codec
pair PyAV can encode, any GOP, without shipping media files in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

__all__ = ["MediaSpec", "write_media"]


@dataclass(frozen=True)
class MediaSpec:
    """What to generate. ``gop`` is the keyframe interval in frames; ``audio_codec`` None
    means no audio, ``video_codec`` None means no video (audio only)."""

    duration_s: float = 4.0
    width: int = 160
    height: int = 120
    fps: int = 25
    gop: int = 25
    video_codec: str | None = "libx264"
    audio_codec: str | None = "aac"
    sample_rate: int = 48000
    pix_fmt: str = "yuv420p"
    video_options: tuple[tuple[str, str], ...] = ()
    container_options: tuple[tuple[str, str], ...] = ()
    bit_rate: int | None = None


def _frame_image(index: int, width: int, height: int) -> npt.NDArray[np.uint8]:
    """An RGB frame: a gradient background with a bright square moving across it."""
    x = np.arange(width, dtype=np.uint16)
    y = np.arange(height, dtype=np.uint16)[:, None]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = ((x + index * 3) % 256).astype(np.uint8)
    image[..., 1] = ((y + index * 2) % 256).astype(np.uint8)
    image[..., 2] = ((x + y + index) % 256).astype(np.uint8)
    side = max(4, min(width, height) // 4)
    left = (index * 4) % max(1, width - side)
    top = (index * 2) % max(1, height - side)
    image[top : top + side, left : left + side] = 255
    return image


def write_media(path: Path, spec: MediaSpec = MediaSpec()) -> Path:
    """Write ``spec`` to ``path`` (container chosen from the suffix) and return the path."""
    with av.open(str(path), "w", options=dict(spec.container_options)) as out:
        video: av.VideoStream | None = None
        if spec.video_codec is not None:
            added = out.add_stream(
                spec.video_codec, rate=spec.fps, options=dict(spec.video_options)
            )
            assert isinstance(added, av.VideoStream)
            video = added
            video.width = spec.width
            video.height = spec.height
            video.pix_fmt = spec.pix_fmt
            video.codec_context.gop_size = spec.gop
            if spec.video_codec == "libx264":
                # Fixed GOP: keyframes exactly every `gop` frames (no scene-cut keyframes).
                video.codec_context.options = {
                    "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0",
                    "preset": "ultrafast",
                    **dict(spec.video_options),
                }
            if spec.bit_rate is not None:
                video.bit_rate = spec.bit_rate
        audio: av.AudioStream | None = None
        if spec.audio_codec is not None:
            sound = out.add_stream(spec.audio_codec, rate=spec.sample_rate)
            assert isinstance(sound, av.AudioStream)
            audio = sound
            audio.layout = "mono" if spec.audio_codec.startswith("pcm") else "stereo"
        _encode_all(out, spec, video, audio)
    return path


def _encode_all(
    out: av.container.OutputContainer,
    spec: MediaSpec,
    video: av.VideoStream | None,
    audio: av.AudioStream | None,
) -> None:
    frames = round(spec.duration_s * spec.fps)
    total_samples = round(spec.duration_s * spec.sample_rate)
    samples_done = 0
    block = 1024
    for index in range(frames):
        if video is not None:
            frame = av.VideoFrame.from_ndarray(
                _frame_image(index, spec.width, spec.height), format="rgb24"
            )
            frame.pts = index
            frame.time_base = Fraction(1, spec.fps)
            out.mux(video.encode(frame))
        if audio is None:
            continue
        # Keep audio up to the video time (interleaved writing keeps memory small).
        target = round((index + 1) / spec.fps * spec.sample_rate)
        while samples_done < min(target, total_samples):
            count = min(block, total_samples - samples_done)
            out.mux(audio.encode(_tone(audio, samples_done, count, spec.sample_rate)))
            samples_done += count
    if audio is not None:
        while samples_done < total_samples:
            count = min(block, total_samples - samples_done)
            out.mux(audio.encode(_tone(audio, samples_done, count, spec.sample_rate)))
            samples_done += count
        out.mux(audio.encode(None))
    if video is not None:
        out.mux(video.encode(None))


def _tone(stream: av.AudioStream, start: int, count: int, rate: int) -> av.AudioFrame:
    """A 440 Hz sine block in the stream's preferred sample format."""
    t = (np.arange(start, start + count, dtype=np.float64)) / rate
    wave = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    channels = stream.codec_context.layout.nb_channels
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    data: npt.NDArray[np.generic]
    if fmt in ("s16", "s16p"):
        data = (wave * 32767).astype(np.int16)
    else:
        data = wave
        fmt = "fltp" if fmt.endswith("p") else "flt"
    planar = fmt.endswith("p")
    array = np.tile(data, (channels, 1)) if planar else np.repeat(data, channels)[None, :]
    frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=stream.codec_context.layout.name)
    frame.sample_rate = rate
    frame.pts = start
    frame.time_base = Fraction(1, rate)
    return frame
