"""Codec encode/decode rate against raw fastavro schemaless on the same records.

Run: ``.venv/bin/python bench/codec_bench.py`` (``--rounds``, ``--chunk-kib``,
``--no-confluent``; about 30 s).

Baseline: ``fastavro.schemaless_writer`` / ``schemaless_reader`` with the same parsed schema
and the same reader options the codec uses (``return_record_name`` so the payload union's
branch survives), into and out of a ``BytesIO``. The codec adds the single-object framing
(10-byte header) or the Confluent framing (5-byte header; the registry is asked once per
subject, before timing), the header lookup and the checks. Each case is calibrated to run
at least 25 ms; each figure is the best of ``--rounds`` interleaved runs, so a busy
neighbour on a shared machine hurts both sides alike.
Target (DESIGN.md): codec rate / raw rate >= 0.9.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from schemas.catalog import default_catalog
from schemas.codec import Codec
from schemas.examples import example_chunk, example_inter1_events
from schemas.registry_client import RegistryClient

_REGISTRY_SERVER = Path(__file__).resolve().parent.parent / "tests/schemas/registry_server.py"


def _registry_server() -> Any:
    """The tests' Confluent-compatible registry server (registration only happens once)."""
    spec = importlib.util.spec_from_file_location("bench_registry_server", _REGISTRY_SERVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module.RegistryServer()


_MIN_RUN_S = 0.025  # each timed run lasts at least this long (calibrated per case)


def _rate(fn: Callable[[int], int], passes: int) -> float:
    start = time.perf_counter()
    count = fn(passes)
    return count / (time.perf_counter() - start)


def _calibrate(fn: Callable[[int], int]) -> int:
    passes = 1
    while True:
        start = time.perf_counter()
        fn(passes)
        if time.perf_counter() - start >= _MIN_RUN_S:
            return passes
        passes *= 2


def _bench(
    name: str, datums: list[dict[str, Any]], *, rounds: int, codec: Codec, label: str
) -> list[float]:
    parsed = default_catalog().current(name).parsed
    topic = "bench"
    framed = [codec.encode(name, d, topic=topic) for d in datums]
    header = 10 if codec.registry is None else 5
    bodies = [f[header:] for f in framed]
    read_raw = schemaless_reader
    return_name = True

    def raw_encode(passes: int) -> int:
        for _ in range(passes):
            for d in datums:
                out = io.BytesIO()
                schemaless_writer(out, parsed, d)
                out.getvalue()
        return passes * len(datums)

    def codec_encode(passes: int) -> int:
        encode = codec.encode
        for _ in range(passes):
            for d in datums:
                encode(name, d, topic=topic)
        return passes * len(datums)

    def raw_decode(passes: int) -> int:
        for _ in range(passes):
            for b in bodies:
                read_raw(
                    io.BytesIO(b),
                    parsed,
                    None,
                    return_record_name=return_name,
                    return_record_name_override=return_name,
                )
        return passes * len(bodies)

    def codec_decode(passes: int) -> int:
        decode = codec.decode
        for _ in range(passes):
            for f in framed:
                decode(f)
        return passes * len(framed)

    cases = [raw_encode, codec_encode, raw_decode, codec_decode]
    passes = [_calibrate(fn) for fn in cases]
    results: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):  # interleave, so drift on the machine hits every case alike
        for fn, n, timings in zip(cases, passes, results, strict=True):
            timings.append(_rate(fn, n))
    best = [max(t) for t in results]
    size = sum(len(f) for f in framed) / len(framed)
    print(f"\n{name} ({label}): {len(datums)} distinct records, mean {size:,.0f} bytes framed")
    print(
        f"  encode  raw fastavro {best[0]:>12,.0f} rec/s   codec {best[1]:>12,.0f} rec/s   "
        f"ratio {best[1] / best[0]:.3f}"
    )
    print(
        f"  decode  raw fastavro {best[2]:>12,.0f} rec/s   codec {best[3]:>12,.0f} rec/s   "
        f"ratio {best[3] / best[2]:.3f}"
    )
    return [best[1] / best[0], best[3] / best[2]]


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds (best kept)")
    parser.add_argument("--chunk-kib", type=int, default=512, help="VideoChunk payload size")
    parser.add_argument(
        "--confluent",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the Confluent framing (against the tests' small registry server)",
    )
    args = parser.parse_args()

    workloads = [
        ("Inter1Event", example_inter1_events()),
        ("VideoChunk", [example_chunk(seq, args.chunk_kib * 1024) for seq in range(4)]),
    ]
    codecs: list[tuple[str, Codec]] = [("single-object", Codec())]
    server = None
    if args.confluent:
        server = _registry_server()
        server.start()
        codecs.append(("Confluent", Codec(registry=RegistryClient(server.url))))
    ratios: list[float] = []
    try:
        for label, codec in codecs:
            for name, datums in workloads:
                ratios += _bench(name, datums, rounds=args.rounds, codec=codec, label=label)
    finally:
        for _, codec in codecs:
            if codec.registry is not None:
                codec.registry.close()
        if server is not None:
            server.stop()
    worst = min(ratios)
    verdict = "meets" if worst >= 0.9 else "misses"
    print(f"\nworst codec/raw ratio {worst:.3f} ({verdict} the 0.9 target)")


if __name__ == "__main__":
    main()
