"""``inter1-pipeline produce``: chunk video sources and publish them to Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from runtime.errors import ExitCode

__all__ = ["produce"]


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = val
    return labels


def _read_sources_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--sources-file"
        ) from exc
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@click.command(context_settings={"show_default": True})
@click.argument("sources", nargs=-1)
@click.option(
    "--sources-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File with one source per line (# comments allowed), in addition to SOURCES.",
)
@click.option("--realtime", is_flag=True, help="Pace files to the wall clock, like a live source.")
@click.option(
    "--loop",
    "loop",
    type=click.IntRange(min=0),
    default=1,
    help="Play each file this many times in total (0 = forever); media time stays continuous.",
)
@click.option(
    "--session-id", help="Session id for a single source (default: a new UUID per source)."
)
@click.option("--tenant", help="Tenant the sessions are billed to.")
@click.option("--app", "app_name", help="Application name recorded on the sessions.")
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="Session label (repeatable)."
)
@click.option(
    "--chunk-duration",
    "chunk_duration_s",
    type=click.FloatRange(min=0.1, max=60.0),
    default=2.0,
    help="Target media seconds per chunk (chunks are cut at the first keyframe past it).",
)
@click.option(
    "--transcode", is_flag=True, help="Re-encode to H.264 + AAC even when stream copy would do."
)
@click.option(
    "--max-record-bytes",
    type=click.IntRange(min=16384),
    default=None,
    help="Largest chunk record (default: $KAFKA_MAX_RECORD_BYTES, 8 MiB); bigger chunks are split.",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=32,
    help="Unacknowledged records allowed.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=15.0,
    help="Network open/read timeout in seconds.",
)
@click.option("--dry-run", is_flag=True, help="Read and chunk the sources but publish nothing.")
@click.option(
    "--progress/--no-progress", default=None, help="Progress bars (default: on a terminal)."
)
def produce(  # noqa: PLR0917 - click passes every option as a positional parameter
    sources: tuple[str, ...],
    sources_file: Path | None,
    realtime: bool,
    loop: int,
    session_id: str | None,
    tenant: str | None,
    app_name: str | None,
    labels: tuple[str, ...],
    chunk_duration_s: float,
    transcode: bool,
    max_record_bytes: int | None,
    max_in_flight: int,
    timeout_s: float,
    dry_run: bool,
    progress: bool | None,
) -> None:
    """Chunk video SOURCES into keyframe-aligned fragmented-MP4 records and publish them.

    A SOURCE is a file (mp4, mov, mkv, webm, ts, avi...), a URL (rtsp://, rtmp://, srt://,
    http(s)://, .m3u8 for HLS), a capture device (/dev/video0) or - for stdin. Each source
    becomes one session on the chunk topic, keyed by its session id. Exits 0 only when
    every source was read to its end and published.
    """
    from inter1_pipeline.kafka_address import kafka_settings
    from producers.app import ProduceOptions, exit_code
    from producers.app import produce as run_produce
    from producers.progress import summary_line
    from producers.reader import ReaderOptions
    from producers.records import SessionMeta

    all_sources = list(sources)
    if sources_file is not None:
        all_sources += _read_sources_file(sources_file)
    if not all_sources:
        raise click.UsageError("give at least one SOURCE (or --sources-file)")
    if session_id is not None and len(all_sources) != 1:
        raise click.UsageError("--session-id needs exactly one source")
    options = ProduceOptions(
        sources=tuple(all_sources),
        reader=ReaderOptions(
            realtime=realtime,
            loop=loop,
            transcode=transcode,
            chunk_duration_s=chunk_duration_s,
            timeout_s=timeout_s,
        ),
        session_id=session_id,
        meta=SessionMeta(tenant=tenant, app=app_name, labels=_labels(labels)),
        max_record_bytes=max_record_bytes,
        max_in_flight=max_in_flight,
        dry_run=dry_run,
        progress=progress,
        kafka=None if dry_run else kafka_settings(),
    )
    report = asyncio.run(run_produce(options))
    for result in report.results:
        if result.error is not None:
            click.echo(f"error: {result.error}", err=True)
    click.echo(summary_line(report.results, report.elapsed_s))
    code = exit_code(report)
    if report.signal_name is not None:
        click.echo(f"stopped by {report.signal_name}", err=True)
    if code != ExitCode.OK:
        raise click.exceptions.Exit(code)
