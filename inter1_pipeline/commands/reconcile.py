"""``inter1-pipeline reconcile``: expected billable seconds against the vendor's usage."""

from __future__ import annotations

import sys
from datetime import date, datetime

import click

__all__ = ["reconcile"]


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a YYYY-MM-DD day") from None


@click.command()
@click.option(
    "--vendor-usage",
    "vendor_usage",
    metavar="FILE|URL",
    help="Vendor usage: CSV/JSON export (session_id, billed_seconds[, day, tenant]) or the "
    "simulator's /usage URL. Without it, only the expected figures are printed.",
)
@click.option("--since", help="First day (YYYY-MM-DD, UTC) of usage to include.")
@click.option("--until", help="Last day (YYYY-MM-DD, UTC) of usage to include.")
@click.option("--tenant", help="Only this tenant.")
@click.option(
    "--tolerance",
    "tolerance_s",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds a session's figures may differ without being a discrepancy.",
)
def reconcile(
    vendor_usage: str | None,
    since: str | None,
    until: str | None,
    tenant: str | None,
    tolerance_s: float,
) -> None:
    """Compare expected billable seconds (analysed + degraded) with the vendor's figures.

    Prints each discrepancy with its likely cause, stores it in reconcile_discrepancies
    and exits 1 when any session differs by more than the tolerance. Works while
    `inter1-pipeline sink` holds the embedded store (through it).
    """
    from sinks.reconcile import expected_usage, load_vendor_usage, store_discrepancies
    from sinks.reconcile import reconcile as compare
    from sinks.warehouse import open_warehouse

    vendor = load_vendor_usage(vendor_usage) if vendor_usage else None
    warehouse = open_warehouse()
    try:
        expected = expected_usage(warehouse, since=_day(since), until=_day(until), tenant=tenant)
        click.echo(
            f"{'session_id':<24} {'tenant':<12} {'day':<10} {'billable_s':>10} "
            f"{'reanalysed_s':>12} {'dropped:worker':>14} {'dropped:skip':>12}"
        )
        for e in expected.values():
            click.echo(
                f"{e.session_id:<24} {e.tenant:<12} {e.day:<10} {e.billable_s:>10.3f} "
                f"{e.reanalysed_s:>12.3f} {e.shed_worker_s:>14.3f} {e.stream_skip_s:>12.3f}"
            )
        if vendor is None:
            return
        found = compare(expected, vendor, tolerance_s=tolerance_s, tenant=tenant)
        click.echo("")
        if not found:
            click.echo(f"no discrepancies beyond {tolerance_s:g} s ({len(expected)} sessions)")
            return
        click.echo(
            f"{'session_id':<24} {'expected_s':>10} {'vendor_s':>10} {'diff_s':>9}  cause: detail"
        )
        for d in found:
            click.echo(
                f"{d.session_id:<24} {d.expected_s:>10.3f} {d.vendor_s:>10.3f} "
                f"{d.difference_s:>+9.3f}  {d.cause}: {d.detail}"
            )
        run_id = store_discrepancies(warehouse, found)
        click.echo(
            f"{len(found)} discrepancies beyond {tolerance_s:g} s stored as run {run_id} "
            f"in reconcile_discrepancies ({warehouse.description})"
        )
    finally:
        warehouse.close()
    sys.exit(1)
