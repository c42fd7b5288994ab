"""Time travel: rollback of a run, a past run's KPIs reproduced from the versions it consumed,
`show --as-of`, and backfills with a dry-run diff that matches what the real backfill publishes."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.cli.common import refresh_catalog
from lakehouse.cli.time_travel import cmd_backfill
from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import current_version
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.ops.backfill import backfill, daily_tables, describe
from lakehouse.ops.time_travel import (
    LOG_TABLES,
    RollbackRefused,
    commit_history,
    list_tables,
    rollback,
    run_kpis,
    show,
)
from lakehouse.pipeline import run_pipeline
from lakehouse.state.ledger import read_ledger
from lakehouse_dev.generate import generate_landing
from lakehouses import local_lakehouse

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


def _generate(lh: Lakehouse, defects: bool) -> None:
    spec = replace(lh.config.generator, customers=20, days=3, orders_per_day=12)
    if not defects:
        spec = replace(spec, defects=DefectSwitches.none())
    generate_landing(lh.config.storage.landing_root, spec)


def _versions(spark: SparkSession, lh: Lakehouse) -> dict[str, int]:
    return {t: current_version(spark, p) for t, p in list_tables(spark, lh).items()}


def _same_rows(a: DataFrame, b: DataFrame) -> bool:
    """Equal as multisets of rows (map columns, which set operations refuse, compared as JSON)."""

    def rows(df: DataFrame) -> DataFrame:
        return df.select(F.to_json(F.struct(*df.columns)).alias("row"))

    return rows(a).exceptAll(rows(b)).isEmpty() and rows(b).exceptAll(rows(a)).isEmpty()


def _version_of_run(spark: SparkSession, lh: Lakehouse, table: str, run_id: str) -> int:
    rows = commit_history(spark, lh, table).where(F.col("run_id") == run_id).collect()
    return max(int(r["version"]) for r in rows)


# ---------------------------------------------------------------------------------------------
# Rollback and reproduction


@dataclass
class Rolled:
    lh: Lakehouse
    after_first: dict[str, int]
    kpis_after_second: list
    silver_orders_after_second: int
    refusal: str
    rollback_runs: list[str]
    catalog_kpis: dict[str, list]  # `gold.daily_kpis` by name: before the rollback, after it


@pytest.fixture(scope="module")
def rolled(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Rolled:
    lh = local_lakehouse(tmp_path_factory.mktemp("rollback"))
    _generate(lh, defects=True)
    run_pipeline(spark, lh, "run-1", dates=DAYS[:2])
    after_first = _versions(spark, lh)
    run_pipeline(spark, lh, "run-2", dates=DAYS[2:])
    kpis_after_second = show(spark, lh, "gold.daily_kpis").orderBy("order_date").collect()
    silver_orders = show(spark, lh, "silver.orders").count()
    with pytest.raises(RollbackRefused) as refused:
        rollback(spark, lh, "run-1")
    catalog_kpis = {"before": spark.table("gold.daily_kpis").orderBy("order_date").collect()}
    result = rollback(spark, lh, "run-2")
    refresh_catalog(spark, lh)  # what `lakehouse rollback` does after it
    catalog_kpis["after"] = spark.table("gold.daily_kpis").orderBy("order_date").collect()
    return Rolled(
        lh,
        after_first,
        kpis_after_second,
        silver_orders,
        str(refused.value),
        result.runs,
        catalog_kpis,
    )


def test_a_past_runs_kpis_are_reproduced_from_the_silver_versions_it_consumed(
    spark: SparkSession, rolled: Rolled
) -> None:
    lh = rolled.lh
    published = show(
        spark, lh, "gold.daily_kpis", _version_of_run(spark, lh, "gold.daily_kpis", "run-2")
    )
    reproduced = run_kpis(spark, lh, "run-2")
    assert published.count() == 3
    assert _same_rows(reproduced.select(*published.columns), published)


def test_rolling_back_a_run_that_later_runs_built_on_is_refused_naming_them(
    rolled: Rolled,
) -> None:
    assert "later run(s) run-2" in rolled.refusal
    assert "--cascade" in rolled.refusal


def test_after_a_rollback_of_the_second_run_every_table_equals_its_state_after_the_first(
    spark: SparkSession, rolled: Rolled
) -> None:
    lh = rolled.lh
    assert rolled.rollback_runs == ["run-2"]
    tables = list_tables(spark, lh)
    checked = [t for t in tables if t not in LOG_TABLES]
    assert {
        "bronze.orders",
        "bronze._files",
        "silver.orders",
        "gold.daily_kpis",
        "gold._consumed_versions",
        "gold._published",
        "quarantine.records",
    } <= set(checked)
    for table in checked:
        now = show(spark, lh, table)
        then = show(spark, lh, table, rolled.after_first[table])
        assert _same_rows(now, then), table


def test_a_rollback_points_the_catalogs_gold_views_back_at_the_restored_set(
    spark: SparkSession, rolled: Rolled
) -> None:
    then = show(spark, rolled.lh, "gold.daily_kpis", rolled.after_first["gold.daily_kpis"])

    assert rolled.catalog_kpis["before"] == rolled.kpis_after_second
    assert rolled.catalog_kpis["after"] == then.orderBy("order_date").collect()
    assert rolled.catalog_kpis["after"] != rolled.kpis_after_second


def test_the_rollback_is_recorded_in_the_ledger(spark: SparkSession, rolled: Rolled) -> None:
    ledger = read_ledger(spark, rolled.lh)
    marked = ledger.where((F.col("run_id") == "run-2") & (F.col("status") == "rolled_back"))
    original = ledger.where((F.col("run_id") == "run-2") & (F.col("status") == "ok"))
    assert marked.count() == original.count() > 0
    restores = ledger.where(F.col("status") == "rollback").where(F.col("layer") == "gold")
    assert restores.count() > 0
    assert all("run-2" in r["message"] for r in restores.collect())


def test_rerunning_the_rolled_back_day_gives_the_second_runs_result_again(
    spark: SparkSession, rolled: Rolled
) -> None:
    lh = rolled.lh
    run_pipeline(spark, lh, "run-3", dates=DAYS[2:])
    assert show(spark, lh, "gold.daily_kpis").orderBy("order_date").collect() == (
        rolled.kpis_after_second
    )
    assert show(spark, lh, "silver.orders").count() == rolled.silver_orders_after_second
    # Now run-1 can go, with run-3 after it, only together.
    result = rollback(spark, lh, "run-1", cascade=True)
    assert result.runs == ["run-1", "run-3"]
    assert show(spark, lh, "gold.daily_kpis").count() == 0
    assert show(spark, lh, "silver.orders").count() == 0


def test_show_as_of_a_timestamp_reads_the_version_current_then(
    spark: SparkSession, rolled: Rolled
) -> None:
    lh = rolled.lh
    rows = commit_history(spark, lh, "gold.daily_kpis").collect()
    first = min(rows, key=lambda r: r["version"])
    as_of = show(spark, lh, "gold.daily_kpis", first["timestamp"].isoformat())
    assert _same_rows(as_of, show(spark, lh, "gold.daily_kpis", int(first["version"])))


# ---------------------------------------------------------------------------------------------
# Backfill


@dataclass
class Backfilled:
    lh: Lakehouse
    unchanged_versions: tuple[dict[str, int], dict[str, int]]
    unchanged_diffs: dict
    dry_versions: tuple[dict[str, int], dict[str, int]]
    dry: object
    real: object
    cancelled_order: str
    cancelled_day: str
    cancelled_lines: int
    staging_left: list[str]


def _cancel_an_order(spark: SparkSession, lh: Lakehouse) -> tuple[str, str, int]:
    """Deliver a late CDC update into day 2's landing partition: one counted order of day 1 is
    cancelled. Returns the order id, its date and its number of lines."""
    orders = show(spark, lh, "silver.orders").where(
        (F.col("order_date") == DAYS[0])
        & F.col("status").isin("placed", "paid", "shipped")
        & ~F.col("_is_deleted")
    )
    order = orders.orderBy("order_id").first()
    assert order is not None
    lines = (
        show(spark, lh, "silver.order_items")
        .where((F.col("order_id") == order["order_id"]) & ~F.col("_is_deleted"))
        .count()
    )
    row = {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "order_ts": order["order_ts"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "currency": order["currency"],
        "shipping_country": order["shipping_country"],
    }
    record = {
        "op": "u",
        "ts_ms": 1704200000000,
        "lsn": 999_999_999,
        "before": {**row, "status": order["status"]},
        "after": {**row, "status": "cancelled"},
    }
    folder = Path(lh.config.storage.landing_root) / "orders" / f"ingest_date={DAYS[1]}"
    (folder / "orders-20240102-0099.jsonl").write_text(json.dumps(record) + "\n")
    return order["order_id"], DAYS[0], lines


@pytest.fixture(scope="module")
def backfilled(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Backfilled:
    lh = local_lakehouse(tmp_path_factory.mktemp("backfill"))
    _generate(lh, defects=False)
    run_pipeline(spark, lh, "run-1")
    before = _versions(spark, lh)
    unchanged = backfill(spark, lh, DAYS[0], DAYS[2])
    after = _versions(spark, lh)
    order_id, day, lines = _cancel_an_order(spark, lh)
    before_dry = _versions(spark, lh)
    # What a dry run stopped half-way leaves: the next dry run clears it.
    stopped = Path(lh.root) / "_staging" / "stopped-run" / "lakehouse" / "gold"
    stopped.mkdir(parents=True)
    (stopped / "part-0.parquet").write_bytes(b"PAR1")
    dry = backfill(spark, lh, DAYS[0], DAYS[2], dry_run=True)
    after_dry = _versions(spark, lh)
    staging = sorted(str(p) for p in (Path(lh.root) / "_staging").glob("*"))
    real = backfill(spark, lh, DAYS[0], DAYS[2])
    return Backfilled(
        lh,
        (before, after),
        unchanged.diffs,
        (before_dry, after_dry),
        dry,
        real,
        order_id,
        day,
        lines,
        staging,
    )


def test_a_backfill_of_unchanged_input_changes_no_table(backfilled: Backfilled) -> None:
    before, after = backfilled.unchanged_versions
    data = [t for t in before if t not in LOG_TABLES]
    assert {t: after[t] for t in data} == {t: before[t] for t in data}
    assert all(d.unchanged for d in backfilled.unchanged_diffs.values())


def test_a_dry_run_leaves_every_table_at_its_version_and_no_scratch_copy(
    backfilled: Backfilled,
) -> None:
    before, after = backfilled.dry_versions
    assert after == before
    assert backfilled.staging_left == []


def test_the_dry_run_reports_the_cancelled_order_exactly(backfilled: Backfilled) -> None:
    dry = backfilled.dry
    assert dry.refused is None  # type: ignore[attr-defined]
    fact = dry.diffs["fact_orders"]  # type: ignore[attr-defined]
    assert (fact.added, fact.removed, fact.changed) == (0, 0, backfilled.cancelled_lines)
    kpis = dry.diffs["daily_kpis"]  # type: ignore[attr-defined]
    assert (kpis.added, kpis.removed, kpis.changed) == (0, 0, 1)
    orders_delta = [
        k
        for k in dry.kpi_deltas  # type: ignore[attr-defined]
        if k.table == "daily_kpis" and k.kpi == "orders"
    ]
    assert [(str(k.day), k.delta) for k in orders_delta] == [(backfilled.cancelled_day, -1)]


def test_the_real_backfill_publishes_exactly_what_the_dry_run_reported(
    spark: SparkSession, backfilled: Backfilled
) -> None:
    assert backfilled.real.diffs == backfilled.dry.diffs  # type: ignore[attr-defined]
    assert backfilled.real.kpi_deltas == backfilled.dry.kpi_deltas  # type: ignore[attr-defined]
    status = (
        show(spark, backfilled.lh, "silver.orders")
        .where(F.col("order_id") == backfilled.cancelled_order)
        .select("status")
        .first()
    )
    assert status is not None and status["status"] == "cancelled"


def test_the_backfill_compares_figures_day_by_day_in_the_gold_tables_of_one_row_per_day() -> None:
    assert daily_tables(Lakehouse.load("local")) == {
        "daily_funnel": "session_date",
        "daily_kpis": "order_date",
        "daily_payments": "event_date",
    }


def test_the_backfill_command_prints_the_diff_and_keeps_it_with_the_runs_reports(
    backfilled: Backfilled, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command around the dry run above (on EMR its output would be only in the job's logs).
    monkeypatch.setattr("lakehouse.cli.time_travel.lakehouse_of", lambda _: backfilled.lh)
    monkeypatch.setattr("lakehouse.ops.backfill.backfill", lambda *a, **k: backfilled.dry)
    args = argparse.Namespace(start=DAYS[0], end=DAYS[2], dry_run=True)

    assert cmd_backfill(args) == 0

    text = describe(backfilled.dry)  # type: ignore[arg-type]
    run_id = backfilled.dry.run_id  # type: ignore[attr-defined]
    kept = Path(backfilled.lh.config.storage.reports_root) / "runs" / run_id / "backfill.txt"
    assert kept.read_text(encoding="utf-8") == text + "\n"
    assert capsys.readouterr().out == f"{text}\ndiff kept in {kept}\n"
