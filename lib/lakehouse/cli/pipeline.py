"""Pipeline subcommands of the `lakehouse` command: generate, ingest, silver, gold, run.

Each is a thin edge: load the configuration, build the session with the one factory, call the
layer's function, print what happened, and exit non-zero on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from lakehouse.cli.common import lakehouse_of, session
from lakehouse.core.errors import UserError
from lakehouse.state.ledger import BRONZE_COLUMNS, SILVER_COLUMNS, LedgerEntry, new_run_id


def register(sub: Any) -> None:
    gen = sub.add_parser("generate", help="write a generated landing zone (conf generator section)")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--customers", type=int, default=None)
    gen.add_argument("--days", type=int, default=None)
    gen.add_argument("--orders-per-day", type=int, default=None)
    gen.add_argument("--no-defects", action="store_true", help="clean, in-order, exactly-once data")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing landing zone")
    gen.add_argument(
        "--publish-to",
        metavar="BOOTSTRAP",
        default=None,
        help="also publish the generated clickstream to Kafka at BOOTSTRAP (host:port), a "
        "message per event stamped with its delivery day, for `lakehouse stream`",
    )
    gen.add_argument("--topic", default=None, help="the Kafka topic (default: stream.kafka.topic)")
    gen.set_defaults(func=cmd_generate)

    ing = sub.add_parser("ingest", help="land new files into bronze")
    ing.add_argument("--date", action="append", help="only this ingest_date (repeatable)")
    ing.set_defaults(func=cmd_ingest)

    sil = sub.add_parser("silver", help="apply new bronze records to silver")
    sil.set_defaults(func=cmd_silver)

    gold = sub.add_parser("gold", help="bring the gold tables up to date with silver")
    gold.add_argument("--mode", choices=("incremental", "full"), default="incremental")
    gold.add_argument(
        "--no-checks", action="store_true", help="publish without the gold quality suites"
    )
    gold.set_defaults(func=cmd_gold)

    quality = sub.add_parser("quality", help="Deequ quality reports and suite suggestions")
    qsub = quality.add_subparsers(dest="quality_command", required=True, metavar="ACTION")
    report = qsub.add_parser("report", help="write the HTML and JSON report of a run")
    report.add_argument("--run", default=None, help="run id (default: the newest checked run)")
    report.set_defaults(func=cmd_quality_report)
    suggest = qsub.add_parser("suggest", help="draft a YAML suite for TABLE (layer.name)")
    suggest.add_argument("table")
    suggest.add_argument("--out", default=None, help="file to write (default: stdout)")
    suggest.set_defaults(func=cmd_quality_suggest)

    run = sub.add_parser("run", help="the whole pipeline (generating a local sample if empty)")
    run.add_argument("--date", action="append", help="only this ingest_date (repeatable)")
    run.add_argument("--no-generate", action="store_true", help="use the landing zone as it is")
    run.set_defaults(func=cmd_run)


def _generator() -> Any:
    """The landing-zone generator, a development tool (`lakehouse_dev`, beside the package in a
    source checkout; never in the EMR bundle)."""
    try:
        from lakehouse_dev import generate
    except ModuleNotFoundError as exc:
        raise UserError(
            "the sample generator is a development tool: run it from a source checkout "
            "(make run, or pip install -e '.[test]' in the project folder)"
        ) from exc
    return generate


def cmd_generate(args: argparse.Namespace) -> int:
    lh = lakehouse_of(args)
    config = lh.config
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
        from lakehouse.core.generator_spec import DefectSwitches

        changes["defects"] = DefectSwitches.none()
    spec = dataclasses.replace(spec, **changes)
    summary = _generator().generate_landing(
        config.storage.landing_root, spec, overwrite=args.overwrite
    )
    print(
        f"generated landing zone in {config.storage.landing_root}: {describe_generation(summary)}"
    )
    if args.publish_to:
        from lakehouse_dev.kafka import publish_landed

        topic = args.topic or config.stream.kafka.topic
        sent = publish_landed(
            config.storage.landing_root, config.stream.source, args.publish_to, topic
        )
        print(f"published {sent} {config.stream.source} messages to {topic} at {args.publish_to}")
    return 0


def describe_generation(summary: Any) -> str:
    """One line: files and records per source and the number of injected defects."""
    parts = ", ".join(f"{src} {summary.records[src]}" for src in summary.records)
    return (
        f"{sum(summary.files.values())} files; records: {parts}; "
        f"{len(summary.defects)} injected defects"
    )


def print_ledger(title: str, entries: Sequence[LedgerEntry], columns: Sequence[str]) -> None:
    """A small aligned table of ledger counts, one row per table."""
    print(title)
    header = ["table", *columns]
    rows = [[e.table_name, *(str(getattr(e, c)) for c in columns)] for e in entries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  "
            + "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def cmd_ingest(args: argparse.Namespace) -> int:
    from lakehouse.pipeline import run_pipeline

    lh = lakehouse_of(args)
    run_id = new_run_id()
    spark = session(lh, "lakehouse-ingest")
    report = run_pipeline(spark, lh, run_id, steps=("bronze",), dates=args.date or None)
    print_ledger(f"bronze, run {run_id}", report.bronze, BRONZE_COLUMNS)
    return 0


def cmd_silver(args: argparse.Namespace) -> int:
    from lakehouse.pipeline import run_pipeline

    lh = lakehouse_of(args)
    run_id = new_run_id()
    report = run_pipeline(session(lh, "lakehouse-silver"), lh, run_id, steps=("silver",))
    print_ledger(f"silver, run {run_id}", report.silver, SILVER_COLUMNS)
    return 0


def cmd_gold(args: argparse.Namespace) -> int:
    from lakehouse.pipeline import run_pipeline

    lh = lakehouse_of(args)
    run_id = new_run_id()
    report = run_pipeline(
        session(lh, "lakehouse-gold"),
        lh,
        run_id,
        steps=("gold",),
        checks=not args.no_checks,
        gold_mode=args.mode,
    )
    print(f"gold, run {run_id}: {report.gold}")
    return 0


def cmd_quality_report(args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from lakehouse.quality import write_report

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-quality")
    run_id = args.run
    if run_id is None:
        results = spark.read.format("delta").load(lh.path("quality.results"))
        newest = results.orderBy(F.col("run_ts").desc()).select("run_id").first()
        if newest is None:
            print("no quality results yet: run the pipeline first")
            return 1
        run_id = newest["run_id"]
    # The newest run's report also goes to latest/; an older run's (--run) only to its folder.
    html, js = write_report(spark, lh, run_id, latest=args.run is None)
    print(f"quality report of run {run_id}: {html} (and {js})")
    return 0


def cmd_quality_suggest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lakehouse.quality import suggest

    lh = lakehouse_of(args)
    spark = session(lh, "lakehouse-quality")
    draft = suggest(spark, lh, args.table)
    if args.out:
        Path(args.out).write_text(draft, encoding="utf-8")
        print(f"draft suite written to {args.out}")
    else:
        print(draft)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lakehouse.core.config import is_uri
    from lakehouse.gold.dashboard import kpi_summary_text
    from lakehouse.pipeline import run_pipeline
    from lakehouse.state.reports import run_location

    lh = lakehouse_of(args)
    landing = lh.config.storage.landing_root
    if not args.no_generate and not is_uri(landing) and not any(Path(landing).glob("*/*/*")):
        summary = _generator().generate_landing(landing, lh.config.generator)
        print(f"generated a sample landing zone in {landing}: {describe_generation(summary)}")
    spark = session(lh, "lakehouse-pipeline")
    run_id = new_run_id()
    report = run_pipeline(spark, lh, run_id, dates=args.date or None)
    print_ledger(f"bronze, run {run_id}", report.bronze, BRONZE_COLUMNS)
    print_ledger(f"silver, run {run_id}", report.silver, SILVER_COLUMNS)
    print()
    print(kpi_summary_text(spark, lh))
    if report.dashboard is not None:
        print(f"\ndashboard: {report.dashboard}")
    if any(
        getattr(outcome, "results", None) for outcome in report.quality
    ):  # a run with checks has a report
        print(f"quality report: {run_location(lh.config, run_id, 'quality.html')}")
    return 0
