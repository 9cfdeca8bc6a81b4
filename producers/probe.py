"""Decide how a source's streams become chunk streams: stream copy or transcode.

The first video stream is required; the first usable audio stream is kept. Video
H.264/HEVC/AV1 and audio AAC/Opus/MP3 are copied; anything else is re-encoded (H.264,
AAC). The resulting :class:`StreamPlan` holds the template streams every chunk's muxer
copies its stream parameters from; they live in scratch containers that outlive the
input (which is reopened for each ``--loop`` play).
"""

from __future__ import annotations

from dataclasses import dataclass

import av

from producers.codecs import (
    COPY_AUDIO_CODECS,
    COPY_VIDEO_CODECS,
    audio_codec_string,
    mime_type,
    video_codec_string,
)
from producers.exceptions import NoVideoStreamError, UnsupportedCodecError
from producers.transcode import AudioTranscoder, VideoTranscoder, encoder_container
from runtime.logs import get_logger

__all__ = ["MediaInfo", "StreamPlan", "codec_name", "media_info", "pick_audio", "plan_streams"]

_CANONICAL = {"mp3float": "mp3", "libopus": "opus", "libx264": "h264", "libdav1d": "av1"}


@dataclass(frozen=True)
class MediaInfo:
    """What the chunks will hold, published in the session-started record."""

    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    frame_rate: float
    transcoded: bool
    audio_transcoded: bool
    mime_type: str
    duration_s: float | None


@dataclass
class StreamPlan:
    """Input streams, their chunk templates, and the encoders where transcoding."""

    video_in: av.VideoStream
    audio_in: av.AudioStream | None
    video_template: av.VideoStream
    audio_template: av.AudioStream | None
    video_encoder: VideoTranscoder | None
    audio_encoder: AudioTranscoder | None
    fps: float
    scratch: tuple[av.container.OutputContainer, ...]


def codec_name(stream: av.stream.Stream) -> str:
    """The FFmpeg codec name of a stream (``none`` when FFmpeg does not know it)."""
    context = stream.codec_context
    name = context.name if context is not None and context.name else "none"
    return _CANONICAL.get(name, name)


def _can_decode(stream: av.stream.Stream) -> bool:
    context = stream.codec_context
    if context is None or context.name in ("none", ""):
        return False
    try:
        av.Codec(context.name, "r")
    except av.codec.codec.UnknownCodecError:
        return False
    return True


def pick_audio(container: av.container.InputContainer, display: str) -> av.AudioStream | None:
    """The first audio stream that can be copied or decoded (others are dropped, logged)."""
    for audio in container.streams.audio:
        name = codec_name(audio)
        if name in COPY_AUDIO_CODECS or _can_decode(audio):
            return audio
        get_logger("producers.probe", source=display).warning(
            "audio_dropped", reason=f"unsupported audio codec {name!r}"
        )
    return None


def _copies_audio(audio: av.AudioStream, transcode: bool) -> bool:
    name = codec_name(audio)
    # AAC in ADTS framing (MPEG-TS, HLS, SRT) has no AudioSpecificConfig for MP4.
    adts = name == "aac" and not audio.codec_context.extradata
    return not transcode and name in COPY_AUDIO_CODECS and not adts


def plan_streams(
    container: av.container.InputContainer,
    display: str,
    *,
    transcode: bool,
    chunk_duration_s: float,
) -> StreamPlan:
    """Choose copy or transcode per stream; raises when there is no usable video."""
    if not container.streams.video:
        kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "no streams"
        raise NoVideoStreamError(display, f"no video stream (has: {kinds})")
    video = container.streams.video[0]
    vname = codec_name(video)
    copy_video = vname in COPY_VIDEO_CODECS and not transcode
    if not copy_video and not _can_decode(video):
        detail = "unknown to FFmpeg" if vname == "none" else f"{vname!r}, no decoder"
        raise UnsupportedCodecError(display, f"unsupported video codec ({detail})")
    width, height = video.codec_context.width, video.codec_context.height
    if not width or not height:
        raise UnsupportedCodecError(display, f"video stream {vname!r} has no frame size")
    rate = video.average_rate or video.guessed_rate or video.base_rate
    fps = float(rate) if rate else 25.0
    audio = pick_audio(container, display)
    copy_audio = audio is not None and _copies_audio(audio, transcode)
    # Copy templates live in a container that is never written; encoders in another.
    copies = encoder_container()
    encoders = encoder_container()
    video_encoder = None
    if copy_video:
        video_template = copies.add_stream_from_template(video, opaque=True)
    else:
        video_encoder = VideoTranscoder(
            encoders,
            width=width,
            height=height,
            fps=fps,
            gop_frames=max(1, round(fps * chunk_duration_s)),
        )
        video_template = video_encoder.stream
    audio_template: av.AudioStream | None = None
    audio_encoder = None
    if audio is not None and copy_audio:
        audio_template = copies.add_stream_from_template(audio, opaque=True)
    elif audio is not None:
        audio_encoder = AudioTranscoder(
            encoders,
            sample_rate=audio.codec_context.sample_rate or 48000,
            channels=audio.codec_context.channels or 2,
        )
        audio_template = audio_encoder.stream
    if video_encoder is not None or audio_encoder is not None:
        encoders.start_encoding()
    return StreamPlan(
        video_in=video,
        audio_in=audio,
        video_template=video_template,
        audio_template=audio_template,
        video_encoder=video_encoder,
        audio_encoder=audio_encoder,
        fps=fps,
        scratch=(copies, encoders),
    )


def media_info(plan: StreamPlan, duration_s: float | None) -> MediaInfo:
    """The session-started description of what ``plan`` produces."""
    video = plan.video_template
    audio = plan.audio_template
    vcodec = codec_name(video)
    vstring = video_codec_string(vcodec, video.codec_context.extradata)
    acodec = codec_name(audio) if audio is not None else None
    astring = (
        audio_codec_string(acodec, audio.codec_context.profile)
        if audio is not None and acodec
        else None
    )
    return MediaInfo(
        video_codec=vcodec,
        audio_codec=acodec,
        width=video.codec_context.width,
        height=video.codec_context.height,
        frame_rate=round(plan.fps, 3),
        transcoded=plan.video_encoder is not None,
        audio_transcoded=plan.audio_encoder is not None,
        mime_type=mime_type(vstring, astring),
        duration_s=duration_s,
    )
