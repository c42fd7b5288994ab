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

STEPS = ("bronze", "silver", "quality", "gold")
SILVER_SUITES = ("silver.orders", "silver.order_items", "silver.payments", "silver.customers")
GOLD_SUITES = ("gold.fact_orders", "gold.daily_kpis")
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
    quality: list[object] = field(default_factory=list)
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


def run_quality_gate(
    spark: SparkSession, config: Config, run_id: str, suites: Sequence[str], gate_errors: bool
) -> object:
    """Run the suites, write the run's report (local reports root), then stop the run with
    `QualityGateError` if an error-severity check failed and `gate_errors` is set."""
    from lakehouse.quality import gate, run_quality, write_report

    outcome = run_quality(spark, config.storage.lakehouse_root, run_id, list(suites))
    if not is_uri(config.storage.reports_root):
        write_report(
            spark,
            config.storage.lakehouse_root,
            run_id,
            Path(config.storage.reports_root) / "quality",
        )
    if gate_errors:
        gate(outcome)
    return outcome


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
    if "quality" in steps:
        # Silver is checked before gold reads it: an error stops the run here and gold keeps
        # the version dashboards read (see docs/QUALITY.md).
        report.quality.append(run_quality_gate(spark, config, run_id, SILVER_SUITES, True))
    if "gold" in steps:
        report.gold = run_gold(spark, config, run_id)
        if "quality" in steps:
            # Gold is built in place, so its checks are recorded and reported, not a gate yet.
            report.quality.append(run_quality_gate(spark, config, run_id, GOLD_SUITES, False))
        report.dashboard = write_reports(spark, config)
    register_tables(spark, config)
    return report
