"""Producer remux throughput vs ``ffmpeg -c copy``, and peak memory on a one-hour input.

Run: ``.venv/bin/python bench/producer_bench.py`` (installs Debian's ffmpeg with apt-get
when it is missing). Inputs are generated once under ``$PIPELINE_STATE_DIR/bench``:

* a 60 s 1280x720 30 fps H.264 + AAC file (PyAV, ~3 Mbit/s, GOP 2 s);
* a 60 s 320x240 H.264 + AAC file and a one-hour file made of it (``ffmpeg -stream_loop``).

Throughput: our chunker (demux + per-chunk fragmented-MP4 mux, each chunk written to a
file) against ffmpeg writing fragmented-MP4 segments of the same file with stream copy
(``-f segment``, ``-f hls -hls_segment_type fmp4``, one ``frag_keyframe`` file). Best of
N runs each, in this process's run; ratio = ffmpeg time / our time (>= 1.0: as fast).
Memory: ``ru_maxrss`` of ``inter1-pipeline produce --dry-run`` subprocesses on the
one-minute and the one-hour input (flat means the ratio stays near 1.0).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producers.chunker import Chunker  # noqa: E402 - after the path setup above
from producers.reader import MediaReader, ReaderOptions  # noqa: E402
from producers.sources import parse_source  # noqa: E402
from producers.synthetic import MediaSpec, write_media  # noqa: E402


def ensure_ffmpeg() -> str:
    """Path of ``ffmpeg``, installing Debian's package first when it is missing."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    print("ffmpeg not found: installing Debian's ffmpeg (apt-get)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "ffmpeg"], check=True, env=env)
    found = shutil.which("ffmpeg")
    if not found:
        raise SystemExit("ffmpeg is still missing after apt-get install")
    return found


def inputs(workdir: Path, ffmpeg: str) -> tuple[Path, Path, Path]:
    """(60 s 720p, 60 s low-res, 1 h low-res), generated once."""
    workdir.mkdir(parents=True, exist_ok=True)
    hd = workdir / "hd_60s.mp4"
    if not hd.exists():
        print("generating 60 s 1280x720 H.264+AAC input...", flush=True)
        write_media(
            hd,
            MediaSpec(duration_s=60, width=1280, height=720, fps=30, gop=60, bit_rate=3_000_000),
        )
    low = workdir / "low_60s.mp4"
    if not low.exists():
        write_media(low, MediaSpec(duration_s=60, width=320, height=240, fps=25, gop=50))
    hour = workdir / "low_3600s.mp4"
    if not hour.exists():
        print("making a one-hour input (ffmpeg -stream_loop, stream copy)...", flush=True)
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-stream_loop",
                "59",
                "-i",
                str(low),
                "-c",
                "copy",
                str(hour),
            ],
            check=True,
        )
    return hd, low, hour


def our_remux(source: Path, out_dir: Path) -> int:
    """Chunk ``source`` into 2 s fMP4 chunk files in ``out_dir``; returns the chunk count."""
    reader = MediaReader(parse_source(str(source)), ReaderOptions(), threading.Event())
    reader.open()
    try:
        templates = [t for t in (reader.video_template, reader.audio_template) if t is not None]
        chunker = Chunker(templates, target_duration_s=2.0, max_part_bytes=8 << 20)
        count = 0
        for chunk in chunker.chunks(reader.packets()):
            (out_dir / f"chunk{chunk.seq:05d}.mp4").write_bytes(b"".join(chunk.parts))
            count += 1
        return count
    finally:
        reader.close()


def ffmpeg_commands(ffmpeg: str, source: Path, out: Path) -> dict[str, list[str]]:
    base = [ffmpeg, "-v", "error", "-y", "-i", str(source), "-c", "copy"]
    frag = "frag_keyframe+empty_moov+default_base_moof"
    return {
        "segment": [
            *base,
            "-f",
            "segment",
            "-segment_time",
            "2",
            "-segment_format",
            "mp4",
            "-segment_format_options",
            f"movflags={frag}",
            str(out / "seg%05d.mp4"),
        ],
        "hls-fmp4": [
            *base,
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_segment_type",
            "fmp4",
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
            str(out / "hls%05d.m4s"),
            str(out / "index.m3u8"),
        ],
        "frag-file": [*base, "-movflags", frag, "-f", "mp4", str(out / "frag.mp4")],
    }


