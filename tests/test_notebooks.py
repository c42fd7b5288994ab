"""The notebooks run top to bottom in a real kernel against a small lakehouse the pipeline built,
and the figures they show are the lakehouse's own.

Each notebook runs like papermill would run it: a cell setting `LAKEHOUSE_ROOT` (and only that)
is inserted after the cell tagged `parameters`, and a last cell prints, as JSON, the variables
the notebook leaves for its reader; the test compares them with the Delta tables read by path
with the test's own session.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nbformat
import pytest
from delta.tables import DeltaTable
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.context import Lakehouse
from lakehouse.pipeline import run_pipeline
from lakehouse_dev.generate import generate_landing
from lakehouses import local_lakehouse

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
VALUES_MARKER = "notebook-values:"

EXPLORE_VALUES = (
    "kpi_days",
    "kpi_total_orders",
    "kpi_total_gross_revenue",
    "kpi_total_net_revenue",
    "kpi_total_new_customers",
    "kpi_total_orders_unpriced",
    "kpi_total_captured",
    "kpi_total_refunded",
    "kpi_series",
    "retention_cells",
    "drill_date",
    "drill_order_ids",
    "drill_counted_orders",
    "drill_gross_revenue_usd",
    "drill_kpi_gross_revenue_usd",
    "drill_payment_event_ids",
)
HISTORY_VALUES = (
    "HISTORY_TABLE",
    "history_versions",
    "as_of_version",
    "as_of_row_count",
    "current_row_count",
    "diff_rows_added",
    "diff_rows_removed",
    "ledger_by_run",
    "quarantine_by_reason",
    "quality_runs",
    "quality_status_by_run",
    "quality_trends",
)


@dataclass
class Executed:
    values: dict[str, Any]
    images: int
    notebook: nbformat.NotebookNode


def _parameter_cell(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def execute(
    name: str, parameters: dict[str, Any], workdir: Path, names: tuple[str, ...]
) -> Executed:
    """Run notebook `name` with `parameters` injected after its parameter cell, in a kernel of
    this interpreter started in `workdir`; return the variables `names` it left."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    injected = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    nb.cells.insert(
        _parameter_cell(nb) + 1,
        new_code_cell(injected, metadata={"tags": ["injected-parameters"]}),
    )
    entries = ", ".join(f"{n!r}: {n}" for n in names)
    nb.cells.append(
        new_code_cell(
            "import json, sys\n"
            f"_values = {{'python': sys.executable, {entries}}}\n"
            f"print({VALUES_MARKER!r} + json.dumps(_values, default=str))"
        )
    )
    workdir.mkdir(parents=True, exist_ok=True)
    # The kernel is a fresh process: its own Spark (a separate JVM), nothing of this session's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY")}
    env["IPYTHONDIR"] = str(workdir / ".ipython")
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=900,
        startup_timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=env)
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next(ln for ln in printed.splitlines() if ln.startswith(VALUES_MARKER))
    images = sum(
        1
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    )
    return Executed(json.loads(line[len(VALUES_MARKER) :]), images, nb)


@pytest.fixture(scope="module")
def lakehouse(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Lakehouse:
    """Three days of a small shop in two runs: days 1-2, then day 3 (so tables have history and
    the quality results two runs)."""
    lh = local_lakehouse(tmp_path_factory.mktemp("notebooks"))
    spec = replace(lh.config.generator, customers=30, days=3, orders_per_day=20)
    generate_landing(lh.config.storage.landing_root, spec)
    days = [(spec.start_date + timedelta(days=i)).isoformat() for i in range(spec.days)]
    run_pipeline(spark, lh, "run-1", dates=days[:2])
    run_pipeline(spark, lh, "run-2", dates=days[2:])
    return lh


def _drill_day(spark: SparkSession, lh: Lakehouse) -> date:
    """The first day with a live cancelled order: its drill-down must leave that order out."""
    row = (
        _read(spark, lh, "silver", "orders")
        .where((F.col("status") == "cancelled") & ~F.col("_is_deleted"))
        .agg(F.min("order_date").alias("day"))
        .first()
    )
    assert row is not None and row["day"] is not None, "the sample shop has no cancelled order"
    return row["day"]


@pytest.fixture(scope="module")
def explore(
    spark: SparkSession, lakehouse: Lakehouse, tmp_path_factory: pytest.TempPathFactory
) -> Executed:
    return execute(
        "explore_kpis.ipynb",
        {
            "LAKEHOUSE_ROOT": lakehouse.root,
            "DRILL_DATE": _drill_day(spark, lakehouse).isoformat(),
        },
        tmp_path_factory.mktemp("explore-kernel"),
        EXPLORE_VALUES,
    )


@pytest.fixture(scope="module")
def history(lakehouse: Lakehouse, tmp_path_factory: pytest.TempPathFactory) -> Executed:
    return execute(
        "history_and_quality.ipynb",
        {"LAKEHOUSE_ROOT": lakehouse.root},
        tmp_path_factory.mktemp("history-kernel"),
        HISTORY_VALUES,
    )


def _read(spark: SparkSession, lh: Lakehouse, layer: str, table: str) -> DataFrame:
    return spark.read.format("delta").load(lh.path(f"{layer}.{table}"))


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


# --- stored notebooks (no Spark) -----------------------------------------------------------


def test_notebooks_are_stored_without_outputs_and_with_a_local_parameter_cell() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert {"explore_kpis.ipynb", "history_and_quality.ipynb"} <= set(names)
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name}: a cell has outputs"
                assert cell.execution_count is None, f"{name}: a cell has an execution count"
        parameters = nb.cells[_parameter_cell(nb)].source
        assert 'ENV = "local"' in parameters, name
        assert "LAKEHOUSE_ROOT = None" in parameters, name


