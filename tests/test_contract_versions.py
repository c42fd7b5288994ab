"""A landing contract version that adds a column (docs/CONTRACTS.md): `orders.channel`, declared
`since: 2`, is left out while the lakehouse is on version 1; raised to 2, silver and gold gain it
by Delta schema evolution without rewriting what they hold, earlier versions stay readable, and a
run from before the change is still reproduced exactly."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.config import DEFAULT_CONF_DIR, ConfigError
from lakehouse.core.context import Lakehouse
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.core.specs import load_tables
from lakehouse.gold.published import read_gold
from lakehouse.ops.time_travel import commit_history, run_kpis
from lakehouse.pipeline import run_pipeline
from lakehouse_dev.generate import generate_landing

DAYS = ("2024-01-01", "2024-01-02")
CHANNEL = "  - {name: channel, type: string, since: 2, allowed: [web, app, marketplace]}\n"


def _conf_with(tmp: Path, extra_column: str, table: str = "orders") -> Path:
    """The project's conf/ with one more column declared on `table`."""
    conf = tmp / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    spec = conf / "tables" / f"{table}.yaml"
    spec.write_text(spec.read_text() + extra_column)
    return conf


def _channel(order_id: str) -> str:
    return ("web", "app", "marketplace")[sum(map(ord, order_id)) % 3]


def _lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8").splitlines()


def _deliver_version_2(folder: Path) -> None:
    """Every order record of the folder's files as a version-2 sender writes it: `channel` in
    the row (`after`, and `before` where present)."""
    for path in sorted(folder.iterdir()):
        out = []
        for line in _lines(path):
            record = json.loads(line)
            order_id = (record["after"] or record["before"])["order_id"]
            for image in ("after", "before"):
                if isinstance(record.get(image), dict):
                    record[image]["channel"] = _channel(order_id)
            out.append(json.dumps(record))
        text = ("\n".join(out) + "\n").encode("utf-8")
        path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)


def _expected_channels(landing: Path) -> dict[str, str | None]:
    """Each live order's channel as silver must hold it: its newest version (highest `lsn`)
    carries one only if no version-1 file delivered that version."""
    newest: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
    for day in DAYS:
        for path in sorted((landing / "orders" / f"ingest_date={day}").iterdir()):
            for line in _lines(path):
                record = json.loads(line)
                image = record["after"] or record["before"]
                key = image["order_id"]
                seen = newest.get(key)
                if seen is None or record["lsn"] > seen[0]:
                    newest[key] = (record["lsn"], day, record["after"])
    return {
        key: (after.get("channel") if day == DAYS[1] else None)
        for key, (_, day, after) in newest.items()
        if after is not None
    }


@dataclass
class Evolved:
    v1: Lakehouse
    v2: Lakehouse
    landing: Path
    kpis_of_run_1: list[Any]
    fact_orders_of_run_1: DataFrame
    silver_version_of_run_1: int


