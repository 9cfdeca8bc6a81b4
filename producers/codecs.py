"""Which codecs go into fragmented MP4 as they are, and their RFC 6381 codec strings."""

from __future__ import annotations

__all__ = [
    "COPY_AUDIO_CODECS",
    "COPY_VIDEO_CODECS",
    "audio_codec_string",
    "mime_type",
    "video_codec_string",
]

# Stream-copied into fMP4 (and accepted by Inter-1); anything else is transcoded.
COPY_VIDEO_CODECS = frozenset({"h264", "hevc", "av1"})
COPY_AUDIO_CODECS = frozenset({"aac", "opus", "mp3"})

_AAC_OBJECT_TYPES = {"LC": 2, "HE-AAC": 5, "HE-AACv2": 29, "Main": 1, "LTP": 4}


def _h264_profile_level(extradata: bytes | None) -> tuple[int, int, int] | None:
    """(profile_idc, constraint flags, level_idc) from avcC or an Annex B SPS."""
    if not extradata:
        return None
    if extradata[0] == 1 and len(extradata) >= 4:
        return extradata[1], extradata[2], extradata[3]
    index = extradata.find(b"\x00\x00\x01")
    while index != -1 and index + 6 < len(extradata):
        nal = extradata[index + 3]
        if nal & 0x1F == 7:  # sequence parameter set
            return extradata[index + 4], extradata[index + 5], extradata[index + 6]
        index = extradata.find(b"\x00\x00\x01", index + 3)
    return None


def video_codec_string(codec: str, extradata: bytes | None) -> str:
    """``avc1.PPCCLL`` for H.264 (from the SPS), ``hvc1``/``av01`` otherwise."""
    if codec == "h264":
        found = _h264_profile_level(extradata)
        if found is None:
            return "avc1"
        return "avc1.{:02x}{:02x}{:02x}".format(*found)
    return {"hevc": "hvc1", "av1": "av01"}.get(codec, codec)


def audio_codec_string(codec: str, profile: str | None) -> str:
    """``mp4a.40.N`` for AAC, ``opus``, ``mp4a.6B`` for MP3."""
    if codec == "aac":
        return f"mp4a.40.{_AAC_OBJECT_TYPES.get(profile or 'LC', 2)}"
    return {"opus": "opus", "mp3": "mp4a.6B"}.get(codec, codec)


def mime_type(video: str, audio: str | None) -> str:
    """``video/mp4; codecs="<video>[,<audio>]"``."""
    codecs = video if audio is None else f"{video},{audio}"
    return f'video/mp4; codecs="{codecs}"'
