"""``inter1-pipeline report``: one session as a self-contained HTML page with plots.

The page holds, for one session: its metadata and summary figures; engagement over time;
signal intervals on a timeline; quality dimensions (latest overall scores and the
timeline); coverage (analysed, degraded, dropped seconds); cues. The plots are drawn with
matplotlib and embedded as inline SVG (no external file or script); a PNG of the same
figure is written beside the HTML. Every plotted figure is also listed in a table on the
page (``<table id="...">``), read from the same query results as the plot.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from runtime.errors import ExitCode, PipelineError
from sinks.warehouse import Warehouse

__all__ = ["ReportData", "SessionNotFoundError", "load_report_data", "render_report"]

_STATE_COLOURS = {"engaged": "#2e7d32", "neutral": "#9e9e9e", "disengaged": "#c62828"}
_DIMENSIONS = ("quality_index", "clarity", "authority", "energy", "rapport", "learning")


class SessionNotFoundError(PipelineError):
    """The store holds nothing for the session id."""

    exit_code = ExitCode.NO_INPUT


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as query results."""

    session_id: str
    summary: dict[str, Any]
    engagement: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    quality_overall: dict[str, Any] | None
    quality_timeline: list[dict[str, Any]]
    coverage: dict[str, float]
    cues: list[dict[str, Any]]


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def load_report_data(warehouse: Warehouse, session_id: str) -> ReportData:
    """Query everything for one session."""
    sid = _quote(session_id)
    summary = warehouse.rows(f"SELECT * FROM session_summary_live WHERE session_id = {sid}")
    if not summary:
        raise SessionNotFoundError(f"no data for session {session_id} in {warehouse.description}")
    engagement = warehouse.rows(
        "SELECT state, start_s, end_s, duration_s FROM engagement_timeline "
        f"WHERE session_id = {sid} ORDER BY start_s"
    )
    signals = warehouse.rows(
        "SELECT signal_type, start_s, end_s, state, peak_probability FROM signal_intervals "
        f"WHERE session_id = {sid} ORDER BY start_s, signal_type"
    )
    overall = warehouse.rows(
        "SELECT "
        + ", ".join(f"argMax({d}, (incarnation, event_seq)) AS {d}" for d in _DIMENSIONS)
        + f" FROM quality_overall FINAL WHERE session_id = {sid} HAVING count() > 0"
    )
    timeline = warehouse.rows(
        f"SELECT start_s, end_s, {', '.join(_DIMENSIONS)} FROM quality_timeline_latest "
        f"WHERE session_id = {sid} ORDER BY start_s"
    )
    coverage = warehouse.rows(
        "SELECT sum(analysed_s) AS analysed, sum(degraded_s) AS degraded, "
        f"sum(dropped_s) AS dropped FROM usage FINAL WHERE session_id = {sid}"
    )
    cues = warehouse.rows(
        "SELECT rule, severity, media_start_s, media_end_s, message FROM cues FINAL "
        f"WHERE session_id = {sid} ORDER BY media_end_s, cue_id"
    )
    return ReportData(
        session_id=session_id,
        summary=summary[0],
        engagement=engagement,
        signals=signals,
        quality_overall=overall[0] if overall else None,
        quality_timeline=timeline,
        coverage={k: float(v or 0) for k, v in (coverage[0] if coverage else {}).items()},
        cues=cues,
    )


