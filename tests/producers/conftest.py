"""Media generated once per test session with PyAV (moving pattern + tone, a few seconds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from producers.synthetic import MediaSpec, write_media

# name -> what to generate. Durations and GOPs are chosen so chunk counts are exact.
MEDIA: dict[str, MediaSpec] = {
    "h264_aac.mp4": MediaSpec(duration_s=4.0, gop=25),
    "h264_aac_gop12.mov": MediaSpec(duration_s=4.0, gop=12),
    "h264_opus.mkv": MediaSpec(duration_s=4.0, gop=25, audio_codec="libopus"),
    "vp8_opus.webm": MediaSpec(duration_s=4.0, gop=25, video_codec="libvpx", audio_codec="libopus"),
    "vp9_opus.webm": MediaSpec(
        duration_s=3.0, gop=25, video_codec="libvpx-vp9", audio_codec="libopus"
    ),
    "h264_aac.ts": MediaSpec(duration_s=4.0, gop=25),
    "mpeg4_mp3.avi": MediaSpec(duration_s=4.0, gop=25, video_codec="mpeg4", audio_codec="mp3"),
    "h264_pcm.mov": MediaSpec(duration_s=4.0, gop=25, audio_codec="pcm_s16le"),
    "h264_bframes.mp4": MediaSpec(duration_s=4.0, gop=25, video_options=(("preset", "medium"),)),
    "h264_silent.mp4": MediaSpec(duration_s=3.0, gop=25, audio_codec=None),
    "hevc_aac.mp4": MediaSpec(
        duration_s=4.0,
        gop=25,
        video_codec="libx265",
        video_options=(
            ("x265-params", "keyint=25:min-keyint=25:scenecut=0:open-gop=0:log-level=none"),
        ),
    ),
    "av1_opus.mkv": MediaSpec(
        duration_s=4.0, gop=25, video_codec="libsvtav1", audio_codec="libopus"
    ),
    "h264_longgop.mp4": MediaSpec(duration_s=6.0, gop=100, width=320, height=240),
    "h264_faststart.mp4": MediaSpec(
        duration_s=4.0, gop=25, container_options=(("movflags", "faststart"),)
    ),
    "aac_only.m4a": MediaSpec(duration_s=2.0, video_codec=None),
}


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every file of :data:`MEDIA`."""
    directory = tmp_path_factory.mktemp("media")
    for name, spec in MEDIA.items():
        write_media(directory / name, spec)
    return directory


@pytest.fixture
def media(media_dir: Path) -> Callable[[str], Path]:
    """``media("h264_aac.mp4")`` -> path of a generated file."""

    def get(name: str) -> Path:
        assert name in MEDIA, name
        return media_dir / name

    return get
