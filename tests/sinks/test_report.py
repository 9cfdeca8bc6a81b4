"""The session report: rendered, opened in headless Chromium and screenshotted; the figures
on the page are the figures in the tables."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from sinks.warehouse import open_warehouse

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


class Tables(HTMLParser):
    """Every ``<table id=...>`` of a page as rows of cell texts (header first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.svgs = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "table":
            self._table = named.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self.svgs += 1
        if tag in ("script", "img", "link") and (named.get("src") or named.get("href")):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_report_renders_in_chromium_and_matches_the_tables(
    sample_store: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    helpers = request.getfixturevalue("sink_helpers")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: `make setup` installs the Debian package"
    output = tmp_path / "report.html"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOG_FORMAT": "json"}
    env["CLICKHOUSE_URL"] = f"chdb://{sample_store.store_dir}"
    result = helpers.run_cli("report", "sess-a", "--output", str(output), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {output} and {output.with_suffix('.png')}\n"
    page = output.read_text()
    parsed = Tables()
    parsed.feed(page)
    assert parsed.svgs == 1  # the plots, inline
    assert parsed.external == []  # self-contained: no external script, image or stylesheet
    for title in (
        "Engagement over time",
        "Signal intervals (hatched: not ended by signal.ended)",
        "Quality dimensions (latest overall scores, 0-100)",
        "Quality timeline (slice midpoints)",
        "Coverage (seconds); cues (1) are dashed lines above",
    ):
        assert title in page
    assert parsed.tables["engagement"] == [
        ["state", "start_s", "end_s", "duration_s"],
        ["engaged", "0", "12", "12"],
        ["neutral", "12", "24", "12"],
        ["engaged", "24", "30", "6"],
    ]
    assert parsed.tables["signals"] == [
        ["signal_type", "start_s", "end_s", "state", "peak_probability"],
        ["hesitation", "3", "9", "closed", "high"],
        ["interest", "15", "30", "closed_at_session_end", "low"],
    ]
    assert parsed.tables["quality"] == [
        ["quality_index", "clarity", "authority", "energy", "rapport", "learning"],
        ["75", "66", "58", "78", "76", "50"],
    ]
    assert parsed.tables["coverage"] == [["analysed", "degraded", "dropped"], ["24", "3", "3"]]
    assert [row[0] for row in parsed.tables["cues"]] == ["rule", "hesitation-burst"]
    # the page's figures are the store's figures
    warehouse = open_warehouse(f"chdb://{sample_store.store_dir}")
    try:
        timeline = warehouse.rows(
            "SELECT state, start_s, end_s, duration_s FROM engagement_timeline "
            "WHERE session_id = 'sess-a' ORDER BY start_s"
        )
        usage = warehouse.rows(
            "SELECT sum(analysed_s) AS a, sum(degraded_s) AS d, sum(dropped_s) AS x "
            "FROM usage FINAL WHERE session_id = 'sess-a'"
        )
    finally:
        warehouse.close()
    assert [[str(v) for v in r.values()] for r in timeline] == parsed.tables["engagement"][1:]
    assert [[str(v) for v in usage[0].values()]] == parsed.tables["coverage"][1:]
    png = imread(output.with_suffix(".png"))
    assert png.shape[:2] == (1300, 1000)
    # a real browser opens it
    shot = tmp_path / "screenshot.png"
    browser = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            output.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert browser.returncode == 0, browser.stderr
    image = imread(shot)
    assert image.shape[:2] == (2400, 1200)
    # the screenshot shows the page, not a blank or error page: many distinct colours
    colours = {tuple(px) for px in image[::8, ::8, :3].reshape(-1, 3).tolist()}
    assert len(colours) > 50