# --- explore_kpis.ipynb ----------------------------------------------------------------------


def test_the_kernel_is_this_interpreter(explore: Executed, history: Executed) -> None:
    assert explore.values["python"] == history.values["python"] == sys.executable


def test_kpi_totals_are_the_sums_of_gold_daily_kpis(
    spark: SparkSession, lakehouse: Lakehouse, explore: Executed
) -> None:
    kpis = _read(spark, lakehouse, "gold", "daily_kpis")
    totals = kpis.agg(
        F.sum("orders").alias("orders"),
        F.sum("gross_revenue_usd").alias("gross"),
        F.sum("net_revenue_usd").alias("net"),
        F.sum("new_customers").alias("new"),
        F.sum("orders_unpriced").alias("unpriced"),
    ).first()
    payments = (
        _read(spark, lakehouse, "gold", "daily_payments")
        .agg(F.sum("captured_usd").alias("captured"), F.sum("refunded_usd").alias("refunded"))
        .first()
    )
    days = [r["order_date"].isoformat() for r in kpis.orderBy("order_date").collect()]
    v = explore.values

    assert v["kpi_days"] == days and len(days) >= 3
    assert v["kpi_total_orders"] == totals["orders"] > 0
    assert _dec(v["kpi_total_gross_revenue"]) == totals["gross"] > 0
    assert _dec(v["kpi_total_net_revenue"]) == totals["net"]
    assert v["kpi_total_new_customers"] == totals["new"]
    assert v["kpi_total_orders_unpriced"] == totals["unpriced"]
    assert _dec(v["kpi_total_captured"]) == payments["captured"]
    assert _dec(v["kpi_total_refunded"]) == payments["refunded"]


def test_the_plotted_series_are_the_gold_columns_day_by_day(
    spark: SparkSession, lakehouse: Lakehouse, explore: Executed
) -> None:
    rows = _read(spark, lakehouse, "gold", "daily_kpis").orderBy("order_date").collect()
    series = explore.values["kpi_series"]

    for column in (
        "orders",
        "gross_revenue_usd",
        "net_revenue_usd",
        "avg_order_value_usd",
        "new_customers",
        "returning_customers",
    ):
        assert [_dec(x) for x in series[column]] == [_dec(r[column]) for r in rows], column


def test_the_retention_heat_map_holds_every_cell_of_gold_customer_retention(
    spark: SparkSession, lakehouse: Lakehouse, explore: Executed
) -> None:
    rows = (
        _read(spark, lakehouse, "gold", "customer_retention")
        .orderBy("cohort_month", "months_since")
        .collect()
    )

    assert [
        [cohort, months, _dec(rate)] for cohort, months, rate in explore.values["retention_cells"]
    ] == [[r["cohort_month"].isoformat(), r["months_since"], r["retention_rate"]] for r in rows]
    assert rows


def test_the_drill_down_reconciles_a_day_with_its_orders_and_payments(
    spark: SparkSession, lakehouse: Lakehouse, explore: Executed
) -> None:
    day = _drill_day(spark, lakehouse)
    kpi = (
        _read(spark, lakehouse, "gold", "daily_kpis")
        .where(F.col("order_date") == F.lit(day))
        .first()
    )
    orders = (
        _read(spark, lakehouse, "silver", "orders")
        .where((F.col("order_date") == F.lit(day)) & ~F.col("_is_deleted"))
        .select("order_id", "status")
    )
    order_ids = sorted(r["order_id"] for r in orders.collect())
    event_ids = sorted(
        r["event_id"]
        for r in _read(spark, lakehouse, "gold", "fact_payments").join(orders, "order_id").collect()
    )
    v = explore.values

    assert kpi is not None
    assert v["drill_date"] == day.isoformat()
    assert v["drill_order_ids"] == order_ids
    # The day's cancelled order is listed but neither counted nor in the revenue.
    assert v["drill_counted_orders"] == kpi["orders"] < len(order_ids)
    assert _dec(v["drill_gross_revenue_usd"]) == kpi["gross_revenue_usd"] > 0
    assert _dec(v["drill_kpi_gross_revenue_usd"]) == kpi["gross_revenue_usd"]
    assert v["drill_payment_event_ids"] == event_ids and event_ids


