"""Every example query of the analyst guide (sinks/README.md) gives the documented result
on the sample dataset, and the query command reaches a store a running sink holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sinks.warehouse import open_warehouse

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

GUIDE = Path(__file__).resolve().parents[2] / "sinks" / "README.md"
_EXAMPLE = re.compile(
    r"<!-- example: (?P<name>[\w-]+) -->\s*```sql\n(?P<sql>.*?)```"
    r"\s*Result:\s*```text\n(?P<out>.*?)```",
    re.DOTALL,
)


def examples() -> list[tuple[str, str, str]]:
    return [(m["name"], m["sql"], m["out"]) for m in _EXAMPLE.finditer(GUIDE.read_text())]


def test_guide_has_the_examples() -> None:
    assert [name for name, _, _ in examples()] == [
        "signals-per-session",
        "engagement-share",
        "engagement-over-time",
        "quality-by-tenant",
        "billing-per-day",
        "session-summaries",
    ]


def test_guide_examples_give_the_documented_results(sample_store: Any) -> None:
    warehouse = open_warehouse(f"chdb://{sample_store.store_dir}")
    try:
        actual = {
            name: warehouse.raw(sql, "PrettyCompactMonoBlock").decode()
            for name, sql, _ in examples()
        }
    finally:
        warehouse.close()
    assert actual == {name: out for name, _, out in examples()}


def test_query_command_goes_through_the_running_sink(sample_store: Any) -> None:
    """While the sink held the embedded store, `query` answered through its endpoint
    (in every format), and refused to write."""
    table, csv, json_rows, write, _, _ = sample_store.cli_results
    assert table.returncode == 0, table.stderr
    assert table.stdout == (
        "   ┌─tenant─┬─billable_s─┐\n"
        "1. │ acme   │         27 │\n"
        "2. │ globex │          6 │\n"
        "   └────────┴────────────┘\n"
    )
    assert csv.stdout == '"tenant","billable_s"\n"acme",27\n"globex",6\n'
    assert json_rows.stdout == (
        '{"tenant":"acme","billable_s":27}\n{"tenant":"globex","billable_s":6}\n'
    )
    assert write.returncode == 65
    assert write.stderr.splitlines()[-1].startswith("error: query: Code: 164.")
    assert "READONLY" in write.stderr


def test_reconcile_and_report_go_through_the_running_sink(sample_store: Any) -> None:
    """reconcile (which also stores its findings) and report worked while the sink held the
    embedded store."""
    reconcile, report = sample_store.cli_results[4:]
    assert reconcile.returncode == 1, reconcile.stderr
    lines = reconcile.stdout.splitlines()
    assert lines[-2] == (
        "sess-b                        6.000      9.000    +3.000  re-analysis: "
        "difference +3.000 s matches 3.000 seconds re-analysed after a failover"
    )
    assert lines[-1].endswith(
        "in reconcile_discrepancies (the running sink at " + sample_store.endpoint_url + ")"
    )
    assert report.returncode == 0, report.stderr
    warehouse = open_warehouse(f"chdb://{sample_store.store_dir}")
    try:
        stored = warehouse.rows(
            "SELECT session_id, expected_s, vendor_s, cause FROM reconcile_discrepancies"
        )
    finally:
        warehouse.close()
    assert stored == [
        {"session_id": "sess-b", "expected_s": 6, "vendor_s": 9, "cause": "re-analysis"}
    ]
