"""RFC 6381 codec strings and MIME types of the chunks a producer writes."""

from __future__ import annotations

from producers.codecs import audio_codec_string, mime_type, video_codec_string


def test_codec_strings() -> None:
    avcc = bytes([1, 0x64, 0x00, 0x1F, 0xFF])
    annex_b = b"\x00\x00\x00\x01\x67\x42\xc0\x0b\xda"
    assert video_codec_string("h264", avcc) == "avc1.64001f"
    assert video_codec_string("h264", annex_b) == "avc1.42c00b"
    assert video_codec_string("h264", None) == "avc1"
    assert video_codec_string("hevc", None) == "hvc1"
    assert audio_codec_string("aac", "LC") == "mp4a.40.2"
    assert audio_codec_string("aac", "HE-AAC") == "mp4a.40.5"
    assert audio_codec_string("opus", None) == "opus"
    assert audio_codec_string("mp3", None) == "mp4a.6B"
    assert mime_type("avc1.64001f", "mp4a.40.2") == 'video/mp4; codecs="avc1.64001f,mp4a.40.2"'
    assert mime_type("avc1.64001f", None) == 'video/mp4; codecs="avc1.64001f"'
