"""Producer remux against ``ffmpeg -c copy -f segment``, whole process against whole process.

Run: ``.venv/bin/python bench/producer_bench.py [--runs N]`` (installs Debian's ffmpeg with
apt-get when it is missing). Inputs are generated once under ``$PIPELINE_STATE_DIR/bench``
(never committed): a 1 s and a 60 s 320x240 H.264 + AAC file (GOP 2 s; the 1 s one GOP 1 s),
a one-hour file made of the 60 s one (``ffmpeg -stream_loop``, stream copy) and a 60 s
1280x720 30 fps file (~3 Mbit/s, GOP 2 s).

The two contenders do the same job on the same file:

* ours: ``inter1-pipeline produce --dry-run --no-progress FILE`` (demux, keyframe-aligned
  2 s fragmented-MP4 chunks, Avro chunk records; nothing published);
* ffmpeg: ``ffmpeg -i FILE -c copy -f segment -segment_time 2`` writing fragmented-MP4
  segments (``frag_keyframe+empty_moov+default_base_moof``) into a tmpfs directory when
  ``/dev/shm`` exists (so neither side pays for a disk).

Two reference contenders bound what any PyAV-based producer can reach (bare ``python -c``
scripts importing only PyAV; no chunk logic, records, settings or logging):

* the PyAV remux: demux the file and mux every packet into one in-memory fragmented MP4;
* the PyAV demux floor: demux the file without FFmpeg's parsers (as the producer reads an
  MP4 of H.264/AAC) and join each GOP's packet bytes into one ``bytes`` (the least output a
  chunk needs: its payload in one piece). Every PyAV producer pays at least this: a Python
  ``Packet`` per packet and one copy of the payload.

Bytecode: the project's modules (and the ``--before`` tree's) are compiled with
``compileall`` before the race, as an installed package is (``pip install`` compiles; an
editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would otherwise recompile every
module on every run, ~0.05 s a start that no user of an install pays).

``--before DIR`` adds a fourth contender: the producer from another source tree (e.g.
``git archive <commit> | tar -x -C DIR``), run the same way with ``PYTHONPATH=DIR``, so a
change is measured before and after in the same rounds on a shared machine.

Each round runs every (input, contender) pair once, rotating which contender goes
first; figures are medians over the rounds. CPU is user+sys of the child (``os.wait4``),
peak RSS its ``ru_maxrss``.

Two views:

1. whole process: start-up included, the figure a user sees; ratio = ffmpeg CPU / our CPU
   (>= 1.0: we use no more CPU than ffmpeg for the job);
2. steady state: media seconds per CPU second with each tool's start-up taken out, by
   subtracting its run on the 1 s input (measured in the same rounds) from its run on
   the long input; ratio = our rate / ffmpeg's rate.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FRAG = "frag_keyframe+empty_moov+default_base_moof"
_CHUNKS = re.compile(r"(\d+) chunks")
_PACKAGES = ("inter1_pipeline", "runtime", "chunks", "producers", "schemas", "workers", "sinks")


@dataclass(frozen=True)
class Input:
    """One benchmark input file and its media length."""

    label: str
    path: Path
    media_s: float


@dataclass(frozen=True)
class Run:
    """One child process: wall and CPU seconds, peak RSS in MiB, chunks/segments written."""

    wall_s: float
    cpu_s: float
    rss_mib: float
    pieces: int


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


def _generate(path: Path, spec: str) -> None:
    """Write ``MediaSpec(<spec>)`` to ``path`` in a child process: this process stays small,
    because a child's ``ru_maxrss`` starts from its parent's resident size at the fork."""
    if path.exists():
        return
    print(f"generating {path.name}...", flush=True)
    code = (
        "import sys; from pathlib import Path; "
        "from producers.synthetic import MediaSpec, write_media; "
        f"write_media(Path(sys.argv[1]), MediaSpec({spec}))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=ROOT)


def inputs(workdir: Path, ffmpeg: str) -> list[Input]:
    """The benchmark inputs, shortest first (the first one measures start-up)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tiny, low, hd = workdir / "low_1s.mp4", workdir / "low_60s.mp4", workdir / "hd_60s.mp4"
    _generate(tiny, "duration_s=1, width=320, height=240, fps=25, gop=25")
    _generate(low, "duration_s=60, width=320, height=240, fps=25, gop=50")
    _generate(hd, "duration_s=60, width=1280, height=720, fps=30, gop=60, bit_rate=3_000_000")
    hour = workdir / "low_3600s.mp4"
    if not hour.exists():
        print("making a one-hour input (ffmpeg -stream_loop, stream copy)...", flush=True)
        loop = [ffmpeg, "-v", "error", "-y", "-stream_loop", "59", "-i", str(low)]
        subprocess.run([*loop, "-c", "copy", str(hour)], check=True)
    return [
        Input("1 s 320x240", tiny, 1.0),
        Input("60 s 320x240", low, 60.0),
        Input("60 s 1280x720", hd, 60.0),
        Input("1 h 320x240", hour, 3600.0),
    ]


