"""The fixture clips are the reference bytes, and their analysis is pinned to the integer.

The simulator is a pure function of the media bytes it receives: the same bytes give the
same feature bins, bit for bit, on every CPU. These tests pin the bins of one clip at
every decode depth, so a change that lets a CPU-dependent path (a float reduction, a
scaler, an audio decoder) back into the features fails here first.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
from sim_helpers import (
    CLIP_B,
    CLIP_RAMP,
    FIXTURE_CLIPS,
    FIXTURE_DIR,
    clip_bytes,
    fixture_checksums,
    segments,
)

from chunks.containers import sniff_container
from simulator.clips import ClipSpec
from simulator.config import DecodeDepth
from simulator.features import FeatureBin
from simulator.media import MediaProgress, MediaStream


def test_every_fixture_clip_matches_its_checksum() -> None:
    sums = fixture_checksums()

    assert sorted(sums) == sorted(FIXTURE_CLIPS)
    for name in FIXTURE_CLIPS:
        data = (FIXTURE_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sums[name], (
            f"{name} differs from SHA256SUMS: restore it with `git checkout tests/fixtures/media`"
        )
    total = sum((FIXTURE_DIR / name).stat().st_size for name in FIXTURE_CLIPS)
    assert total < 512 * 1024  # committed media stays small


def test_a_clip_without_a_fixture_is_refused_with_what_to_do() -> None:
    spec = ClipSpec(seconds=3.0)

    with pytest.raises(LookupError, match=r"^no fixture clip for ClipSpec\(seconds=3\.0,") as info:
        clip_bytes(spec)
    assert str(info.value).endswith(
        "add the spec to FIXTURE_CLIPS and run "
        "`.venv/bin/python tests/fixtures/media/regenerate.py`"
    )


def _bins(data: bytes, decode: DecodeDepth) -> list[FeatureBin]:
    done = threading.Event()
    bins: list[FeatureBin] = []
    errors: list[Exception | None] = []

    def report(progress: MediaProgress) -> None:
        bins.extend(progress.bins)
        if progress.finished:
            errors.append(progress.error)
            done.set()

    container = sniff_container(data)
    assert container is not None
    stream = MediaStream(
        container, report, require_video=False, video_sample_fps=4.0, video_gap_ms=1000,
        decode=decode,
    )  # fmt: skip
    stream.feed(data)
    stream.finish()
    assert done.wait(30), "the demux thread did not finish within 30 s"
    assert errors == [None]
    return bins


def _fields(cell: FeatureBin) -> tuple[int, ...]:
    return (
        cell.subframes, cell.voiced, cell.level_cb_sum, cell.pauses, cell.video_frames,
        cell.motion_ppm_sum, cell.motion_samples, cell.luma_ppm_sum, cell.luma_samples,
    )  # fmt: skip


# Audio: the same at every depth (read from packets). Video: decoded luma, or packets.
AUDIO_FIRST_SECONDS = [(14, 9, -4107, 1, 8), (16, 0, -8256, 0, 10), (15, 10, -4183, 0, 10)]


@pytest.mark.parametrize(
    ("decode", "video"),
    [
        ("all", [(56619, 2, 915917, 3), (83100, 3, 916080, 3), (113608, 4, 1221374, 4)]),
        ("keyframes", [(0, 0, 305363, 1), (93921, 1, 305290, 1), (93917, 1, 305250, 1)]),
        ("none", [(633877, 7, 193820, 1), (805956, 9, 128543, 1), (674156, 9, 131657, 1)]),
    ],
)
def test_feature_bins_of_a_fixture_are_exact_integers(
    decode: DecodeDepth, video: list[tuple[int, ...]]
) -> None:
    bins = _bins(clip_bytes(CLIP_B), decode)

    assert [cell.index for cell in bins] == list(range(15))
    expected = [a + v for a, v in zip(AUDIO_FIRST_SECONDS, video, strict=True)]
    assert [_fields(cell) for cell in bins[:3]] == expected
    assert sum(cell.subframes for cell in bins) == 220  # AAC packets: 1024 samples at 16 kHz


@pytest.mark.parametrize("decode", ["all", "none"])
def test_a_frame_is_reported_once_it_arrived_not_with_the_next(decode: DecodeDepth) -> None:
    # The demux thread throttles its reports; a frame's packets come in one burst, and its
    # last ones were reported only when the next frame's bytes came (a frame late: on a
    # live stream every window waited for the following frame).
    frames = segments(clip_bytes(CLIP_RAMP), 5.0)
    reports: list[MediaProgress] = []
    seen = threading.Condition()

    def report(progress: MediaProgress) -> None:
        with seen:
            reports.append(progress)
            seen.notify_all()

    stream = MediaStream(
        "mp4", report, require_video=True, video_sample_fps=4.0, video_gap_ms=1000,
        decode=decode,
    )  # fmt: skip
    try:
        stream.feed(frames[0])
        stream.feed(frames[1])  # media up to 10.5 s; frames[2] is never sent
        with seen:
            arrived = seen.wait_for(lambda: sum(len(r.bins) for r in reports) >= 10, 30)
        assert arrived, f"frame 1 not reported: {[(r.media_ms, len(r.bins)) for r in reports]}"
        with seen:
            assert [cell.index for r in reports for cell in r.bins] == list(range(10))
            assert max(r.media_ms for r in reports) == 10500
            assert not any(r.finished for r in reports)
    finally:
        stream.finish(abort=True)
