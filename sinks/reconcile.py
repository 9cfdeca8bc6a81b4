"""Billing reconciliation: expected billable seconds from ``usage`` against the vendor's figures.

Expected billable seconds per session = analysed + degraded seconds (never dropped or shed).
Seconds re-analysed after a failover are shown separately: the vendor bills them again.

Vendor usage (Interhuman publishes no usage API; this format is ours):

* CSV with a header row: ``session_id``, ``billed_seconds`` (required), ``day``
  (``YYYY-MM-DD``) and ``tenant`` (optional). Several rows of one session are summed.
* JSON: a list of objects with the same keys, or ``{"sessions": [...]}``.
* The local simulator's ``GET /usage`` (a URL): ``{"sessions": [...]}`` whose records carry
  ``analysed_seconds`` and ``degraded_seconds``; their sum is the billed figure.

Each session whose difference (vendor - expected) exceeds the tolerance is a discrepancy,
with the likely cause: the difference matches the session's re-analysed seconds
(``re-analysis``), the seconds its session worker shed (``shed at worker``), the seconds the
stream skipped (``stream skip``), the session failed (``session failed``: an error end or
``session_error`` usage), the vendor has no figure for it (``missing from vendor``), the
pipeline has no usage for a billed session (``unknown to pipeline``); else ``unexplained``.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from runtime.errors import ExitCode, PipelineError, ServiceUnavailableError
from runtime.redact import redact_text, redact_url
from sinks.warehouse import Warehouse

__all__ = [
    "CAUSES",
    "Discrepancy",
    "ExpectedUsage",
    "VendorUsageError",
    "VendorUsageUnavailableError",
    "expected_usage",
    "load_vendor_usage",
    "reconcile",
    "store_discrepancies",
]

CAUSES = (
    "re-analysis",
    "shed at worker",
    "stream skip",
    "session failed",
    "missing from vendor",
    "unknown to pipeline",
    "unexplained",
)


class VendorUsageError(PipelineError):
    """The vendor usage file or URL could not be read or lacks a required column."""

    exit_code = ExitCode.DATA_ERROR


class VendorUsageUnavailableError(ServiceUnavailableError):
    """The vendor usage URL could not be reached (nothing listens, DNS, timeout)."""


@dataclass(frozen=True)
class ExpectedUsage:
    """What the pipeline accounted for one session (seconds)."""

    session_id: str
    tenant: str
    day: str
    analysed_s: float
    degraded_s: float
    reanalysed_s: float
    shed_worker_s: float
    stream_skip_s: float
    session_error_s: float
    failed: bool

    @property
    def billable_s(self) -> float:
        """Analysed + degraded."""
        return self.analysed_s + self.degraded_s


@dataclass(frozen=True)
class Discrepancy:
    """One session whose vendor figure differs from the expected one beyond the tolerance."""

    session_id: str
    tenant: str
    day: str | None
    expected_s: float
    vendor_s: float
    difference_s: float
    cause: str
    detail: str


def _sql_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def expected_usage(
    warehouse: Warehouse,
    *,
    since: date | None = None,
    until: date | None = None,
    tenant: str | None = None,
) -> dict[str, ExpectedUsage]:
    """Per-session expected figures from ``usage`` (deduplicated), filtered by day and tenant."""
    where = ["1"]
    if since is not None:
        where.append(f"toDate(u.recorded_at) >= '{since.isoformat()}'")
    if until is not None:
        where.append(f"toDate(u.recorded_at) <= '{until.isoformat()}'")
    if tenant is not None:
        where.append(f"u.tenant = {_sql_string(tenant)}")
    rows = warehouse.rows(
        "SELECT u.session_id AS session_id, any(u.tenant) AS tenant, "
        "toString(toDate(min(u.recorded_at))) AS day, "
        "sum(u.analysed_s) AS analysed_s, sum(u.degraded_s) AS degraded_s, "
        "sum(u.reanalysed_s) AS reanalysed_s, "
        "sumIf(u.dropped_s, u.source = 'worker' AND u.reason = 'backpressure') AS shed_worker_s, "
        "sumIf(u.dropped_s, u.reason IN ('stream_skip', 'video_gap')) AS stream_skip_s, "
        "sumIf(u.dropped_s, u.reason = 'session_error') AS session_error_s, "
        "max(e.reason = 'error') AS ended_in_error "
        "FROM (SELECT * FROM usage FINAL) AS u "
        "LEFT JOIN (SELECT session_id, reason FROM sessions_ended FINAL) AS e "
        "ON u.session_id = e.session_id "
        f"WHERE {' AND '.join(where)} GROUP BY u.session_id ORDER BY u.session_id"
    )
    out: dict[str, ExpectedUsage] = {}
    for r in rows:
        out[str(r["session_id"])] = ExpectedUsage(
            session_id=str(r["session_id"]),
            tenant=str(r["tenant"]),
            day=str(r["day"]),
            analysed_s=float(r["analysed_s"]),
            degraded_s=float(r["degraded_s"]),
            reanalysed_s=float(r["reanalysed_s"]),
            shed_worker_s=float(r["shed_worker_s"]),
            stream_skip_s=float(r["stream_skip_s"]),
            session_error_s=float(r["session_error_s"]),
            failed=bool(r["ended_in_error"]) or float(r["session_error_s"]) > 0,
        )
    return out


def _vendor_rows(records: list[Mapping[str, Any]], where: str) -> dict[str, tuple[float, str]]:
    totals: dict[str, tuple[float, str]] = {}
    for index, record in enumerate(records):
        try:
            sid = str(record["session_id"])
            if "billed_seconds" in record:
                seconds = float(record["billed_seconds"])
            else:
                seconds = float(record["analysed_seconds"]) + float(record["degraded_seconds"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VendorUsageError(
                f"{where}: record {index + 1} needs session_id and billed_seconds "
                f"(or analysed_seconds + degraded_seconds): {exc!r}"
            ) from None
        before, tenant = totals.get(sid, (0.0, ""))
        totals[sid] = (before + seconds, tenant or str(record.get("tenant") or ""))
    return totals


def _fetch(url: str) -> str:
    shown = redact_url(url)
    try:
        response = httpx.get(url, timeout=30.0)
    except httpx.TransportError as exc:
        reason = redact_text(str(exc) or type(exc).__name__, ())
        raise VendorUsageUnavailableError(
            f"cannot reach vendor usage URL {shown}: {reason}; check the address and that "
            "the service (e.g. `inter1-pipeline simulate`) is running"
        ) from None
    if response.status_code != 200:
        raise VendorUsageError(
            f"vendor usage URL {shown} answered HTTP {response.status_code}, not 200: it is "
            "not a usage endpoint (the simulator serves GET /usage)"
        )
    return response.text


def load_vendor_usage(source: str) -> dict[str, tuple[float, str]]:
    """Vendor billed seconds (and tenant when given) per session from a file or URL."""
    if source.startswith(("http://", "https://")):
        text = _fetch(source)
        source = redact_url(source)
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise VendorUsageError(f"cannot read vendor usage {source}: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise VendorUsageError(f"{source}: not valid JSON: {exc}") from None
        records = data.get("sessions", []) if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise VendorUsageError(f"{source}: expected a list of usage records")
        return _vendor_rows(records, source)
    return _vendor_rows(list(csv.DictReader(io.StringIO(text))), source)


def _cause(expected: ExpectedUsage, difference: float, tolerance: float) -> tuple[str, str]:
    candidates = (
        ("re-analysis", expected.reanalysed_s, "seconds re-analysed after a failover"),
        ("shed at worker", expected.shed_worker_s, "seconds the session worker shed"),
        ("stream skip", expected.stream_skip_s, "seconds the stream skipped"),
        ("session failed", expected.session_error_s, "seconds lost to a session error"),
    )
    for cause, seconds, what in candidates:
        if seconds > 0 and abs(abs(difference) - seconds) <= tolerance:
            return cause, f"difference {difference:+.3f} s matches {seconds:.3f} {what}"
    if expected.failed:
        return "session failed", f"the session failed; difference {difference:+.3f} s"
    return "unexplained", f"difference {difference:+.3f} s matches no accounted figure"


def reconcile(
    expected: Mapping[str, ExpectedUsage],
    vendor: Mapping[str, tuple[float, str]],
    *,
    tolerance_s: float,
    tenant: str | None = None,
) -> list[Discrepancy]:
    """Every session whose vendor and expected figures differ by more than ``tolerance_s``."""
    found: list[Discrepancy] = []
    for sid in sorted(set(expected) | set(vendor)):
        exp = expected.get(sid)
        billed = vendor.get(sid)
        if exp is None and billed is not None and tenant not in (None, billed[1]) and billed[1]:
            continue
        expected_s = exp.billable_s if exp is not None else 0.0
        vendor_s = billed[0] if billed is not None else 0.0
        difference = vendor_s - expected_s
        if abs(difference) <= tolerance_s:
            continue
        if exp is None:
            cause = "unknown to pipeline"
            detail = "the vendor billed a session the pipeline has no usage for"
        elif billed is None:
            cause, detail = "missing from vendor", "the vendor has no figure for this session"
        else:
            cause, detail = _cause(exp, difference, tolerance_s)
        found.append(
            Discrepancy(
                sid,
                exp.tenant if exp is not None else billed[1] if billed is not None else "",
                exp.day if exp is not None else None,
                round(expected_s, 3),
                round(vendor_s, 3),
                round(difference, 3),
                cause,
                detail,
            )
        )
    return found


def store_discrepancies(warehouse: Warehouse, found: list[Discrepancy]) -> str:
    """Write the findings to ``reconcile_discrepancies`` under a new run id; returns it."""
    run_id = uuid.uuid4().hex
    checked_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    warehouse.insert_json(
        "reconcile_discrepancies",
        [{"run_id": run_id, "checked_at": checked_at, **asdict(d)} for d in found],
    )
    return run_id
