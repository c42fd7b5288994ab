"""A missed night is caught up: a daily job for day 3, run after the day-2 job never ran, ingests
day 2's files as well, and gold then equals a lakehouse that never missed a day. More missed days
than `bronze.catch_up_max_days` stop the job, naming the dates to backfill."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.ingestion import FILES_TABLE, catch_up_dates
from lakehouse.cli.jobs import job_main
from lakehouse.core.config import DEFAULT_CONF_DIR
from lakehouse.core.context import Lakehouse
from lakehouse.core.errors import UserError
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.gold.build import gold_tables
from lakehouse.pipeline import run_pipeline
from lakehouse.state.ledger import LEDGER_TABLE
from lakehouse_dev.generate import generate_landing

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


def _conf(base: Path, landing: Path, catch_up_max_days: int = 7) -> Path:
    """The shipped conf, its local lakehouse under `base`, reading `landing`."""
    folder = base / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, folder)
    local = {
        "spark": {"mode": "local", "shuffle_partitions": 2},
        "storage": {
            "landing_root": str(landing),
            "lakehouse_root": str(base / "lake"),
            "reports_root": str(base / "reports"),
        },
        "bronze": {"catch_up_max_days": catch_up_max_days},
    }
    (folder / "local.yaml").write_text(yaml.safe_dump(local))
    return folder


def _job(conf: Path, day: str) -> None:
    job_main("pipeline", ["--env", "local", "--conf-dir", str(conf), "--date", day], stop=False)


@dataclass
class CaughtUp:
    spark: SparkSession
    landing: Path
    missed: Lakehouse  # day 1's job, no day 2 job, day 3's job
    reference: Lakehouse  # every day ingested


@pytest.fixture(scope="module")
def caught_up(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> CaughtUp:
    base = tmp_path_factory.mktemp("catch-up")
    landing = base / "landing"
    conf = _conf(base / "missed", landing)
    missed = Lakehouse.load("local", conf)
    spec = replace(
        missed.config.generator,
        customers=15,
        days=3,
        orders_per_day=8,
        defects=DefectSwitches.none(),
    )
    generate_landing(str(landing), spec)
    _job(conf, DAYS[0])
    _job(conf, DAYS[2])
    reference = Lakehouse.load("local", _conf(base / "reference", landing))
    run_pipeline(spark, reference, "every-day", dates=list(DAYS), register=False)
    return CaughtUp(spark, landing, missed, reference)


def test_the_next_days_job_ingests_the_missed_days_files(caught_up: CaughtUp) -> None:
    spark, lh = caught_up.spark, caught_up.missed
    landed = sorted(
        str(p.relative_to(caught_up.landing)) for p in caught_up.landing.rglob("*") if p.is_file()
    )
    files = spark.read.format("delta").load(lh.path(FILES_TABLE))
    assert sorted(r["file"] for r in files.select("file").collect()) == landed
    # The second job read every file of days 2 and 3, none of day 1 again.
    runs = (
        spark.read.format("delta")
        .load(lh.path(LEDGER_TABLE))
        .where(F.col("layer") == "bronze")
        .groupBy("run_id")
        .agg(F.sum("files_read").alias("files"), F.min("started_at").alias("at"))
        .orderBy("at")
        .collect()
    )
    per_day = {d: sum(1 for f in landed if f"ingest_date={d}" in f) for d in DAYS}
    assert [r["files"] for r in runs] == [per_day[DAYS[0]], per_day[DAYS[1]] + per_day[DAYS[2]]]


def test_gold_then_equals_a_lakehouse_that_never_missed_a_day(caught_up: CaughtUp) -> None:
    spark = caught_up.spark
    for table in gold_tables(caught_up.reference):
        got = spark.read.format("delta").load(caught_up.missed.path(f"gold.{table}"))
        want = spark.read.format("delta").load(caught_up.reference.path(f"gold.{table}"))
        assert_df_equality(got, want, ignore_row_order=True)


def test_more_missed_days_than_the_limit_stop_the_job_naming_them(
    caught_up: CaughtUp, tmp_path: Path
) -> None:
    lh = Lakehouse.load("local", _conf(tmp_path, caught_up.landing, catch_up_max_days=1))

    assert catch_up_dates(caught_up.spark, lh, DAYS[1]) == [DAYS[0], DAYS[1]]
    with pytest.raises(UserError) as err:
        catch_up_dates(caught_up.spark, lh, DAYS[2])

    assert str(err.value) == (
        "2 earlier ingest dates have landed files not ingested yet (2024-01-01 .. 2024-01-02), "
        "more than bronze.catch_up_max_days = 1: backfill them first (lakehouse backfill --from "
        "2024-01-01 --to 2024-01-02, or lakehouse emr backfill), or raise the limit"
    )
