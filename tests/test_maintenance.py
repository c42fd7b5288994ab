"""Maintenance (issue #7): compaction (Z-ordered where configured) that keeps every row, VACUUM
within the configured time-travel window, retention settings that can never go below it.

The story (module fixture) on a small lakehouse of two tables: `gold.events`, 20 appends into 2
partitions, Z-ordered by `id` in the configuration; `bronze.legacy`, a table with a raw record
column created before Delta was told to keep no statistics of it. Then: a maintenance run with the
configured retention, a second one with nothing new, a refused call below the window, and a
test-only run with retention 0.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.cli import build_parser, main
from lakehouse.core.config import DEFAULT_CONF_DIR, ConfigError, load_config
from lakehouse.core.context import Lakehouse
from lakehouse.core.pii import personal_columns
from lakehouse.ops.maintenance import (
    RETENTION_CHECK_CONF,
    MaintenanceConfigError,
    MaintenanceRun,
    RetentionBelowWindowError,
    TableReport,
    maintain,
    read_maintenance,
    zorder_settings,
)

EVENTS_DDL = "id long, day date, amount decimal(18,2), note string"
LEGACY_DDL = "_record_id string, raw string"
SECRET = "legacy.secret@example.org"
WINDOW = "interval 168 hours"


def lakehouse(base: Path, **maintenance: object) -> Lakehouse:
    return Lakehouse.load(
        "local",
        overrides={
            "storage": {
                "landing_root": str(base / "landing"),
                "lakehouse_root": str(base / "lake"),
                "reports_root": str(base / "reports"),
            },
            "maintenance": {"tables": {"gold.events": {"zorder_by": ["id"]}}, **maintenance},
        },
    )


@dataclass
class Story:
    lh: Lakehouse
    events: str
    legacy: str
    rows_before: DataFrame
    first: MaintenanceRun
    version_1_after_first: int
    second: MaintenanceRun
    versions_before_refused: dict[str, int]
    versions_after_refused: dict[str, int]
    refused: str
    zero: MaintenanceRun
    check_after_zero: str | None


def read_ids(spark: SparkSession, path: str, version: int) -> int:
    """The sum of `id` at `version`: reads the data files (a count would come from the log)."""
    row = spark.read.format("delta").option("versionAsOf", version).load(path).agg(F.sum("id"))
    return int(row.first()[0])


def version(spark: SparkSession, path: str) -> int:
    return int(DeltaTable.forPath(spark, path).history(1).first()["version"])


@pytest.fixture(scope="module")
def story(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Story:
    lh = lakehouse(tmp_path_factory.mktemp("maintenance"))
    events = lh.path("gold.events")
    legacy = lh.path("bronze.legacy")
    for i in range(20):
        day = date(2024, 1, 1 + (i % 2))
        rows = [(i * 5 + n, day, Decimal(f"{i}.{n:02d}"), f"note {i}") for n in range(5)]
        spark.createDataFrame(rows, EVENTS_DDL).coalesce(1).write.format("delta").mode(
            "append"
        ).partitionBy("day").save(events)
    for i in range(3):
        record = [(f"r{i}", f'{{"email":"{SECRET}","n":{i}}}')]
        spark.createDataFrame(record, LEGACY_DDL).write.format("delta").mode("append").save(legacy)
    rows_before = spark.read.format("delta").load(events).localCheckpoint()

    first = maintain(spark, lh)
    version_1 = read_ids(spark, events, 1)
    second = maintain(spark, lh)
    before = {p: version(spark, p) for p in (events, legacy)}
    with pytest.raises(RetentionBelowWindowError) as refused:
        maintain(spark, lh, retention_hours=24)
    after = {p: version(spark, p) for p in (events, legacy)}
    zero = maintain(spark, lh, retention_hours=0, allow_below_window_for_tests=True)
    return Story(
        lh,
        events,
        legacy,
        rows_before,
        first,
        version_1,
        second,
        before,
        after,
        str(refused.value),
        zero,
        spark.conf.get(RETENTION_CHECK_CONF, None),
    )


def report(run: MaintenanceRun, table: str) -> TableReport:
    return next(r for r in run.tables if r.table_name == table)


def test_compaction_leaves_one_file_per_partition_and_every_row(
    spark: SparkSession, story: Story
) -> None:
    events = report(story.first, "gold.events")
    now = spark.read.format("delta").load(story.events)

    assert events.files_before == 20
    assert events.files_after == 2
    assert events.bytes_after < events.bytes_before
    assert now.count() == story.rows_before.count() == 100
    assert now.exceptAll(story.rows_before).count() == 0
    assert story.rows_before.exceptAll(now).count() == 0


def test_the_configured_columns_are_z_ordered(spark: SparkSession, story: Story) -> None:
    history = DeltaTable.forPath(spark, story.events).history().where("operation = 'OPTIMIZE'")
    zorders = [json.loads(r["operationParameters"]["zOrderBy"]) for r in history.collect()]

    assert report(story.first, "gold.events").optimized == "zorder"
    assert report(story.first, "gold.events").zorder_by == ("id",)
    assert zorders == [["id"]]


def test_vacuum_within_the_window_keeps_every_version_readable(story: Story) -> None:
    events = report(story.first, "gold.events")

    assert events.storage_files_before == 20
    assert events.storage_files_after == 22
    assert story.version_1_after_first == sum(range(10))


def test_retention_properties_follow_the_time_travel_window(
    spark: SparkSession, story: Story
) -> None:
    for path in (story.events, story.legacy):
        properties = DeltaTable.forPath(spark, path).detail().first()["properties"]
        assert properties["delta.deletedFileRetentionDuration"] == WINDOW
        assert properties["delta.logRetentionDuration"] == WINDOW


def test_a_raw_record_column_keeps_no_statistics_in_any_live_file(
    spark: SparkSession, story: Story
) -> None:
    live = {Path(f).name for f in spark.read.format("delta").load(story.legacy).inputFiles()}
    adds = [
        json.loads(line)["add"]
        for log in sorted(Path(story.legacy, "_delta_log").glob("*.json"))
        for line in log.read_text(encoding="utf-8").splitlines()
        if '"add"' in line
    ]
    live_adds = [a for a in adds if Path(a["path"]).name in live]

    assert report(story.first, "bronze.legacy").optimized == "rewrite"
    assert live_adds and all(SECRET not in a.get("stats", "") for a in live_adds)
    assert all("raw" not in json.loads(a["stats"])["minValues"] for a in live_adds)
    assert (
        DeltaTable.forPath(spark, story.legacy)
        .detail()
        .first()["properties"]["delta.dataSkippingStatsColumns"]
        == "_record_id"
    )


def test_a_second_run_with_nothing_new_rewrites_nothing(story: Story) -> None:
    events = report(story.second, "gold.events")

    assert events.optimized == "skipped"
    assert events.properties_set == ()
    assert events.files_before == events.files_after == 2


def test_every_run_is_recorded_per_table(spark: SparkSession, story: Story) -> None:
    rows = read_maintenance(spark, story.lh).where(F.col("run_id") == story.first.run_id).collect()

    assert {r["table_name"] for r in rows} == {"gold.events", "bronze.legacy"}
    events = next(r for r in rows if r["table_name"] == "gold.events")
    assert (events["files_before"], events["files_after"], events["zorder_by"]) == (20, 2, "id")
    assert events["retention_hours"] == 168.0


def test_a_retention_below_the_window_is_refused_before_anything_is_written(
    story: Story,
) -> None:
    assert story.refused.startswith(
        "a VACUUM retention of 24 hours is below the time-travel window of 168 hours"
    )
    assert story.versions_after_refused == story.versions_before_refused


def test_the_test_only_flag_vacuums_below_the_window_and_restores_deltas_check(
    spark: SparkSession, story: Story
) -> None:
    events = report(story.zero, "gold.events")

    assert events.storage_files_after == events.files_after == 2
    assert story.check_after_zero == "true"
    with pytest.raises(Exception, match=r"FileNotFound|does not exist"):
        read_ids(spark, story.events, 1)


# --- configuration --------------------------------------------------------------------------------


def test_a_configured_retention_below_the_window_fails_at_load(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_CONF_DIR / "base.yaml", tmp_path / "base.yaml")
    overlay = tmp_path / "short.yaml"
    overlay.write_text("maintenance:\n  vacuum_retention_hours: 24\n", encoding="utf-8")

    with pytest.raises(ConfigError) as err:
        load_config("short", conf_dir=tmp_path)

    assert str(err.value) == (
        f"{overlay}: key 'maintenance.vacuum_retention_hours': 24 hours is below the time-travel "
        "window (maintenance.time_travel_window_hours = 168); VACUUM would delete files that "
        "versions inside the window still need"
    )


def test_a_silver_z_order_on_a_partition_column_fails_at_load(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    orders = conf / "tables" / "orders.yaml"
    text = orders.read_text(encoding="utf-8")
    orders.write_text(
        text.replace("zorder_by: [customer_id]", "zorder_by: [order_date]"), encoding="utf-8"
    )

    with pytest.raises(
        ConfigError,
        match=r"orders.yaml: maintenance.zorder_by: 'order_date' is a "
        r"partition column",
    ):
        Lakehouse.load("local", conf_dir=conf)


def test_z_order_columns_come_from_each_tables_spec_and_maintenance_tables_for_the_rest() -> None:
    assert zorder_settings(Lakehouse.load("local")) == {
        "silver.clickstream": ("customer_id",),
        "silver.customers": ("customer_id",),
        "silver.orders": ("customer_id",),
        "silver.order_items": ("order_id",),
        "silver.payments": ("order_id",),
        "silver.products": ("product_id",),
        "gold.dim_customers": ("customer_id",),
        "gold.fact_orders": ("order_date", "customer_id"),
        "gold.fact_payments": ("event_date",),
        "gold.product_engagement": ("product_id",),
        "gold.sessions": ("session_date",),
        "silver.customers_history": ("customer_id",),
        "silver.products_history": ("product_id",),
    }


@pytest.mark.parametrize(
    ("table", "spec_file"),
    [
        ("silver.customers", "tables/customers.yaml"),
        ("gold.fact_orders", "gold/fact_orders.yaml"),
        ("gold.daily_kpis", "gold/daily_kpis.yaml"),
    ],
)
def test_a_table_with_a_spec_named_in_maintenance_tables_too_is_refused(
    table: str, spec_file: str
) -> None:
    lh = Lakehouse.load(
        "local", overrides={"maintenance": {"tables": {table: {"zorder_by": ["customer_id"]}}}}
    )

    with pytest.raises(ConfigError) as err:
        zorder_settings(lh)

    assert str(err.value) == (
        f"maintenance.tables.{table} (conf/base.yaml or conf/local.yaml): {table} is defined in "
        f"{lh.config.conf_dir}/{spec_file}; set its Z-order columns there "
        "(maintenance.zorder_by)"
    )


def test_the_conf_dir_reaches_the_z_order_columns_of_the_gold_specs(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    payments = conf / "gold" / "fact_payments.yaml"
    text = payments.read_text(encoding="utf-8")
    payments.write_text(
        text.replace("zorder_by: [event_date]", "zorder_by: [order_id]"), encoding="utf-8"
    )

    settings = zorder_settings(Lakehouse.load("local", conf_dir=conf))

    assert settings["gold.fact_payments"] == ("order_id",)
    assert zorder_settings(Lakehouse.load("local"))["gold.fact_payments"] == ("event_date",)


def test_a_configured_z_order_on_a_partition_column_is_refused_before_anything_runs(
    spark: SparkSession, story: Story
) -> None:
    lh = lakehouse(
        Path(story.lh.root).parent,
        tables={"gold.events": {"zorder_by": ["day"]}},
    )
    before = version(spark, story.events)

    with pytest.raises(MaintenanceConfigError, match=r"'day' is a partition column of gold\."):
        maintain(spark, lh)
    assert version(spark, story.events) == before


def test_a_gold_table_configured_in_its_spec_and_in_maintenance_tables_stops_maintain(
    spark: SparkSession, story: Story
) -> None:
    lh = lakehouse(
        Path(story.lh.root).parent,
        tables={"gold.fact_orders": {"zorder_by": ["customer_id"]}},
    )
    before = {p: version(spark, p) for p in (story.events, story.legacy)}

    with pytest.raises(ConfigError, match=r"gold.fact_orders is defined in .*fact_orders.yaml"):
        maintain(spark, lh)
    assert {p: version(spark, p) for p in (story.events, story.legacy)} == before


def test_personal_columns_are_derived_from_the_specs(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    clicks = conf / "tables" / "clickstream.yaml"
    text = clicks.read_text(encoding="utf-8")
    clicks.write_text(text.replace("  drop: [ip]", "  hash: [ip]"), encoding="utf-8")
    tables = Lakehouse.load("local").tables

    assert personal_columns(tables, "bronze") == {"raw", "fields", "email_hash", "phone_hash"}
    assert personal_columns(tables, "quarantine") == {"raw", "reason", "email_hash", "phone_hash"}
    assert personal_columns(tables, "silver") == {"email_hash", "phone_hash"}
    assert personal_columns(tables, "gold") == personal_columns(tables, "silver")
    assert personal_columns(Lakehouse.load("local", conf_dir=conf).tables, "gold") == {
        "email_hash",
        "phone_hash",
        "ip_hash",
    }


# --- the command ---------------------------------------------------------------------------------


def test_maintain_prints_files_and_bytes_before_and_after(
    spark: SparkSession,
    story: Story,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    root = Path(story.lh.root).parent
    (conf / "local.yaml").write_text(
        "storage:\n"
        f"  landing_root: {root / 'landing'}\n  lakehouse_root: {root / 'lake'}\n"
        f"  reports_root: {root / 'reports'}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr("lakehouse.cli.maintenance.session", lambda lh, app: spark)

    status = main(["--conf-dir", str(conf), "maintain", "--table", "gold.events"])
    out = capsys.readouterr().out

    assert status == 0
    assert "VACUUM retention 168 hours" in out
    assert "table" in out and "storage files" in out
    assert "gold.events" in out and "2 -> 2" in out
    assert "bronze.legacy" not in out


def test_the_unsafe_retention_flag_is_hidden_and_erase_needs_a_customer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["maintain", "--help"])
    help_text = capsys.readouterr().out
    args = parser.parse_args(["maintain", "--unsafe-retention-hours", "0"])

    assert "--table" in help_text and "unsafe" not in help_text
    assert args.unsafe_retention_hours == 0.0
    with pytest.raises(SystemExit):
        parser.parse_args(["erase"])
    assert parser.parse_args(["erase", "--customer", "c1"]).customer == "c1"
