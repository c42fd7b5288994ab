"""Pipeline subcommands of the `lakehouse` command: generate, ingest, silver, run.

Each is a thin edge: load the configuration, build the session with the one factory, call the
layer's function, print what happened, and exit non-zero on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from lakehouse.config import Config, load_config
from lakehouse.ledger import LedgerEntry, new_run_id, record


def register(sub: Any) -> None:
    gen = sub.add_parser("generate", help="write a generated landing zone (conf generator section)")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--customers", type=int, default=None)
    gen.add_argument("--days", type=int, default=None)
    gen.add_argument("--orders-per-day", type=int, default=None)
    gen.add_argument("--no-defects", action="store_true", help="clean, in-order, exactly-once data")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing landing zone")
    gen.set_defaults(func=cmd_generate)

    ing = sub.add_parser("ingest", help="land new files into bronze")
    ing.set_defaults(func=cmd_ingest)

    sil = sub.add_parser("silver", help="apply new bronze records to silver")
    sil.set_defaults(func=cmd_silver)

    run = sub.add_parser("run", help="the whole pipeline on a generated sample (local)")
    run.add_argument("--no-generate", action="store_true", help="use the landing zone as it is")
    run.set_defaults(func=cmd_run)


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.env, args.conf_dir)


def _session(config: Config, app: str) -> Any:
    from lakehouse.spark import get_spark

    return get_spark(config.spark, app_name=app)


def cmd_generate(args: argparse.Namespace) -> int:
    from lakehouse.generate import generate_landing

    config = _config(args)
    spec = config.generator
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "seed": args.seed,
            "customers": args.customers,
            "days": args.days,
            "orders_per_day": args.orders_per_day,
        }.items()
        if v is not None
    }
    if args.no_defects:
        from lakehouse.generate.spec import DefectSwitches

        changes["defects"] = DefectSwitches.none()
    spec = dataclasses.replace(spec, **changes)
    summary = generate_landing(config.storage.landing_root, spec, overwrite=args.overwrite)
    print(f"generated landing zone in {config.storage.landing_root}: {summary}")
    return 0


def print_ledger(title: str, entries: Sequence[LedgerEntry], columns: Sequence[str]) -> None:
    """A small aligned table of ledger counts, one row per table."""
    print(title)
    header = ["table", *columns]
    rows = [[e.table_name, *(str(getattr(e, c)) for c in columns)] for e in entries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  " + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))))


BRONZE_COLUMNS = ("files_read", "files_skipped", "records_read", "records_written", "duplicates",
                  "quarantined")


def run_step(
    config: Config, run_id: str, step: Callable[..., list[LedgerEntry]], spark: Any
) -> list[LedgerEntry]:
    """Run one layer's step and record its ledger rows (only after its own balance checks)."""
    entries = step(spark, config, run_id)
    record(spark, config.storage.lakehouse_root, entries)
    return entries


def cmd_ingest(args: argparse.Namespace) -> int:
    from lakehouse import bronze

    config = _config(args)
    spark = _session(config, "lakehouse-ingest")
    run_id = new_run_id()
    entries = run_step(config, run_id, bronze.ingest, spark)
    print_ledger(f"bronze, run {run_id}", entries, BRONZE_COLUMNS)
    return 0


def cmd_silver(args: argparse.Namespace) -> int:
    from lakehouse import silver

    config = _config(args)
    spark = _session(config, "lakehouse-silver")
    run_id = new_run_id()
    entries = run_step(config, run_id, silver.apply, spark)
    print_ledger(f"silver, run {run_id}", entries, silver.LEDGER_COLUMNS)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lakehouse import bronze
    from lakehouse.config import is_uri

    config = _config(args)
    landing = config.storage.landing_root
    if not args.no_generate and not is_uri(landing) and not any(Path(landing).glob("*/*/*")):
        from lakehouse.generate import generate_landing

        summary = generate_landing(landing, config.generator)
        print(f"generated a sample landing zone in {landing}: {summary}")
    spark = _session(config, "lakehouse-pipeline")
    run_id = new_run_id()
    entries = run_step(config, run_id, bronze.ingest, spark)
    print_ledger(f"bronze, run {run_id}", entries, BRONZE_COLUMNS)
    try:
        from lakehouse import silver
    except ModuleNotFoundError:
        return 0
    s_entries = run_step(config, run_id, silver.apply, spark)
    print_ledger(f"silver, run {run_id}", s_entries, silver.LEDGER_COLUMNS)
    return 0
