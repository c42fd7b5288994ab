"""The whole pipeline on a small generated shop: what `make run` does, end to end."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core.config import CatalogConfig
from lakehouse.core.context import Lakehouse
from lakehouse.gold.published import published_versions, read_gold
from lakehouse.pipeline import RunReport, run_pipeline
from lakehouse.state.catalog import LAYERS, pinned_to, register_tables
from lakehouse.state.ledger import read_ledger
from lakehouse_dev.browser import inspect_page
from lakehouse_dev.fingerprint import lakehouse_fingerprints
from lakehouse_dev.generate import generate_landing
from lakehouses import local_lakehouse


@dataclass
class Built:
    lh: Lakehouse
    first: RunReport
    versions_after_first: dict[str, int]
    second: RunReport
    versions_after_second: dict[str, int]


def _versions(spark: SparkSession, lh: Lakehouse) -> dict[str, int]:
    out = {}
    root = Path(lh.root)
    for layer in ("bronze", "silver", "gold"):
        for table in sorted(p for p in (root / layer).iterdir() if (p / "_delta_log").is_dir()):
            history = DeltaTable.forPath(spark, str(table)).history(1).first()
            assert history is not None
            out[f"{layer}.{table.name}"] = int(history["version"])
    return out


@pytest.fixture(scope="module")
def built(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("pipeline")
    lh = local_lakehouse(base)
    spec = replace(lh.config.generator, customers=30, days=3, orders_per_day=20)
    generate_landing(lh.config.storage.landing_root, spec)
    # An empty catalog, as a new session has (the test session's is shared by every module,
    # and `lakehouse maintain` in test_maintenance.py registers its own lakehouse's tables).
    for layer in LAYERS:
        spark.sql(f"DROP DATABASE IF EXISTS {layer} CASCADE")  # external tables: data stays
    first = run_pipeline(spark, lh, "run-1")
    after_first = _versions(spark, lh)
    second = run_pipeline(spark, lh, "run-2")
    return Built(lh, first, after_first, second, _versions(spark, lh))


def test_every_ledger_row_of_both_runs_balances(spark: SparkSession, built: Built) -> None:
    outcomes = [
        "records_written",
        "inserted",
        "updated",
        "deleted",
        "unchanged",
        "duplicates",
        "stale_ignored",
        "quarantined",
    ]
    rows = read_ledger(spark, built.lh).collect()

    assert {(r["run_id"], r["layer"]) for r in rows} == {
        ("run-1", "bronze"),
        ("run-1", "silver"),
        ("run-2", "bronze"),
        ("run-2", "silver"),
    }
    for row in rows:
        assert row["records_read"] == sum(row[c] or 0 for c in outcomes), row


def test_a_second_run_on_the_same_landing_zone_changes_no_table(built: Built) -> None:
    assert built.versions_after_second == built.versions_after_first
    assert all(e.records_read == 0 for e in built.second.bronze + built.second.silver)


def test_tables_are_registered_by_layer_and_name(spark: SparkSession, built: Built) -> None:
    wanted = {"bronze.orders", "silver.orders", "gold.daily_kpis", "ledger.runs"}
    registered = {
        f"{database}.{t.name}"
        for database in {n.split(".")[0] for n in wanted}
        for t in spark.catalog.listTables(database)
    }

    assert wanted <= registered
    assert register_tables(spark, built.lh) == []  # the runs registered them: nothing is new
    live_orders = spark.sql("SELECT count(*) AS n FROM silver.orders WHERE NOT _is_deleted")
    by_path = (
        spark.read.format("delta")
        .load(built.lh.path("silver.orders"))
        .where(~F.col("_is_deleted"))
        .count()
    )
    assert live_orders.first()["n"] == by_path > 0


def test_an_environments_databases_carry_its_prefix(spark: SparkSession, built: Built) -> None:
    # Environments sharing an account's Glue Data Catalog (dev and prod) keep apart by prefix.
    dev = built.lh.with_config(catalog=CatalogConfig("lakehouse_test_"))
    try:
        registered = register_tables(spark, dev)

        plain = {
            f"{d}.{t.name}"
            for d in LAYERS
            if spark.catalog.databaseExists(d)
            for t in spark.catalog.listTables(d)
        }
        assert sorted(registered) == sorted(f"lakehouse_test_{n}" for n in plain)
        assert dev.catalog_name("gold.daily_kpis") == "lakehouse_test_gold.daily_kpis"
        published = published_versions(spark, built.lh)["daily_kpis"]
        assert pinned_to(spark, "lakehouse_test_gold.daily_kpis") == (
            built.lh.path("gold.daily_kpis"),
            published,
        )
        assert register_tables(spark, dev) == []
    finally:
        for layer in LAYERS:
            # External tables and views: dropping the names leaves every file in place.
            spark.sql(f"DROP DATABASE IF EXISTS lakehouse_test_{layer} CASCADE")


def test_gold_names_are_views_of_the_published_set(spark: SparkSession, built: Built) -> None:
    published = published_versions(spark, built.lh)
    gold = {t.name: t.tableType for t in spark.catalog.listTables("gold")}

    assert {gold[t] for t in published} == {"VIEW"}
    assert gold["consumed_versions"] == gold["published"] == "EXTERNAL"  # records: tables
    for table, version in published.items():
        assert pinned_to(spark, f"gold.{table}") == (built.lh.path(f"gold.{table}"), version)
    by_name = spark.sql("SELECT * FROM gold.daily_kpis ORDER BY order_date").collect()
    assert by_name == read_gold(spark, built.lh, "daily_kpis").orderBy("order_date").collect()


def test_the_dashboard_carries_the_gold_figures(spark: SparkSession, built: Built) -> None:
    assert built.first.dashboard is not None
    html = Path(built.first.dashboard).read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="kpi-data">(.*?)</script>', html, re.S)
    assert block is not None
    embedded = json.loads(block.group(1))
    gold = (
        spark.read.format("delta")
        .load(built.lh.path("gold.daily_kpis"))
        .orderBy("order_date")
        .collect()
    )

    days = sorted(embedded["daily_kpis"], key=lambda d: d["order_date"])
    assert [(d["order_date"], d["orders"], d["gross_revenue_usd"]) for d in days] == [
        (r["order_date"].isoformat(), r["orders"], str(r["gross_revenue_usd"])) for r in gold
    ]


def test_the_dashboard_opens_in_a_browser_showing_the_gold_figures(
    spark: SparkSession, built: Built, chromium: Any
) -> None:
    assert built.first.dashboard is not None
    page = Path(built.first.dashboard)

    check = inspect_page(chromium, page, texts=["#daily-figures", "#tiles"])

    assert check.problems == []
    assert Path(check.screenshot) == page.with_suffix(".png")  # under the run's reports folder
    shown = {
        line.split("\t")[0]: line.split("\t") for line in check.texts["#daily-figures"].splitlines()
    }
    gold = read_gold(spark, built.lh, "daily_kpis").orderBy("order_date").collect()
    assert gold
    for row in gold:
        cells = shown[row["order_date"].isoformat()]
        assert cells[1:4] == [
            f"{row['orders']:,}",
            f"${row['gross_revenue_usd']:,.2f}",
            f"${row['net_revenue_usd']:,.2f}",
        ]
    gross = sum(r["gross_revenue_usd"] for r in gold)
    assert f"${gross:,.2f}" in check.texts["#tiles"]


def test_the_index_lists_the_publishing_run_and_the_run_with_nothing_new(
    spark: SparkSession, built: Built, chromium: Any
) -> None:
    root = Path(built.lh.config.storage.reports_root)
    page = root / "index.html"

    check = inspect_page(chromium, page, texts=["#runs"])

    assert check.problems == []
    html = page.read_text(encoding="utf-8")
    assert re.findall(r'<tr data-run="([^"]+)" data-verdict="([^"]+)"', html) == [
        ("run-2", "nothing new"),  # the second run found nothing new to publish
        ("run-1", "published"),
    ]
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert "runs/run-1/dashboard.html" in hrefs and "runs/run-1/quality.html" in hrefs
    assert all((root / h).is_file() for h in hrefs)
    landed = sum(
        r["records_read"]
        for r in read_ledger(spark, built.lh)
        .where("run_id = 'run-1' AND layer = 'bronze'")
        .collect()
    )
    assert landed > 0
    failed = (
        spark.read.format("delta")
        .load(built.lh.path("quality.results"))
        .where("run_id = 'run-1' AND status = 'failed'")
        .groupBy("severity")
        .count()
        .collect()
    )
    count = {r["severity"]: r["count"] for r in failed}
    assert count.get("error", 0) == 0  # published
    (row,) = [line for line in check.texts["#runs"].splitlines() if line.startswith("run-1\t")]
    cells = row.split("\t")
    assert cells[2] == "bronze, silver, quality, gold"  # the steps run_pipeline recorded
    assert cells[3:7] == ["published", "0", str(count.get("warning", 0)), f"{landed:,}"]


def test_the_engines_keep_every_row_of_the_golden_lakehouse(
    spark: SparkSession, built: Built
) -> None:
    """Every bronze, silver, gold and quarantine table holds exactly the rows (by key and value)
    that the engines before the architecture rework wrote from the same landing (the clickstream's
    tables, and the behaviour marts, as the generator's funnel sessions and the marts' first
    version made them: the marts' values are computed by hand in test_gold_behaviour.py and
    test_gold_build.py, the generator's sessions checked in test_generate.py)."""
    golden = Path(__file__).parent / "golden" / "pipeline.json"
    expected = json.loads(golden.read_text(encoding="utf-8"))

    found = lakehouse_fingerprints(spark, built.lh.root)

    assert sorted(found) == sorted(expected)
    assert {t: f for t, f in found.items() if f != expected[t]} == {}
