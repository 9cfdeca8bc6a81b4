"""The producer spool's cost against the plainest durable log: length-prefixed appends + fsync.

Both write the same records (``--records`` chunks of ``--kib`` KiB, one durable append each:
what a live session does per chunk during a Kafka outage), alternating rounds in the same
run, to the same file system (``--dir``, default a temporary directory), and read them back.
Prints medians and the ratio spool / baseline (lower is better; 1.0 = as cheap as the log).

    .venv/bin/python bench/spool_bench.py --records 200 --kib 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

from producers.spool import Spool, SpoolBudget, SpoolRecord, spool_file


def _baseline(directory: Path, values: list[bytes]) -> tuple[float, float]:
    path = directory / "log.bin"
    started = time.perf_counter()
    with path.open("ab") as log:
        for value in values:
            log.write(struct.pack(">I", len(value)) + value)
            log.flush()
            os.fsync(log.fileno())
    written = time.perf_counter() - started
    started = time.perf_counter()
    data = path.read_bytes()
    offset, count = 0, 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        offset += 4 + size
        count += 1
    assert count == len(values)
    read = time.perf_counter() - started
    path.unlink()
    return written, read


def _spool(directory: Path, values: list[bytes]) -> tuple[float, float]:
    spool = Spool(spool_file(directory, "bench"), "bench", SpoolBudget(1 << 40))
    spool.open()
    started = time.perf_counter()
    for seq, value in enumerate(values):
        spool.append(
            [SpoolRecord("chunks", b"bench", value, "chunk", seq, 2.0 * seq, 2.0 * seq + 2)]
        )
    written = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    while entries := spool.head(8):
        count += len(entries)
        spool.remove(e.id for e in entries)
    assert count == len(values)
    read = time.perf_counter() - started
    spool.close()
    return written, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--kib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    values = [os.urandom(args.kib * 1024) for _ in range(args.records)]
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "spool": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for _ in range(args.rounds):
            results["baseline"].append(_baseline(Path(tmp), values))
            results["spool"].append(_spool(Path(tmp), values))
    mib = args.records * args.kib / 1024
    for name, runs in results.items():
        write = statistics.median(r[0] for r in runs)
        read = statistics.median(r[1] for r in runs)
        print(
            f"{name:9s} append+fsync {write:6.3f} s ({mib / write:7.1f} MiB/s, "
            f"{1000 * write / args.records:5.2f} ms/record); read back {read:6.3f} s"
        )
    ratio = statistics.median(r[0] for r in results["spool"]) / statistics.median(
        r[0] for r in results["baseline"]
    )
    print(f"ratio spool / baseline (append+fsync): {ratio:.2f}")


if __name__ == "__main__":
    main()
