"""The daily pipeline's steps (bronze, silver, gold) and their orchestration.

The `lakehouse` command, the `jobs/*.py` spark-submit entry points and the EMR steps all call
these functions, so a step runs the same way locally and on EMR. Each step records its ledger
rows only after its own conservation checks passed; a failed step raises and leaves the run
unpublished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.config import Config, is_uri, join_uri
from lakehouse.ledger import LedgerEntry, record

STEPS = ("bronze", "silver", "gold")
BRONZE_COLUMNS = (
    "files_read",
    "files_skipped",
    "records_read",
    "records_written",
    "duplicates",
    "quarantined",
)


@dataclass
class RunReport:
    run_id: str
    bronze: list[LedgerEntry] = field(default_factory=list)
    silver: list[LedgerEntry] = field(default_factory=list)
    gold: object | None = None
    dashboard: Path | None = None


def run_bronze(
    spark: SparkSession, config: Config, run_id: str, dates: Sequence[str] | None = None
) -> list[LedgerEntry]:
    from lakehouse import bronze

    entries = bronze.ingest(spark, config, run_id, ingest_dates=set(dates) if dates else None)
    record(spark, config.storage.lakehouse_root, entries)
    return entries


def run_silver(spark: SparkSession, config: Config, run_id: str) -> list[LedgerEntry]:
    from lakehouse import silver

    entries = silver.apply(spark, config, run_id)
    record(spark, config.storage.lakehouse_root, entries)
    return entries


def run_gold(spark: SparkSession, config: Config, run_id: str, mode: str = "incremental") -> object:
    from lakehouse.gold.build import build_gold

    return build_gold(spark, config.storage.lakehouse_root, run_id, mode=mode)  # type: ignore[arg-type]


def write_reports(spark: SparkSession, config: Config) -> Path | None:
    """The static HTML dashboard in the reports folder (local roots only)."""
    from lakehouse.gold.dashboard import write_dashboard

    if is_uri(config.storage.reports_root):
        return None
    return write_dashboard(
        spark,
        config.storage.lakehouse_root,
        join_uri(config.storage.reports_root, "dashboard.html"),
    )


def run_pipeline(
    spark: SparkSession,
    config: Config,
    run_id: str,
    steps: Sequence[str] = STEPS,
    dates: Sequence[str] | None = None,
) -> RunReport:
    """Run the given steps in order."""
    from lakehouse.catalog import register_tables

    report = RunReport(run_id)
    if "bronze" in steps:
        report.bronze = run_bronze(spark, config, run_id, dates)
    if "silver" in steps:
        report.silver = run_silver(spark, config, run_id)
    if "gold" in steps:
        report.gold = run_gold(spark, config, run_id)
        report.dashboard = write_reports(spark, config)
    register_tables(spark, config)
    return report
