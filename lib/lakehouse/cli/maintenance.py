"""Maintenance subcommands of the `lakehouse` command: maintain, erase.

Thin edges like `lakehouse.cli.pipeline`: load the lakehouse of `--env`/`--conf-dir`, build the
session with the one factory, call `lakehouse.ops.maintenance` or `lakehouse.ops.erasure`, print
what happened. A
refusal (a retention below the time-travel window, an erasure while silver is behind) is a
`UserError`: `lakehouse.cli` prints its message and exits with status 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.cli.common import lakehouse_of, refresh_catalog, session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.core.context import Lakehouse
    from lakehouse.quality.suites import Suite


def register(sub: Any) -> None:
    maintain = sub.add_parser(
        "maintain",
        help="compact (Z-order) and vacuum every table (conf maintenance section)",
        description="OPTIMIZE every Delta table under the lakehouse root (Z-ordered where "
        "configured), then VACUUM it with maintenance.vacuum_retention_hours; prints files and "
        "bytes before and after. Then, unless --table or --no-quality is given, runs every "
        "quality suite on every row (the daily gate checks only the rows a run wrote) and exits "
        "1 if an error check failed. See docs/MAINTENANCE.md and docs/QUALITY.md.",
    )
    maintain.add_argument(
        "--table", action="append", help="only this table, layer.name (repeatable)"
    )
    # Tests and throwaway sandboxes only: VACUUM below the time-travel window (also turns off
    # Delta's own retention check for the call). Hidden from --help on purpose.
    maintain.add_argument(
        "--unsafe-retention-hours", type=float, default=None, help=argparse.SUPPRESS
    )
    maintain.add_argument(
        "--no-quality",
        action="store_true",
        help="skip the full quality scan (every suite on every row; see docs/QUALITY.md)",
    )
    maintain.set_defaults(func=cmd_maintain)

    erase = sub.add_parser(
        "erase",
        help="erase a customer's personal data from every layer (audit.erasures records it)",
        description="Remove the customer's personal data from bronze, quarantine, silver, gold "
        "and the quality results; their orders stay, pseudonymised. Old versions keep it until "
        "`lakehouse maintain` runs after the retention window. See docs/MAINTENANCE.md.",
    )
    erase.add_argument("--customer", required=True, help="the customer_id to erase")
    erase.add_argument("--request-id", default=None, help="your reference (default: generated)")
    erase.add_argument(
        "--reason", default=None, help="why (free text; never personal data: it is kept)"
    )
    erase.set_defaults(func=cmd_erase)


def cmd_maintain(args: argparse.Namespace) -> int:
    from lakehouse.ops.erasure import recoverable_erasures
    from lakehouse.ops.maintenance import maintain

    lh = lakehouse_of(args)
    unsafe = args.unsafe_retention_hours
    spark = session(lh, "lakehouse-maintain")
    run = maintain(
        spark,
        lh,
        retention_hours=unsafe,
        allow_below_window_for_tests=unsafe is not None,
        only=args.table or None,
    )
    refresh_catalog(spark, lh)
    print(f"maintenance run {run.run_id}, VACUUM retention {run.retention_hours:g} hours")
    print_table(
        ["table", "optimize", "files", "bytes", "storage files", "storage bytes"],
        [
            [
                r.table_name,
                r.optimized + (f" ({','.join(r.zorder_by)})" if r.zorder_by else ""),
                f"{r.files_before} -> {r.files_after}",
                f"{r.bytes_before} -> {r.bytes_after}",
                f"{r.storage_files_before} -> {r.storage_files_after}",
                f"{r.storage_bytes_before} -> {r.storage_bytes_after}",
            ]
            for r in run.tables
        ],
    )
    if run.not_found:
        print(f"configured but not found (yet): {', '.join(run.not_found)}")
    pending = recoverable_erasures(spark, lh)
    if pending:
        print(
            f"{pending} erased customer(s) still recoverable by time travel: their old files go "
            "with the first maintenance run after their audit.erasures unrecoverable_after"
        )
    if args.table or args.no_quality:
        return 0
    return full_quality_scan(spark, lh, run.run_id)


def full_quality_scan(spark: SparkSession, lh: Lakehouse, run_id: str) -> int:
    """Every quality suite on every row of its table (recorded under the maintenance run's
    id, with its report); 1 if an error check failed. Suites whose tables (or the tables
    their cross-table checks read) do not exist yet are left out, and said so."""
    from delta.tables import DeltaTable

    from lakehouse.bronze.ingestion import FILES_TABLE
    from lakehouse.pipeline import run_quality_gate
    from lakehouse.quality import QualityOutcome, load_suites
    from lakehouse.quality.suites import LANDING_SUITE

    def built(name: str) -> bool:
        # The landing view is read from bronze (its files ledger is there once anything landed).
        return DeltaTable.isDeltaTable(
            spark, lh.path(FILES_TABLE if name == LANDING_SUITE else name)
        )

    names = [*lh.suites("bronze"), *lh.suites("silver"), *lh.suites("gold")]
    ready: list[str] = []
    missing: list[str] = []
    for suite in load_suites(lh, names):
        needed = {suite.full_name, *_tables_read(suite)}
        absent = sorted(t for t in needed if not built(t))
        (missing if absent else ready).append(suite.full_name)
    if missing:
        print(f"full quality scan: not built yet, left out: {', '.join(missing)}")
    if not ready:
        return 0
    outcome = run_quality_gate(spark, lh, run_id, ready, gate_errors=False)
    assert isinstance(outcome, QualityOutcome)
    print(
        f"full quality scan (every row) {run_id}: {len(outcome.results)} checks, "
        f"{len(outcome.errors)} errors, {len(outcome.warnings)} warnings"
    )
    for r in (*outcome.errors, *outcome.warnings):
        print(f"  {r.severity} {r.layer}.{r.table}/{r.check}: {r.message or 'failed'}")
    return 1 if outcome.errors else 0


def _tables_read(suite: Suite) -> set[str]:
    """The other tables a suite's cross-table checks read."""
    out: set[str] = set()
    for check in suite.checks:
        spec = check.spec
        table = getattr(spec, "table", None)
        if isinstance(table, str):
            out.add(table)
        for side in ("left", "right", "source"):
            table = getattr(getattr(spec, side, None), "table", None)
            if table:
                out.add(table)
    return out


def cmd_erase(args: argparse.Namespace) -> int:
    from lakehouse.ops.erasure import erase

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-erase")
    result = erase(spark, lh, args.customer, request_id=args.request_id, reason=args.reason)
    refresh_catalog(spark, lh)
    print(f"erasure {result.request_id} of customer {result.customer_id}: {result.status}")
    if result.tables:
        print_table(
            ["table", "rows changed", "version"],
            [
                [c.table, str(c.rows_changed), f"{c.version_before} -> {c.version_after}"]
                for c in result.tables
            ],
        )
    if result.landing_files:
        print(
            "the landing zone (outside the lakehouse) still holds their records in: "
            + ", ".join(result.landing_files)
        )
    print(
        "old table versions keep the data until `lakehouse maintain` runs after "
        f"{result.unrecoverable_after:%Y-%m-%d %H:%M} UTC"
    )
    return 0


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A small aligned table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  "
            + "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