def _timed_ours(source: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one in-process remux."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    our_remux(source, out)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _timed_command(command: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one subprocess run."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed with {status}")
    return wall, usage.ru_utime + usage.ru_stime


def _ffmpeg_contender(
    ffmpeg: str, source: Path, name: str
) -> Callable[[Path], tuple[float, float]]:
    def run(out: Path) -> tuple[float, float]:
        return _timed_command(ffmpeg_commands(ffmpeg, source, out)[name])

    return run


def race(
    runs: int, contenders: dict[str, Callable[[Path], tuple[float, float]]]
) -> dict[str, tuple[float, float]]:
    """Round-robin ``runs`` rounds (fair under a drifting machine load); best wall and CPU each."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(runs):
        for name, contender in contenders.items():
            with tempfile.TemporaryDirectory() as tmp:
                wall, cpu = contender(Path(tmp))
            old = best.get(name, (wall, cpu))
            best[name] = (min(old[0], wall), min(old[1], cpu))
    return best


def peak_rss_mib(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one subprocess run."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed with {status}")
    return usage.ru_maxrss / 1024, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per contender")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("PIPELINE_STATE_DIR") or ROOT / ".stack") / "bench",
    )
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    ffmpeg = ensure_ffmpeg()
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True)
    hd, low, hour = inputs(args.workdir, ffmpeg)
    print(f"ffmpeg: {version.stdout.splitlines()[0]}")
    print(f"input: {hd} ({hd.stat().st_size / 1048576:.1f} MiB, 60 s 1280x720 30 fps)")

    chunks = our_remux(hd, Path(tempfile.mkdtemp()))  # warm-up (imports, page cache)
    contenders: dict[str, Callable[[Path], tuple[float, float]]] = {
        "ours": lambda out: _timed_ours(hd, out)
    }
    for name in ffmpeg_commands(ffmpeg, hd, Path("/")):
        contenders[f"ffmpeg {name}"] = _ffmpeg_contender(ffmpeg, hd, name)
    best = race(args.runs, contenders)
    ours_wall, ours_cpu = best.pop("ours")
    print(
        f"ours (PyAV chunker, {chunks} fMP4 chunk files): {ours_wall * 1000:.0f} ms wall, "
        f"{ours_cpu * 1000:.0f} ms CPU ({60 / ours_wall:.0f}× real time)"
    )
    for name, (wall, cpu) in best.items():
        print(
            f"{name:16s} -c copy: {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU -> "
            f"ratio ffmpeg/ours: wall {wall / ours_wall:.2f}, CPU {cpu / ours_cpu:.2f}"
        )
    cli = [
        str(Path(sys.executable).parent / "inter1-pipeline"),
        "produce",
        "--dry-run",
        "--no-progress",
    ]
    rss_cli, wall_cli = peak_rss_mib([*cli, str(hd)])
    print(
        "whole CLI (startup + Avro records, no Kafka) on the 720p file: "
        f"{wall_cli * 1000:.0f} ms, peak RSS {rss_cli:.0f} MiB"
    )
    if args.skip_memory:
        return
    minute, _ = peak_rss_mib([*cli, str(low)])
    one_hour, wall = peak_rss_mib([*cli, str(hour)])
    looped, _ = peak_rss_mib([*cli, "--loop", "60", str(low)])
    with tempfile.TemporaryDirectory() as tmp:
        ff_minute, _ = peak_rss_mib(ffmpeg_commands(ffmpeg, low, Path(tmp))["segment"])
        ff_hour, _ = peak_rss_mib(ffmpeg_commands(ffmpeg, hour, Path(tmp))["segment"])
    print(f"peak RSS, 1-minute 320x240 input:          {minute:.0f} MiB")
    print(
        f"peak RSS, 1-hour 320x240 input:            {one_hour:.0f} MiB "
        f"(ratio {one_hour / minute:.2f}; the hour ingested in {wall:.1f} s, "
        f"{3600 / wall:.0f}× real time)"
    )
    print(
        f"peak RSS, 1-minute input --loop 60 (1 h):  {looped:.0f} MiB "
        f"(ratio {looped / minute:.2f}; the 1-hour file's extra is its MP4 sample index, "
        "read once at open)"
    )
    print(
        f"ffmpeg -f segment peak RSS, 1 min vs 1 h:  {ff_minute:.0f} vs {ff_hour:.0f} MiB "
        "(baseline; the ffmpeg binary's own footprint dominates)"
    )


if __name__ == "__main__":
    main()
