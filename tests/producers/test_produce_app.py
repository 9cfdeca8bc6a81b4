"""The producer run without a broker (dry-run publisher): record sizes, ids, stop before start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from producers.app import ProduceOptions, exit_code, produce
from producers.exceptions import ProducerError
from producers.publisher import DryRunPublisher
from producers.reader import ReaderOptions

MediaFactory = Callable[[str], Path]


async def test_every_encoded_record_fits_the_record_limit(media: MediaFactory) -> None:
    publisher = DryRunPublisher()
    limit = 40 * 1024
    options = ProduceOptions(
        sources=(str(media("h264_longgop.mp4")),),
        session_id="a-session-id-" + "x" * 200,
        max_record_bytes=limit,
        progress=False,
    )

    report = await produce(options, publisher=publisher)

    assert exit_code(report) == 0
    result = report.results[0]
    assert (result.reason, result.totals.chunks, result.totals.media_seconds) == (
        "completed",
        2,
        6.0,
    )
    assert publisher.largest <= limit
    # started + ended + more records than chunks (the GOPs were split)
    assert publisher.records > 2 + 2


async def test_session_ids_are_unique_per_source(media: MediaFactory) -> None:
    path = str(media("h264_silent.mp4"))
    report = await produce(
        ProduceOptions(sources=(path, path, path), progress=False), publisher=DryRunPublisher()
    )

    assert [r.reason for r in report.results] == ["completed"] * 3
    assert len({r.session_id for r in report.results}) == 3


async def test_session_id_needs_one_source(media: MediaFactory) -> None:
    path = str(media("h264_silent.mp4"))
    with pytest.raises(ProducerError, match="--session-id needs exactly one source"):
        await produce(
            ProduceOptions(sources=(path, path), session_id="s"), publisher=DryRunPublisher()
        )


async def test_stop_before_start_publishes_nothing(media: MediaFactory) -> None:
    stop = asyncio.Event()
    stop.set()
    publisher = DryRunPublisher()

    report = await produce(
        ProduceOptions(
            sources=(str(media("h264_aac.mp4")),), reader=ReaderOptions(), progress=False
        ),
        publisher=publisher,
        stop=stop,
    )

    assert (report.results[0].reason, report.results[0].error) == (None, None)
    assert publisher.records == 0