def ours_command(source: Path) -> list[str]:
    """The producer's whole job on ``source``, publishing nothing."""
    cli = Path(sys.executable).parent / "inter1-pipeline"
    return [str(cli), "produce", "--dry-run", "--no-progress", str(source)]


def ffmpeg_command(ffmpeg: str, source: Path, out: Path) -> list[str]:
    """ffmpeg's stream copy of ``source`` into 2 s fragmented-MP4 segment files in ``out``."""
    return [
        *(ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(source), "-c", "copy"),
        *("-f", "segment", "-segment_time", "2", "-segment_format", "mp4"),
        *("-segment_format_options", f"movflags={_FRAG}", str(out / "seg%05d.mp4")),
    ]


_FLOOR = """
import io, sys, av
with av.open(sys.argv[1]) as source:
    streams = [*source.streams.video[:1], *source.streams.audio[:1]]
    sink = io.BytesIO()
    options = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
    with av.open(sink, "w", format="mp4", options=options) as out:
        mapped = {s.index: out.add_stream_from_template(s, opaque=True) for s in streams}
        for packet in source.demux(streams):
            if packet.dts is None:
                continue
            packet.stream = mapped[packet.stream_index]
            out.mux_one(packet)
            if sink.tell() > 1 << 24:
                sink.seek(0)
                sink.truncate()
"""


_DEMUX_FLOOR = """
import sys, av
with av.open(sys.argv[1], options={"fflags": "+noparse+nofillin"}) as source:
    streams = [*source.streams.video[:1], *source.streams.audio[:1]]
    video = streams[0].index
    gop = []
    for packet in source.demux(streams):
        if packet.stream_index == video and packet.is_keyframe and gop:
            payload = b"".join(gop)
            gop = []
        gop.append(packet)
    payload = b"".join(gop)
"""


def floor_command(source: Path) -> list[str]:
    """The PyAV remux: demux ``source`` and mux every packet into one in-memory fMP4."""
    return [sys.executable, "-c", _FLOOR, str(source)]


def demux_floor_command(source: Path) -> list[str]:
    """The PyAV demux floor: demux ``source``, join each GOP's packet bytes once."""
    return [sys.executable, "-c", _DEMUX_FLOOR, str(source)]


def compile_tree(tree: Path) -> None:
    """Compile the project's packages in ``tree`` to bytecode, as an install does."""
    packages = [str(tree / name) for name in _PACKAGES if (tree / name).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)