@pytest.fixture(scope="module")
def evolved(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Evolved:
    base = tmp_path_factory.mktemp("contract")
    conf = _conf_with(base, CHANNEL)
    storage = {
        "landing_root": str(base / "landing"),
        "lakehouse_root": str(base / "lake"),
        "reports_root": str(base / "reports"),
    }
    v1 = Lakehouse.load("local", conf, {"storage": storage})
    v2 = Lakehouse.load("local", conf, {"storage": storage, "contract": {"version": 2}})
    spec = replace(v1.config.generator, customers=20, days=2, orders_per_day=12)
    generate_landing(storage["landing_root"], replace(spec, defects=DefectSwitches.none()))
    _deliver_version_2(base / "landing" / "orders" / f"ingest_date={DAYS[1]}")

    run_pipeline(spark, v1, "run-1", dates=[DAYS[0]], register=False)
    kpis = read_gold(spark, v1, "daily_kpis").orderBy("order_date").collect()
    fact_orders = read_gold(spark, v1, "fact_orders").localCheckpoint()
    silver_version = max(
        int(r["version"])
        for r in commit_history(spark, v1, "silver.orders")
        .where(F.col("run_id") == "run-1")
        .collect()
    )
    run_pipeline(spark, v2, "run-2", dates=[DAYS[1]], register=False)
    return Evolved(v1, v2, base / "landing", kpis, fact_orders, silver_version)


def test_a_column_since_version_2_is_left_out_of_a_version_1_lakehouse(tmp_path: Path) -> None:
    conf = _conf_with(tmp_path, CHANNEL)

    v1 = [c.name for c in load_tables(conf, 1)["orders"].columns]
    v2 = load_tables(conf, 2)["orders"]

    assert "channel" not in v1
    assert [c.name for c in v2.columns] == [*v1, "channel"]
    assert v2.added_columns == ("channel",)
    assert load_tables(conf, 2)["customers"].added_columns == ()


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("  - {name: channel, type: string, since: 2, required: true}\n", "is required"),
        ("  - {name: channel, type: string, since: 0}\n", "since must be a contract version"),
    ],
)
def test_a_later_column_must_be_optional_and_versioned_from_1(
    tmp_path: Path, column: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tables(_conf_with(tmp_path, column))


def test_a_later_version_cannot_add_a_key_or_partition_column(tmp_path: Path) -> None:
    conf = _conf_with(tmp_path, "")
    spec = conf / "tables" / "orders.yaml"
    spec.write_text(
        spec.read_text().replace("keys: [order_id]", "keys: [order_id, channel]")
        + "  - {name: channel, type: string, since: 2}\n"
    )
    with pytest.raises(ConfigError, match="is a key or partition column"):
        load_tables(conf)


def test_the_contract_version_must_be_a_version(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"contract\.version: 0 is not a version"):
        load_tables(DEFAULT_CONF_DIR, 0)


def test_bronze_keeps_the_new_field_as_delivered_on_either_version(
    spark: SparkSession, evolved: Evolved
) -> None:
    raw = (
        spark.read.format("delta")
        .load(evolved.v2.path("bronze.orders"))
        .groupBy("ingest_date")
        .agg(F.sum(F.col("raw").contains('"channel"').cast("int")).alias("with"), F.count("*"))
        .orderBy("ingest_date")
        .collect()
    )
    assert [(str(r[0]), r[1] == 0, r[1] == r[2]) for r in raw] == [
        (DAYS[0], True, False),
        (DAYS[1], False, True),
    ]


def test_silver_gains_the_column_and_holds_each_orders_channel_exactly(
    spark: SparkSession, evolved: Evolved
) -> None:
    orders = spark.read.format("delta").load(evolved.v2.path("silver.orders"))
    found = {r["order_id"]: r["channel"] for r in orders.where("NOT _is_deleted").collect()}
    expected = _expected_channels(evolved.landing)

    assert found == expected
    # Both kinds are there: orders last changed by version 1 (null) and by version 2.
    assert None in found.values() and {"web", "app", "marketplace"} & set(found.values())


def test_silver_gained_it_in_a_metadata_only_commit_and_its_earlier_versions_keep_their_schema(
    spark: SparkSession, evolved: Evolved
) -> None:
    path = evolved.v2.path("silver.orders")
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`")
    [added] = history.where("operation = 'ADD COLUMNS'").collect()
    log = Path(path) / "_delta_log" / f"{added['version']:020d}.json"
    actions = {next(iter(json.loads(line))) for line in log.read_text().splitlines()}
    before = spark.read.format("delta").option("versionAsOf", added["version"] - 1).load(path)

    assert added["version"] > evolved.silver_version_of_run_1
    assert actions == {"commitInfo", "metaData"}  # no data file added or removed
    assert "channel" not in before.columns
    assert "channel" in spark.read.format("delta").load(path).columns


def test_gold_fact_orders_carries_the_channel_of_each_order(
    spark: SparkSession, evolved: Evolved
) -> None:
    facts = read_gold(spark, evolved.v2, "fact_orders")
    silver = spark.read.format("delta").load(evolved.v2.path("silver.orders"))
    by_line = {(r["order_id"], r["channel"]) for r in facts.select("order_id", "channel").collect()}
    of_order = {
        (r["order_id"], r["channel"])
        for r in silver.where("NOT _is_deleted")
        .join(facts.select("order_id").distinct(), "order_id")
        .select("order_id", "channel")
        .collect()
    }

    assert facts.columns[-1] == "channel"
    assert by_line == of_order
    assert {c for _, c in by_line} >= {None, "web"}


def test_a_run_from_before_the_change_is_reproduced_and_its_tables_read_as_they_were(
    spark: SparkSession, evolved: Evolved
) -> None:
    published_then = evolved.fact_orders_of_run_1
    kpis = run_kpis(spark, evolved.v2, "run-1")
    reproduced = kpis.select(*evolved.kpis_of_run_1[0].asDict()).orderBy("order_date").collect()
    facts = run_kpis(spark, evolved.v2, "run-1", "fact_orders")

    assert [r.asDict() for r in reproduced] == [r.asDict() for r in evolved.kpis_of_run_1]
    assert "channel" not in facts.columns
    facts = facts.select(*published_then.columns)
    assert facts.exceptAll(published_then).isEmpty()
    assert published_then.exceptAll(facts).isEmpty()