def _figure(data: ReportData) -> Figure:
    end = float(data.summary.get("media_seconds") or 0) or max(
        [float(r["end_s"] or r["start_s"]) for r in data.engagement + data.signals] + [1.0]
    )
    # a Figure of its own (no pyplot): no global state, no display backend
    fig = Figure(figsize=(10, 13), layout="constrained")
    axes = fig.subplots(5, 1)
    ax = axes[0]
    for row in data.engagement:
        stop = float(row["end_s"]) if row["end_s"] is not None else end
        colour = _STATE_COLOURS.get(str(row["state"]), "#5c6bc0")
        ax.broken_barh(
            [(float(row["start_s"]), stop - float(row["start_s"]))], (0, 1), color=colour
        )
    ax.set_title("Engagement over time")
    ax.set_yticks([])
    ax.set_xlim(0, end)
    ax.set_xlabel("media time (s)")
    for cue in data.cues:
        at = float(cue["media_end_s"])
        ax.axvline(at, color="#6a1b9a", linestyle="--", linewidth=1.5)
        ax.text(at, 0.5, f" cue: {cue['rule']}", color="white", fontsize=8, rotation=90)
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in _STATE_COLOURS.values()]
    ax.legend(handles, list(_STATE_COLOURS), loc="upper right", ncol=3, fontsize=8)
    ax = axes[1]
    types = sorted({str(r["signal_type"]) for r in data.signals})
    for row in data.signals:
        y = types.index(str(row["signal_type"]))
        stop = float(row["end_s"]) if row["end_s"] is not None else end
        hatch = "//" if row["state"] != "closed" else None
        ax.broken_barh(
            [(float(row["start_s"]), stop - float(row["start_s"]))],
            (y - 0.35, 0.7),
            facecolor="#ef6c00",
            edgecolor="white",
            hatch=hatch,
        )
    ax.set_yticks(range(len(types)), types)
    ax.set_xlim(0, end)
    ax.set_title("Signal intervals (hatched: not ended by signal.ended)")
    ax.set_xlabel("media time (s)")
    ax = axes[2]
    if data.quality_overall:
        values = [float(data.quality_overall[d]) for d in _DIMENSIONS]
        ax.bar(_DIMENSIONS, values, color="#1565c0")
        for x, v in enumerate(values):
            ax.text(x, v + 1, f"{v:g}", ha="center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_title("Quality dimensions (latest overall scores, 0-100)")
    ax = axes[3]
    for d in _DIMENSIONS:
        xs = [(float(r["start_s"]) + float(r["end_s"])) / 2 for r in data.quality_timeline]
        ax.plot(xs, [float(r[d]) for r in data.quality_timeline], marker="o", label=d)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 105)
    ax.set_title("Quality timeline (slice midpoints)")
    ax.legend(ncol=6, fontsize=7, loc="lower right")
    ax = axes[4]
    labels = ["analysed", "degraded", "dropped"]
    seconds = [data.coverage.get(k, 0.0) for k in labels]
    ax.barh(labels, seconds, color=["#2e7d32", "#f9a825", "#c62828"])
    for y, v in enumerate(seconds):
        ax.text(v, y, f" {v:g} s", va="center", fontsize=8)
    ax.set_title(f"Coverage (seconds); cues ({len(data.cues)}) are dashed lines above")
    fig.suptitle(f"Session {data.session_id}")
    return fig


def _table(table_id: str, rows: list[dict[str, Any]]) -> str:
    if not rows:
        return f'<table id="{table_id}"><tr><td>none</td></tr></table>'
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_show(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_report(data: ReportData, output: Path) -> tuple[Path, Path]:
    """Write ``output`` (HTML) and the PNG beside it; returns both paths."""
    fig = _figure(data)
    png = output.with_suffix(".png")
    svg = io.StringIO()
    fig.savefig(svg, format="svg")
    fig.savefig(png, format="png", dpi=100)
    svg_text = svg.getvalue()
    svg_text = svg_text[svg_text.index("<svg") :]
    summary = [{k: v for k, v in data.summary.items() if k != "labels"}]
    overall = [data.quality_overall] if data.quality_overall else []
    coverage = [{k: data.coverage.get(k, 0.0) for k in ("analysed", "degraded", "dropped")}]
    title = f"Inter-1 session {html.escape(data.session_id)}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}td,th{{border:1px solid #ccc;
padding:2px 6px;font-size:13px;text-align:right}}svg{{max-width:100%;height:auto}}</style>
</head><body>
<h1>{title}</h1>
<h2>Summary</h2>{_table("summary", summary)}
<h2>Plots</h2><div id="plots">{svg_text}</div>
<h2>Engagement over time</h2>{_table("engagement", data.engagement)}
<h2>Signal intervals</h2>{_table("signals", data.signals)}
<h2>Quality dimensions (latest overall)</h2>{_table("quality", overall)}
<h2>Quality timeline</h2>{_table("quality_timeline", data.quality_timeline)}
<h2>Coverage (seconds)</h2>{_table("coverage", coverage)}
<h2>Cues</h2>{_table("cues", data.cues)}
</body></html>
"""
    output.write_text(page, encoding="utf-8")
    return output, png
