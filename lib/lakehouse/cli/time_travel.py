"""Time-travel subcommands of the `lakehouse` command: backfill, show, history, kpis, rollback.

Thin edges over `lakehouse.ops.backfill` and `lakehouse.ops.time_travel`: load the lakehouse of
`--env`/`--conf-dir`, build the session with the one factory, call the library, print. Refusals
end with a message and status 1 (`lakehouse.core.errors.UserError`). `history` is a table's Delta
commit history (`DESCRIBE HISTORY`), with the run that wrote each version.
"""

from __future__ import annotations

import argparse
from typing import Any

from lakehouse.cli.common import lakehouse_of, refresh_catalog, session


def register(sub: Any) -> None:
    back = sub.add_parser(
        "backfill", help="reprocess the landing partitions of a date range (--dry-run: preview)"
    )
    back.add_argument("--from", dest="start", required=True, help="first ingest date, YYYY-MM-DD")
    back.add_argument("--to", dest="end", required=True, help="last ingest date, YYYY-MM-DD")
    back.add_argument(
        "--dry-run", action="store_true", help="compute and diff against gold; publish nothing"
    )
    back.set_defaults(func=cmd_backfill)

    show = sub.add_parser("show", help="a table now or as of a version or timestamp")
    show.add_argument("table", help="layer.table, e.g. gold.daily_kpis")
    show.add_argument("--as-of", default=None, help="a version number or an ISO timestamp")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(func=cmd_show)

    hist = sub.add_parser(
        "history", help="a table's Delta commit history with the run of each version"
    )
    hist.add_argument("table", help="layer.table, e.g. silver.orders")
    hist.add_argument("--limit", type=int, default=50)
    hist.set_defaults(func=cmd_history)

    kpis = sub.add_parser(
        "kpis", help="a past run's daily KPIs, recomputed from the silver versions it consumed"
    )
    kpis.add_argument("--run", required=True, help="the run id")
    kpis.add_argument("--table", default="daily_kpis", help="gold table (default daily_kpis)")
    kpis.set_defaults(func=cmd_kpis)

    roll = sub.add_parser("rollback", help="restore every table a run wrote to before it")
    roll.add_argument("--run", required=True, help="the run id to roll back")
    roll.add_argument(
        "--cascade", action="store_true", help="also roll back the later runs that wrote since"
    )
    roll.set_defaults(func=cmd_rollback)


def cmd_backfill(args: argparse.Namespace) -> int:
    from lakehouse.ops.backfill import backfill, describe
    from lakehouse.state import reports

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-backfill")
    result = backfill(spark, lh, args.start, args.end, dry_run=args.dry_run)
    text = describe(result)
    print(text)
    # Kept with the run's reports too (local or S3): on EMR the job's output is only in its logs.
    kept = reports.publish(lh.config, result.run_id, "backfill.txt", text + "\n")
    print(f"diff kept in {kept}")
    return 1 if result.refused else 0


def cmd_show(args: argparse.Namespace) -> int:
    from lakehouse.ops.time_travel import parse_as_of, show

    lh = lakehouse_of(args)
    as_of = parse_as_of(args.as_of) if args.as_of else None
    spark = session(lh, "lakehouse-show")
    df = show(spark, lh, args.table, as_of)
    print(
        f"{args.table}"
        + (f" as of {args.as_of}" if as_of is not None else "")
        + f": {df.count()} rows"
    )
    df.show(args.limit, truncate=False)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from lakehouse.ops.time_travel import commit_history

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-history")
    commit_history(spark, lh, args.table).select(
        "version", "timestamp", "operation", "run_id", "rows_out"
    ).show(args.limit, truncate=False)
    return 0


def cmd_kpis(args: argparse.Namespace) -> int:
    from lakehouse.ops.time_travel import run_kpis

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-kpis")
    df = run_kpis(spark, lh, args.run, args.table)
    df.orderBy(df.columns[0]).show(1000, truncate=False)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from lakehouse.ops.time_travel import rollback

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-rollback")
    result = rollback(spark, lh, args.run, cascade=args.cascade)
    refresh_catalog(spark, lh)
    print(f"{result.rollback_id}: rolled back run(s) {', '.join(result.runs)}")
    for table, target in result.restored_to.items():
        state = "emptied (created by the run)" if target < 0 else f"restored to version {target}"
        print(f"  {table:<32} {state}, now version {result.new_versions[table]}")
    return 0
