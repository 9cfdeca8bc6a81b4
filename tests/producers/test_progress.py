"""Progress bars (on a terminal only) and the summary line."""

from __future__ import annotations

import io

from producers.delivery import DeliveryStats
from producers.exceptions import SourceNotFoundError
from producers.probe import MediaInfo
from producers.progress import ProgressBars, summary_line
from producers.records import SessionTotals
from producers.session import SessionResult

INFO = MediaInfo("h264", "aac", 160, 120, 25.0, False, False, 'video/mp4; codecs="avc1"', 4.0)


def test_bar_shows_media_seconds_and_rate() -> None:
    out = io.StringIO()
    bars = ProgressBars(enabled=True, stream=out)
    bars.started("s1", "clip.mp4", INFO)
    bars.progress("s1", 2.0)
    bars.progress("s1", 4.0)
    bars.close()

    last = out.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("clip.mp4: 100%|")
    assert "| 4.0/4.0 s media " in last
    assert last.endswith("× real time")


def test_no_bar_without_terminal_or_duration() -> None:
    out = io.StringIO()
    bars = ProgressBars(stream=out)  # StringIO is not a terminal
    bars.started("s1", "clip.mp4", INFO)
    bars.progress("s1", 2.0)
    live = ProgressBars(enabled=True, stream=out)
    live.started("s2", "rtsp://cam", _live())
    live.progress("s2", 2.0)
    bars.close()
    live.close()
    assert out.getvalue() == ""


def _live() -> MediaInfo:
    return MediaInfo("h264", None, 160, 120, 25.0, False, False, 'video/mp4; codecs="avc1"', None)


def test_summary_line() -> None:
    done = SessionResult(
        "a.mp4", "s1", reason="completed", totals=SessionTotals(3, 6.0, 3 * 1048576)
    )
    stopped = SessionResult("b.mp4", "s2", reason="stopped", totals=SessionTotals(1, 2.0, 1048576))
    missing = SessionResult("c.mp4", "s3", error=SourceNotFoundError("c.mp4", "no such file"))

    line = summary_line([done, stopped, missing], 2.0)

    assert line == (
        "3 sources: 1 completed, 1 failed to open, 1 stopped; 4 chunks, 8.0 media s, "
        "4.0 MiB in 2.0 s (4.0× real time)"
    )


def test_summary_line_tells_what_a_kafka_outage_did() -> None:
    spooled = SessionResult(
        "rtsp://cam1/x",
        "s1",
        reason="completed",
        totals=SessionTotals(5, 10.0, 1048576),
        delivery=DeliveryStats(outages=1, spooled_chunks=4),
    )
    dropped = SessionResult(
        "rtsp://cam2/x",
        "s2",
        reason="stopped",
        totals=SessionTotals(2, 4.0, 1048576),
        delivery=DeliveryStats(
            outages=1, spooled_chunks=1, dropped_chunks=3, dropped_media_s=6.0, left_in_spool=2
        ),
    )
    plain = summary_line([spooled], 1.0)
    assert plain.endswith("(10.0× real time); Kafka outage: 4 chunks spooled, 0 dropped")
    assert summary_line([spooled, dropped], 1.0).endswith(
        "; Kafka outage: 5 chunks spooled, 3 dropped (6.0 media s), "
        "2 records left in spool for the next start"
    )
    quiet = SessionResult("a.mp4", "s3", reason="completed", totals=SessionTotals(1, 2.0, 0))
    assert "Kafka outage" not in summary_line([quiet], 1.0)