def test_the_notebooks_draw_their_figures(explore: Executed, history: Executed) -> None:
    # KPIs (one figure of four charts) and the retention heat map; the quality trends.
    assert explore.images == 2
    assert history.images == 1


# --- history_and_quality.ipynb ---------------------------------------------------------------


def test_the_history_lists_every_version_of_the_table(
    spark: SparkSession, lakehouse: Lakehouse, history: Executed
) -> None:
    assert history.values["HISTORY_TABLE"] == "gold.daily_kpis"
    versions = sorted(
        int(r["version"])
        for r in DeltaTable.forPath(spark, lakehouse.path("gold.daily_kpis")).history().collect()
    )

    assert history.values["history_versions"] == versions
    assert len(versions) > 1


def test_the_table_as_of_the_previous_version_and_the_difference_from_now(
    spark: SparkSession, lakehouse: Lakehouse, history: Executed
) -> None:
    path = lakehouse.path("gold.daily_kpis")
    latest = max(history.values["history_versions"])
    then = spark.read.format("delta").option("versionAsOf", latest - 1).load(path)
    now = spark.read.format("delta").load(path)
    v = history.values

    assert v["as_of_version"] == latest - 1
    assert v["as_of_row_count"] == then.count()
    assert v["current_row_count"] == now.count()
    assert v["diff_rows_added"] == now.exceptAll(then).count() > 0  # run 2 added day 3
    assert v["diff_rows_removed"] == then.exceptAll(now).count()


def test_the_ledger_shows_what_each_run_read_merged_and_quarantined(
    spark: SparkSession, lakehouse: Lakehouse, history: Executed
) -> None:
    rows = (
        _read(spark, lakehouse, "ledger", "runs")
        .groupBy("run_id", "layer")
        .agg(
            F.sum("records_read").alias("read"),
            F.sum("records_written").alias("written"),
            F.sum(
                F.coalesce("inserted", F.lit(0))
                + F.coalesce("updated", F.lit(0))
                + F.coalesce("deleted", F.lit(0))
            ).alias("merged"),
            F.sum("quarantined").alias("quarantined"),
        )
        .collect()
    )
    expected = {
        f"{r['run_id']}/{r['layer']}": {
            "records_read": r["read"],
            "records_written": r["written"] or 0,
            "merged": r["merged"],
            "quarantined": r["quarantined"] or 0,
        }
        for r in rows
    }

    assert history.values["ledger_by_run"] == expected
    assert {"run-1/bronze", "run-1/silver", "run-2/bronze", "run-2/silver"} <= set(expected)
    assert expected["run-2/bronze"]["records_read"] > 0


def test_quarantine_counts_by_reason_are_the_quarantine_tables(
    spark: SparkSession, lakehouse: Lakehouse, history: Executed
) -> None:
    quarantine = _read(spark, lakehouse, "quarantine", "records")
    expected = {r["reason"]: r["count"] for r in quarantine.groupBy("reason").count().collect()}

    assert history.values["quarantine_by_reason"] == expected
    assert expected


def test_quality_results_and_trends_cover_both_runs(
    spark: SparkSession, lakehouse: Lakehouse, history: Executed
) -> None:
    results = _read(spark, lakehouse, "quality", "results")
    status = {run: {"passed": 0, "failed": 0} for run in ("run-1", "run-2")}
    for r in results.groupBy("run_id", "status").count().collect():
        status[r["run_id"]][r["status"]] = r["count"]
    trends: dict[str, dict[str, float | None]] = {}
    for r in results.collect():
        trends.setdefault(f"{r['layer']}.{r['table']}/{r['check']}", {})[r["run_id"]] = r["value"]
    v = history.values

    assert v["quality_runs"] == ["run-1", "run-2"]
    assert v["quality_status_by_run"] == status
    assert v["quality_trends"] == {
        check: [by_run.get("run-1"), by_run.get("run-2")] for check, by_run in trends.items()
    }
    assert len(v["quality_trends"]) >= 10