def measure(command: list[str], scratch: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to its end; its output goes to files in ``scratch``."""
    with open(scratch / "stdout", "w+b") as out, open(scratch / "stderr", "w+b") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
            raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n{tail}")
        out.seek(0)
        found = _CHUNKS.search(out.read().decode(errors="replace"))
    pieces = int(found.group(1)) if found else len(list(scratch.glob("seg*.mp4")))
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, pieces)


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def race(
    ffmpeg: str, files: list[Input], rounds: int, before: Path | None = None
) -> dict[tuple[str, str], list[Run]]:
    """``rounds`` rounds over every (input, contender), rotating who goes first."""
    runs: dict[tuple[str, str], list[Run]] = {}
    contenders = ["ours", "ffmpeg", "floor", "demux", *(["before"] if before else [])]
    before_env = {**os.environ, "PYTHONPATH": str(before)} if before else None
    for number in range(rounds):
        print(f"round {number + 1}/{rounds}...", file=sys.stderr, flush=True)
        shift = number % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        for item in files:
            for who in order:
                with tempfile.TemporaryDirectory(dir=_scratch_root()) as tmp:
                    scratch = Path(tmp)
                    env = None
                    if who in {"ours", "before"}:
                        command = ours_command(item.path)
                        env = before_env if who == "before" else None
                    elif who == "ffmpeg":
                        command = ffmpeg_command(ffmpeg, item.path, scratch)
                    elif who == "floor":
                        command = floor_command(item.path)
                    else:
                        command = demux_floor_command(item.path)
                    run = measure(command, scratch, env)
                    runs.setdefault((item.label, who), []).append(run)
    return runs


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.wall_s for r in runs),
        statistics.median(r.cpu_s for r in runs),
        statistics.median(r.rss_mib for r in runs),
        runs[0].pieces,
    )


def _rate(media_s: float, cpu_s: float) -> str:
    return f"{media_s / cpu_s:.0f}" if cpu_s > 0 else "n/a"


def report(files: list[Input], runs: dict[tuple[str, str], list[Run]]) -> None:
    """Print the whole-process and the steady-state tables."""
    med = {key: _median(value) for key, value in runs.items()}
    print("\nwhole process, start-up included (medians; CPU = user+sys of the child)")
    print(
        f"{'input':15s} {'pieces ours/ff':>14s} | {'ours wall':>9s} {'CPU':>6s} {'RSS':>7s} | "
        f"{'ffmpeg wall':>11s} {'CPU':>6s} {'RSS':>7s} | {'ffmpeg/ours CPU':>15s} {'wall':>5s} | "
        f"{'PyAV remux CPU':>14s} {'ff/remux':>8s} | {'demux floor CPU':>15s} {'ff/floor':>8s}"
    )
    for item in files:
        ours, ff, floor, demux = (
            med[item.label, who] for who in ("ours", "ffmpeg", "floor", "demux")
        )
        print(
            f"{item.label:15s} {f'{ours.pieces}/{ff.pieces}':>14s} | "
            f"{ours.wall_s:8.3f}s {ours.cpu_s:5.3f}s {ours.rss_mib:4.0f} MiB | "
            f"{ff.wall_s:10.3f}s {ff.cpu_s:5.3f}s {ff.rss_mib:4.0f} MiB | "
            f"{ff.cpu_s / ours.cpu_s:15.2f} {ff.wall_s / ours.wall_s:5.2f} | "
            f"{floor.cpu_s:13.3f}s {ff.cpu_s / floor.cpu_s:8.2f} | "
            f"{demux.cpu_s:14.3f}s {ff.cpu_s / demux.cpu_s:8.2f}"
        )
    base = files[0]
    print(
        f"\nsteady state: media s per CPU s, start-up (each tool's run on the {base.label} "
        "input) subtracted; the short inputs' figures are dominated by noise"
    )
    header = ("ours", "ffmpeg", "ours/ffmpeg", "PyAV remux", "demux floor")
    print(f"{'input':15s} | " + " | ".join(f"{name:>11s}" for name in header))
    for item in files[1:]:
        media_s = item.media_s - base.media_s
        cpu = {
            who: med[item.label, who].cpu_s - med[base.label, who].cpu_s
            for who in ("ours", "ffmpeg", "floor", "demux")
        }
        ratio = f"{cpu['ffmpeg'] / cpu['ours']:.2f}" if min(cpu.values()) > 0 else "n/a"
        print(
            f"{item.label:15s} | {_rate(media_s, cpu['ours']):>11s} | "
            f"{_rate(media_s, cpu['ffmpeg']):>11s} | {ratio:>11s} | "
            f"{_rate(media_s, cpu['floor']):>11s} | {_rate(media_s, cpu['demux']):>11s}"
        )
    if (base.label, "before") in med:
        print("\nbefore (--before tree) vs now, same rounds: CPU, ffmpeg/before, steady state")
        for item in files:
            then, now, ff = (med[item.label, who] for who in ("before", "ours", "ffmpeg"))
            steady = ""
            if item is not base:
                media_s = item.media_s - base.media_s
                spent = then.cpu_s - med[base.label, "before"].cpu_s
                steady = f" | steady {_rate(media_s, spent)} media s per CPU s"
            print(
                f"{item.label:15s} before {then.cpu_s:5.3f}s ({ff.cpu_s / then.cpu_s:.2f}) "
                f"now {now.cpu_s:5.3f}s ({ff.cpu_s / now.cpu_s:.2f}), "
                f"RSS {then.rss_mib:.0f} -> {now.rss_mib:.0f} MiB{steady}"
            )
    ours, ff, floor, demux = (med[base.label, who] for who in ("ours", "ffmpeg", "floor", "demux"))
    print(
        f"start-up ({base.label} run): ours {ours.cpu_s * 1000:.0f} ms CPU, "
        f"{ours.wall_s * 1000:.0f} ms wall; ffmpeg {ff.cpu_s * 1000:.0f} ms CPU, "
        f"{ff.wall_s * 1000:.0f} ms wall; PyAV remux {floor.cpu_s * 1000:.0f} ms CPU, "
        f"demux floor {demux.cpu_s * 1000:.0f} ms CPU"
    )


def startup(rounds: int) -> None:
    """Median CPU/wall of the command's help screens (the start-up that every command pays)."""
    cli = str(Path(sys.executable).parent / "inter1-pipeline")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "inter1-pipeline --help": [cli, "--help"],
        "inter1-pipeline produce --help": [cli, "produce", "--help"],
    }
    with tempfile.TemporaryDirectory(dir=_scratch_root()) as tmp:
        timed = {
            name: [measure(command, Path(tmp)) for _ in range(rounds)]
            for name, command in commands.items()
        }
    for name, samples in timed.items():
        m = _median(samples)
        print(f"{name:31s} {m.cpu_s * 1000:4.0f} ms CPU, {m.wall_s * 1000:4.0f} ms wall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (runs per contender/input)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("PIPELINE_STATE_DIR") or ROOT / ".stack") / "bench",
    )
    parser.add_argument("--skip-hour", action="store_true", help="leave out the 1 h input")
    parser.add_argument(
        "--before",
        type=Path,
        help="source tree of an earlier producer, raced in the same rounds (PYTHONPATH)",
    )
    args = parser.parse_args()
    ffmpeg = ensure_ffmpeg()
    files = inputs(args.workdir, ffmpeg)
    for tree in (ROOT, *([args.before] if args.before else [])):
        compile_tree(tree.resolve())
    if args.skip_hour:
        files = files[:-1]
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True)
    print(f"ffmpeg: {version.stdout.splitlines()[0]}")
    print(f"ffmpeg segments into: {_scratch_root() or tempfile.gettempdir()}")
    print(f"rounds: {args.runs}, contenders alternating; {os.cpu_count()} CPUs, load shared")
    runs = race(ffmpeg, files, args.runs, args.before.resolve() if args.before else None)
    report(files, runs)
    startup(args.runs)


if __name__ == "__main__":
    main()
