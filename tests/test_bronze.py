"""Bronze ingestion on real Spark and Delta: every landed record kept as delivered, exactly once.

Ingestion is slow to set up (nine Delta tables per lakehouse), so each scenario is one
module-scoped fixture with its own folder, run once, and several tests read its outcome: a
hand-made landing zone ingested three times (first delivery, the same again, then a re-delivery),
and a generated landing zone with every defect kind injected.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from lakehouse.bronze import ingestion
from lakehouse.bronze.ingestion import bronze_path, files_path, ingest
from lakehouse.bronze.landing import parse_landed_file, record_id
from lakehouse.core.context import Lakehouse
from lakehouse.core.spark import session_conf
from lakehouse.core.specs import landing_sources, load_tables
from lakehouse.state.ledger import LedgerEntry, LedgerImbalanceError, read_ledger, record
from lakehouse.state.quarantine import QUARANTINE_TABLE, read_quarantine
from lakehouse_dev.generate import (
    DEFECT_KINDS,
    GenerationSummary,
    GeneratorSpec,
    InjectedDefect,
    generate_landing,
)
from lakehouse_dev.generate.summary import read_text
from lakehouses import local_lakehouse

LANDING = landing_sources(load_tables())
SOURCES = tuple(LANDING)
BOM = b"\xef\xbb\xbf"

ROW_SCHEMA = StructType(
    [
        StructField("_record_id", StringType()),
        StructField("_source", StringType()),
        StructField("_file", StringType()),
        StructField("_line", LongType()),
        StructField("ingest_date", DateType()),
        StructField("raw", StringType()),
        StructField("fields", MapType(StringType(), StringType())),
        StructField("_run_id", StringType()),
    ]
)


def land(lh: Lakehouse, relative: str, content: bytes) -> None:
    path = Path(lh.config.storage.landing_root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def json_id(source: str, raw: str) -> str:
    """The record id of a JSON line: its source plus its canonical (sorted, compact) JSON."""
    canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    return record_id(source, canonical)


def csv_id(source: str, fields: dict[str, str], snapshot_day: str | None = None) -> str:
    """The record id of a CSV row: its contract columns (a drift column like `fee` left out) as
    canonical JSON, plus the day for snapshots."""
    named = {k: v for k, v in fields.items() if k in LANDING[source].required_columns}
    canonical = json.dumps(named, sort_keys=True, separators=(",", ":"))
    return record_id(source, f"{snapshot_day}\x1f{canonical}" if snapshot_day else canonical)


def comparable(df: DataFrame) -> DataFrame:
    """Bronze columns but `_ingested_at`, with `fields` as a sorted array of entries (maps cannot
    be sorted, which `ignore_row_order` needs)."""
    return df.select(
        *[c for c in ROW_SCHEMA.fieldNames() if c != "fields"],
        F.array_sort(F.map_entries("fields")).alias("fields"),
    )


def bronze_rows(
    spark: SparkSession,
    lh: Lakehouse,
    version: dict[str, int] | None = None,
    sources: Sequence[str] = SOURCES,
) -> DataFrame:
    """The bronze tables of `sources` unioned, each as of `version[source]` (newest if not
    given)."""
    frames = []
    for source in sources:
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version[source])
        frames.append(reader.load(bronze_path(lh, source)))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def table_paths(lh: Lakehouse) -> dict[str, str]:
    """Every table bronze writes, by a short name."""
    paths = {s: bronze_path(lh, s) for s in SOURCES}
    paths["_files"] = files_path(lh)
    paths["_quarantine"] = lh.path(QUARANTINE_TABLE)
    return paths


def versions(lh: Lakehouse) -> dict[str, int]:
    """The newest committed version of every table bronze writes, read from the local Delta log
    (no Spark job: `<table>/_delta_log/<version>.json`)."""
    return {
        name: max(int(p.stem) for p in Path(path, "_delta_log").glob("*.json"))
        for name, path in table_paths(lh).items()
    }


def by_source(entries: list[LedgerEntry]) -> dict[str, tuple[int | None, ...]]:
    """Ledger counts per source: files read, files skipped, read, written, duplicates,
    quarantined."""
    return {
        e.table_name: (
            e.files_read,
            e.files_skipped,
            e.records_read,
            e.records_written,
            e.duplicates,
            e.quarantined,
        )
        for e in entries
    }


def row(
    source: str,
    file: str,
    line: int,
    day: str,
    raw: str,
    fields: dict[str, str] | None = None,
    rid: str | None = None,
) -> tuple[object, ...]:
    """An expected bronze row of `run-1` (ROW_SCHEMA); the id is the JSON one unless given."""
    day_ = date.fromisoformat(day)
    return (rid or json_id(source, raw), source, file, line, day_, raw, fields, "run-1")


# --- a hand-made landing zone, ingested three times ----------------------------------------------

CUSTOMER = (
    '{"op":"c","ts_ms":1704103200000,"lsn":1,"before":null,'
    '"after":{"customer_id":"C1","country":"DE","marketing_opt_in":true}}'
)
ORDER_1 = (
    '{"op": "c", "ts_ms": 1704103260000, "lsn": 2, "before": null, '
    '"after": {"order_id": "O1", "customer_id": "C1", "status": "placed", "currency": "EUR"}}'
)
ORDER_TRUNCATED = '{"op": "c", "ts_ms": 1704103270000, "lsn": 3, "after": {"order_id": "O2"'
ORDER_2 = (
    '{"op":"u","ts_ms":1704103280000,"lsn":4,"before":{"order_id":"O1"},'
    '"after":{"order_id":"O1","customer_id":"C1","status":"paid","currency":"EUR"}}'
)
ITEM = (
    '{"op":"c","ts_ms":1704103260000,"lsn":5,"before":null,'
    '"after":{"order_id":"O1","line_no":1,"product_id":"P1","quantity":2,"unit_price":"9.99",'
    '"discount":"0.10"}}'
)
PRODUCTS_HEADER = "product_id,name,category,brand,list_price,currency,active,updated_at"
PRODUCT_P1 = "P1,Mug,kitchen,Acme,9.99,USD,true,2024-01-01T00:00:00Z"
PRODUCT_P2 = 'P2,"Mug, large ""XL""",kitchen,Acme,14.50,USD,false,2024-01-01T00:00:00Z'
PAYMENTS_HEADER = (
    "payment_id,event_id,order_id,event_ts,event_type,amount,currency,method,provider_ref,fee"
)
PAYMENT_1 = "PAY1,E1,O1,2024-01-01T10:05:00Z,captured,17.98,EUR,card,psp-1,0.30"
PAYMENT_SHORT = "PAY2,E2,O2,2024-01-01T10:06:00Z,captured"
CLICK_1 = '{"event_id":"K1","event_ts":"2024-01-01T10:00:00Z","event_type":"page_view"}'
CLICK_2 = '{"event_id":"K2","event_ts":"2024-01-01T10:01:00Z","event_type":"add_to_cart"}'

ORDERS_FILE = "orders/ingest_date=2024-01-01/orders-0001.jsonl"
ORDERS_RETRY_FILE = "orders/ingest_date=2024-01-02/orders-0001-retry.jsonl"
PAYMENTS_FILE = "payments/ingest_date=2024-01-01/payments.csv"
CLICKS_FILE = "clickstream/ingest_date=2024-01-01/clicks-0001.jsonl"

P1_FIELDS = {
    "product_id": "P1", "name": "Mug", "category": "kitchen", "brand": "Acme",
    "list_price": "9.99", "currency": "USD", "active": "true", "updated_at": "2024-01-01T00:00:00Z",
}  # fmt: skip
P2_FIELDS = {
    "product_id": "P2", "name": 'Mug, large "XL"', "category": "kitchen", "brand": "Acme",
    "list_price": "14.50", "currency": "USD", "active": "false",
    "updated_at": "2024-01-01T00:00:00Z",
}  # fmt: skip
PAYMENT_1_FIELDS = {
    "payment_id": "PAY1", "event_id": "E1", "order_id": "O1", "event_ts": "2024-01-01T10:05:00Z",
    "event_type": "captured", "amount": "17.98", "currency": "EUR", "method": "card",
    "provider_ref": "psp-1", "fee": "0.30",
}  # fmt: skip


def land_first_delivery(lh: Lakehouse) -> None:
    land(lh, "customers/ingest_date=2024-01-01/customers-0001.jsonl", f"{CUSTOMER}\n".encode())
    land(lh, ORDERS_FILE, f"{ORDER_1}\n\n{ORDER_TRUNCATED}\n{ORDER_2}\n".encode())
    land(
        lh,
        "order_items/ingest_date=2024-01-01/order_items-0001.jsonl.gz",
        gzip.compress(f"{ITEM}\n".encode()),
    )
    land(
        lh,
        "products/ingest_date=2024-01-01/products.csv",
        f"{PRODUCTS_HEADER}\r\n{PRODUCT_P1}\r\n{PRODUCT_P2}\r\n".encode(),
    )
    land(
        lh,
        "products/ingest_date=2024-01-02/products.csv.gz",
        gzip.compress(f"{PRODUCTS_HEADER}\n{PRODUCT_P1}\n".encode()),
    )
    land(lh, PAYMENTS_FILE, BOM + f"{PAYMENTS_HEADER}\n{PAYMENT_1}\n{PAYMENT_SHORT}\n".encode())
    land(lh, "fx_rates/ingest_date=2024-01-01/fx_rates.csv", b"")
    land(
        lh,
        CLICKS_FILE,
        f"{CLICK_1}\n{CLICK_2}\n{CLICK_1}\n".encode(),  # the same event twice in one file
    )


@dataclass(frozen=True)
class HandMade:
    """A hand-made landing zone ingested twice (`run-1`, then `run-2` on the same files)."""

    lh: Lakehouse
    runs: tuple[list[LedgerEntry], list[LedgerEntry]]
    versions: tuple[dict[str, int], dict[str, int]]


@pytest.fixture(scope="module")
def handmade(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> HandMade:
    lh = local_lakehouse(tmp_path_factory.mktemp("handmade"))
    land_first_delivery(lh)
    first = ingest(spark, lh, "run-1")
    record(spark, lh, first)
    after_first = versions(lh)
    second = ingest(spark, lh, "run-2")
    record(spark, lh, second)
    return HandMade(lh, (first, second), (after_first, versions(lh)))


@dataclass(frozen=True)
class Redelivery:
    """`run-3`: the orders file of day 1 delivered again on day 2 under a new name."""

    entries: list[LedgerEntry] | None
    error: LedgerImbalanceError | None


@pytest.fixture(scope="module")
def redelivery(spark: SparkSession, handmade: HandMade) -> Redelivery:
    lh = handmade.lh
    land(lh, ORDERS_RETRY_FILE, f"{ORDER_1}\n{ORDER_TRUNCATED}\n{ORDER_2}\n".encode())
    try:
        entries = ingest(spark, lh, "run-3")
    except LedgerImbalanceError as exc:  # kept so the tests below can report it, not swallowed
        return Redelivery(None, exc)
    record(spark, lh, entries)
    return Redelivery(entries, None)


def test_first_ingest_keeps_every_good_record_with_its_file_line_and_day(
    spark: SparkSession, handmade: HandMade
) -> None:
    d1, d2 = "2024-01-01", "2024-01-02"
    expected = spark.createDataFrame(
        [
            row("customers", "customers/ingest_date=2024-01-01/customers-0001.jsonl", 1, d1,
                CUSTOMER),
            row("orders", ORDERS_FILE, 1, d1, ORDER_1),
            row("orders", ORDERS_FILE, 4, d1, ORDER_2),
            row("order_items", "order_items/ingest_date=2024-01-01/order_items-0001.jsonl.gz", 1,
                d1, ITEM),
            row("products", "products/ingest_date=2024-01-01/products.csv", 2, d1, PRODUCT_P1,
                P1_FIELDS, csv_id("products", P1_FIELDS, d1)),
            row("products", "products/ingest_date=2024-01-01/products.csv", 3, d1, PRODUCT_P2,
                P2_FIELDS, csv_id("products", P2_FIELDS, d1)),
            row("products", "products/ingest_date=2024-01-02/products.csv.gz", 2, d2, PRODUCT_P1,
                P1_FIELDS, csv_id("products", P1_FIELDS, d2)),
            row("payments", PAYMENTS_FILE, 2, d1, PAYMENT_1, PAYMENT_1_FIELDS,
                csv_id("payments", PAYMENT_1_FIELDS)),
            row("clickstream", CLICKS_FILE, 1, d1, CLICK_1),
            row("clickstream", CLICKS_FILE, 2, d1, CLICK_2),
        ],
        ROW_SCHEMA,
    )  # fmt: skip

    actual = bronze_rows(spark, handmade.lh, handmade.versions[0])

    assert_df_equality(
        comparable(actual), comparable(expected), ignore_row_order=True, ignore_nullable=True
    )


def test_first_ingest_ledger_counts_every_record_of_every_source(handmade: HandMade) -> None:
    # files read, files skipped, records read, written, duplicates, quarantined
    assert by_source(handmade.runs[0]) == {
        "customers": (1, 0, 1, 1, 0, 0),
        "orders": (1, 0, 3, 2, 0, 1),
        "order_items": (1, 0, 1, 1, 0, 0),
        "products": (2, 0, 3, 3, 0, 0),
        "payments": (1, 0, 2, 1, 0, 1),
        "fx_rates": (1, 0, 0, 0, 0, 0),
        "clickstream": (1, 0, 3, 2, 1, 0),
    }


def test_bad_lines_are_quarantined_with_file_line_raw_and_reason_once(
    spark: SparkSession, handmade: HandMade
) -> None:
    quarantine = read_quarantine(spark, handmade.lh)

    actual = sorted(
        tuple(r)
        for r in quarantine.select(
            "layer", "source", "file", "line", "raw", "reason", "run_id"
        ).collect()
    )

    assert actual == [
        ("bronze", "orders", ORDERS_FILE, 3, ORDER_TRUNCATED,
         "not valid JSON: Expecting ',' delimiter at column 73", "run-1"),
        ("bronze", "payments", PAYMENTS_FILE, 3, PAYMENT_SHORT,
         "expected 10 fields as in the header, found 5", "run-1"),
    ]  # fmt: skip


def test_bad_lines_of_every_source_are_quarantined_by_one_commit(
    spark: SparkSession, handmade: HandMade
) -> None:
    path = handmade.lh.path(QUARANTINE_TABLE)

    merges = DeltaTable.forPath(spark, path).history().where("operation = 'MERGE'")
    first = merges.orderBy("version").first()

    # The orders line and the payments line of run-1 (the ledger counts them per source).
    assert first is not None
    assert first["operationMetrics"]["numTargetRowsInserted"] == "2"


def test_empty_file_is_recorded_as_ingested(spark: SparkSession, handmade: HandMade) -> None:
    files = spark.read.format("delta").load(files_path(handmade.lh))

    rows = files.where("source = 'fx_rates'").select("file", "ingest_date", "size_bytes", "run_id")

    assert [tuple(r) for r in rows.collect()] == [
        ("fx_rates/ingest_date=2024-01-01/fx_rates.csv", date(2024, 1, 1), 0, "run-1")
    ]


def test_second_ingest_of_the_same_landing_zone_adds_no_data_file_and_changes_no_row(
    spark: SparkSession, handmade: HandMade
) -> None:
    after_first, after_second = handmade.versions
    paths = table_paths(handmade.lh)
    # A table at the same version is the same snapshot; only a table with new commits needs a look.
    changed = sorted(name for name in paths if after_second[name] != after_first[name])

    files_added = {}
    for name in changed:
        commits = (
            DeltaTable.forPath(spark, paths[name])
            .history()
            .where(F.col("version") > after_first[name])
            .where(F.col("version") <= after_second[name])
            .collect()
        )
        files_added[name] = sum(
            int((c["operationMetrics"] or {}).get(k, 0))
            for c in commits
            for k in ("numFiles", "numTargetFilesAdded", "numAddedFiles")
        )
    changed_bronze = [s for s in changed if s in SOURCES]
    if changed_bronze:
        assert_df_equality(
            comparable(bronze_rows(spark, handmade.lh, after_second, changed_bronze)),
            comparable(bronze_rows(spark, handmade.lh, after_first, changed_bronze)),
            ignore_row_order=True,
        )

    assert files_added == dict.fromkeys(changed, 0)


def test_second_ingest_skips_every_file_without_reading_it(handmade: HandMade) -> None:
    files_per_source = {"customers": 1, "orders": 1, "order_items": 1, "products": 2,
                        "payments": 1, "fx_rates": 1, "clickstream": 1}  # fmt: skip

    assert by_source(handmade.runs[1]) == {
        s: (0, n, 0, 0, 0, 0) for s, n in files_per_source.items()
    }


def test_same_event_twice_in_one_file_is_one_row_at_its_first_line_and_one_duplicate(
    spark: SparkSession, handmade: HandMade
) -> None:
    clicks = spark.read.format("delta").load(bronze_path(handmade.lh, "clickstream"))

    rows = clicks.where(F.col("_file") == CLICKS_FILE).select("_line", "raw", "_record_id")

    assert sorted(tuple(r) for r in rows.collect()) == [
        (1, CLICK_1, json_id("clickstream", CLICK_1)),
        (2, CLICK_2, json_id("clickstream", CLICK_2)),
    ]
    # files read, files skipped, records read, written, duplicates, quarantined
    assert by_source(handmade.runs[0])["clickstream"] == (1, 0, 3, 2, 1, 0)


def test_redelivered_file_adds_no_rows_and_counts_its_records_as_duplicates(
    spark: SparkSession, handmade: HandMade, redelivery: Redelivery
) -> None:
    assert redelivery.error is None, str(redelivery.error)
    assert redelivery.entries is not None
    orders = bronze_path(handmade.lh, "orders")
    before = spark.read.format("delta").option("versionAsOf", handmade.versions[1]["orders"])

    assert_df_equality(
        comparable(spark.read.format("delta").load(orders)),
        comparable(before.load(orders)),
        ignore_row_order=True,
    )
    # files read, files skipped, records read, written, duplicates, quarantined
    assert by_source(redelivery.entries)["orders"] == (1, 1, 3, 0, 3, 0)
    assert by_source(redelivery.entries)["customers"] == (0, 1, 0, 0, 0, 0)


def test_ledger_balances_for_every_source_of_every_run(
    spark: SparkSession, handmade: HandMade, redelivery: Redelivery
) -> None:
    ledger = read_ledger(spark, handmade.lh)
    runs = ["run-1", "run-2"] + (["run-3"] if redelivery.error is None else [])

    outcomes = F.col("records_written") + F.col("duplicates") + F.col("quarantined")
    unbalanced = ledger.where(F.col("records_read") != outcomes)

    counted = ledger.groupBy("run_id").agg(F.count(F.lit(1)).alias("n"), F.sum("records_read"))
    assert (
        sorted(tuple(r) for r in counted.collect())
        == [
            ("run-1", len(SOURCES), 13),
            ("run-2", len(SOURCES), 0),
            ("run-3", len(SOURCES), 3),
        ][: len(runs)]
    )
    assert unbalanced.select("run_id", "table_name").collect() == []


def test_file_name_with_glob_characters_is_ingested(spark: SparkSession, tmp_path: Path) -> None:
    lh = local_lakehouse(tmp_path)
    land(lh, "clickstream/ingest_date=2024-01-01/clicks[1].jsonl", f"{CLICK_1}\n".encode())

    entries = ingest(spark, lh, "run-1")

    # files read, files skipped, records read, written, duplicates, quarantined
    assert by_source(entries)["clickstream"] == (1, 0, 1, 1, 0, 0)


# --- files that are not landed files never block the good ones ---------------------------------


def test_a_poison_folder_is_quarantined_and_never_blocks_the_good_files(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh = local_lakehouse(tmp_path)
    land(lh, CLICKS_FILE, f"{CLICK_1}\n".encode())
    poison = "clickstream/ingest_date=2024-13-45/clicks-0001.jsonl"
    loose = "clickstream/clicks-loose.jsonl"
    land(lh, poison, f"{CLICK_2}\n".encode())
    land(lh, loose, b"\x00\x01 not even json")

    first = ingest(spark, lh, "run-1")
    second = ingest(spark, lh, "run-2")

    # files read, files skipped, records read, written, duplicates, quarantined
    assert by_source(first)["clickstream"] == (3, 0, 3, 1, 0, 2)
    assert by_source(second)["clickstream"] == (0, 3, 0, 0, 0, 0)
    kept = spark.read.format("delta").load(bronze_path(lh, "clickstream"))
    assert [(r["_file"], r["raw"]) for r in kept.collect()] == [(CLICKS_FILE, CLICK_1)]

    def summary(name: str, content: bytes) -> str:
        digest = hashlib.sha256(content).hexdigest()
        head = content[:64]
        return f"<file {name}: {len(content)} bytes, sha256 {digest}, first " + (
            f"{len(head)} bytes (hex) {head.hex()}>"
        )

    quarantined = read_quarantine(spark, lh).select("file", "line", "ingest_date", "raw", "reason")
    assert sorted(tuple(r) for r in quarantined.collect()) == [
        (loose, 0, None, summary(loose, b"\x00\x01 not even json"),
         "file is not under <source>/ingest_date=YYYY-MM-DD/ as the landing contract says"),
        (poison, 0, None, summary(poison, f"{CLICK_2}\n".encode()),
         "folder ingest_date=2024-13-45 is not a calendar date YYYY-MM-DD"),
    ]  # fmt: skip
    files = spark.read.format("delta").load(files_path(lh)).select("file", "ingest_date")
    assert sorted((tuple(r) for r in files.collect()), key=str) == sorted(
        [(CLICKS_FILE, date(2024, 1, 1)), (poison, None), (loose, None)], key=str
    )


class _Stopped(Exception):
    """Stands for a run killed at that moment."""


def _stopped_bronze_run(
    spark: SparkSession, tmp_path: Path, counted_first: bool
) -> tuple[Lakehouse, list[LedgerEntry]]:
    """Ingest one file in a run stopped just before (`counted_first` False) or just after its
    ledger rows are written, then the rerun; the rerun's entries."""
    lh = local_lakehouse(tmp_path)
    land(lh, CLICKS_FILE, f"{CLICK_1}\n{CLICK_2}\n{{broken\n".encode())

    def stop(entries: list[LedgerEntry]) -> None:
        if counted_first:
            record(spark, lh, entries)
        raise _Stopped

    with pytest.raises(_Stopped):
        ingest(spark, lh, "run-1", record_counts=stop)
    rerun = ingest(spark, lh, "run-2", record_counts=lambda e: record(spark, lh, e))
    return lh, rerun


def _written_per_run(spark: SparkSession, lh: Lakehouse) -> list[tuple[str, int]]:
    rows = read_ledger(spark, lh).where("layer = 'bronze' AND table_name = 'clickstream'")
    return sorted((r["run_id"], r["records_written"]) for r in rows.collect())


def test_a_run_stopped_after_its_ledger_rows_is_read_again_and_nothing_is_written_twice(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh, rerun = _stopped_bronze_run(spark, tmp_path, counted_first=True)

    # files read, files skipped, records read, written, duplicates, quarantined: the rerun
    # reads the file again (it was not marked) and counts its records as duplicates.
    assert by_source(rerun)["clickstream"] == (1, 0, 3, 0, 3, 0)
    assert _written_per_run(spark, lh) == [("run-1", 2), ("run-2", 0)]
    files = spark.read.format("delta").load(files_path(lh)).select("file", "run_id")
    assert [tuple(r) for r in files.collect()] == [(CLICKS_FILE, "run-2")]
    assert spark.read.format("delta").load(bronze_path(lh, "clickstream")).count() == 2


def test_a_run_stopped_before_its_ledger_rows_has_its_records_counted_written_by_the_rerun(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh, rerun = _stopped_bronze_run(spark, tmp_path, counted_first=False)

    # The stopped run's two records are in bronze, and its bad one in the quarantine, under its
    # run id, which no ledger row counts: the rerun counts them as written and quarantined, so
    # the ledger counts each record once.
    assert by_source(rerun)["clickstream"] == (1, 0, 3, 2, 0, 1)
    assert _written_per_run(spark, lh) == [("run-2", 2)]
    assert spark.read.format("delta").load(bronze_path(lh, "clickstream")).count() == 2
    quarantine = spark.read.format("delta").load(lh.path("quarantine.records"))
    assert [tuple(r) for r in quarantine.select("source", "run_id").collect()] == [
        ("clickstream", "run-1")
    ]


# --- a landed file read in pieces ----------------------------------------------------------------


def test_a_file_read_in_small_pieces_gives_the_records_of_the_file_read_whole(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bronze never holds a whole plain file in one task or record: Spark reads it in splits.
    With splits of 64 bytes, a quoted CSV field spanning lines crosses a split boundary, and
    every record, line number and id must still be those of the file parsed whole."""
    lh = local_lakehouse(tmp_path)
    rows = [
        f'P{i},"Mug {i}\r\nline two\nline three",kitchen,Acme,{i}.50,USD,true,2024-01-01T00:00:00Z'
        for i in range(12)
    ]
    products = BOM + (f"{PRODUCTS_HEADER}\r\n" + "\r\n".join(rows) + "\r\n").encode()
    products = products.replace(b"Mug 7", b"Mug \xff7")  # bytes that are not UTF-8
    clicks = "\n".join([CLICK_1, "", "{not json", CLICK_2] * 5).encode()  # no final newline
    files = {
        "products/ingest_date=2024-01-01/products.csv": products,
        "clickstream/ingest_date=2024-01-01/clicks.jsonl": clicks,
    }
    for relative, content in files.items():
        land(lh, relative, content)
    monkeypatch.setattr(ingestion, "LANDED_SPLIT_BYTES", 64)

    parsed = ingestion.parse_files(
        spark, ingestion.list_landing_files(spark, lh.config.storage.landing_root), LANDING
    )

    expected = [
        (relative, rec.line, rec.raw, rec.record_id, rec.fields, rec.reason)
        for relative, content in files.items()
        for rec in parse_landed_file(
            relative.split("/")[0], LANDING[relative.split("/")[0]], relative, "2024-01-01", content
        )
    ]
    actual = [
        (r["_file"], r["_line"], r["raw"], r["_record_id"], r["fields"], r["reason"])
        for r in parsed.collect()
    ]
    assert sorted(actual, key=str) == sorted(expected, key=str)
    assert len(expected) == 12 + 15  # 12 products (one not UTF-8); 20 click lines, 5 blank
    assert sum(1 for e in expected if e[5] is not None) == 1 + 5
    # The file was read in pieces: each split a task of its own, starting mid-record.
    with session_conf(spark, {"spark.sql.files.maxPartitionBytes": "64"}):
        products_path = str(Path(lh.config.storage.landing_root) / next(iter(files)))
        splits = spark.read.text(products_path).select(F.input_file_block_start()).distinct()
        assert splits.count() > len(products) // 128  # a split where no line starts has no row


def test_file_names_with_spaces_and_percent_signs_keep_their_own_records(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Spark reports `a b.jsonl` as `a%20b.jsonl`: a file literally so named must not take its
    records. A `.bz2` name (not compressed by the contract) is read as the bytes it holds, not
    handed to Hadoop's decompressor."""
    lh = local_lakehouse(tmp_path)
    day = "clickstream/ingest_date=2024-01-01"
    land(lh, f"{day}/a b.jsonl", f"{CLICK_1}\n".encode())
    land(lh, f"{day}/a%20b.jsonl", f"{CLICK_2}\n{CLICK_2}\n".encode())
    land(lh, f"{day}/c.jsonl.bz2", f"{CLICK_1}\n".encode())

    parsed = ingestion.parse_files(
        spark, ingestion.list_landing_files(spark, lh.config.storage.landing_root), LANDING
    )

    assert sorted((r["_file"], r["_line"], r["raw"]) for r in parsed.collect()) == [
        (f"{day}/a b.jsonl", 1, CLICK_1),
        (f"{day}/a%20b.jsonl", 1, CLICK_2),
        (f"{day}/a%20b.jsonl", 2, CLICK_2),
        (f"{day}/c.jsonl.bz2", 1, CLICK_1),
    ]


# --- a generated landing zone with every defect kind ---------------------------------------------
#
# The generator numbers lines as bronze does (`InjectedDefect` docs): 1-based physical lines of
# the file's text after gunzip, the BOM not counted, a CSV header on line 1. So a defect's
# (file, line) is a bronze row's (_file, _line) or a quarantine row's (file, line) as is.

GENERATED_SPEC = GeneratorSpec(customers=30, days=3, orders_per_day=20)
JSON_SOURCES = ("customers", "orders", "order_items", "clickstream")
PAYMENTS_CONTRACT_COLUMNS = LANDING["payments"].required_columns


@dataclass(frozen=True)
class Generated:
    """The generated landing zone after one ingest, with bronze, quarantine and the file ledger
    collected (a few thousand small rows) so the tests below need no further Spark job."""

    landing_root: Path
    summary: GenerationSummary
    entries: list[LedgerEntry]
    bronze: dict[tuple[str, int], Row]  # (_file, _line) -> bronze row
    quarantine: dict[tuple[str, int], Row]  # (file, line) -> quarantine row
    ingested_files: dict[str, Row]  # file -> bronze/_files row

    def lines(self, file: str) -> list[str]:
        """The file's lines as landed (gunzipped, BOM dropped); index 0 is line 1."""
        return read_text(self.landing_root / file).split("\n")[:-1]

    def of(self, kind: str) -> tuple[InjectedDefect, ...]:
        return self.summary.defects_of(kind)


@pytest.fixture(scope="module")
def generated(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    lh = local_lakehouse(tmp_path_factory.mktemp("generated"))
    summary = generate_landing(lh.config.storage.landing_root, GENERATED_SPEC)
    entries = ingest(spark, lh, "gen-1")
    columns = ("_source", "_file", "_line", "_record_id", "raw", "fields")
    bronze = bronze_rows(spark, lh).select(*columns).collect()
    quarantine = read_quarantine(spark, lh).collect()
    files = spark.read.format("delta").load(files_path(lh)).collect()
    return Generated(
        landing_root=Path(lh.config.storage.landing_root),
        summary=summary,
        entries=entries,
        bronze={(r["_file"], r["_line"]): r for r in bronze},
        quarantine={(r["file"], r["line"]): r for r in quarantine},
        ingested_files={r["file"]: r for r in files},
    )


def test_small_generated_zone_holds_every_defect_kind(generated: Generated) -> None:
    assert sorted({d.kind for d in generated.summary.defects}) == sorted(DEFECT_KINDS)


def test_generated_ledger_counts_match_what_the_generator_wrote(generated: Generated) -> None:
    g = generated

    def data_lines(kind: str, source: str) -> int:
        return sum(len(g.lines(d.file)) - 1 for d in g.of(kind) if d.source == source)

    expected, actual = {}, {}
    for e in g.entries:
        s = e.table_name
        quarantined = sum(1 for d in g.of("malformed_line") if d.source == s)
        quarantined += data_lines("missing_column", s)  # every row of such a CSV file
        duplicates = sum(1 for d in g.of("duplicate_event") if d.source == s)
        redelivered = [d for d in g.of("redelivered_file") if d.source == s]
        duplicates += sum(len(g.lines(d.file)) - (s not in JSON_SOURCES) for d in redelivered)
        read = g.summary.records[s]
        expected[s] = (g.summary.files[s], read, read - duplicates - quarantined, duplicates,
                       quarantined)  # fmt: skip
        actual[s] = (e.files_read, e.records_read, e.records_written, e.duplicates, e.quarantined)

    assert actual == expected
    bronze_per_source = dict.fromkeys(SOURCES, 0)
    for r in g.bronze.values():
        bronze_per_source[r["_source"]] += 1
    assert bronze_per_source == {e.table_name: e.records_written for e in g.entries}


def test_bronze_holds_each_record_id_once(generated: Generated) -> None:
    ids = [r["_record_id"] for r in generated.bronze.values()]

    assert len(ids) == len(set(ids))


def _check_malformed_line(g: Generated, d: InjectedDefect) -> list[str]:
    q = g.quarantine.get((d.file, d.line))
    if q is None:
        return [f"{d}: not in quarantine"]
    reason = (
        r"not valid JSON: .+" if d.source in JSON_SOURCES
        else r"expected \d+ fields as in the header, found \d+"
    )  # fmt: skip
    problems = []
    if (q["layer"], q["source"], q["raw"]) != ("bronze", d.source, d.read_line(g.landing_root)):
        problems.append(f"{d}: quarantined as {q}")
    if not re.fullmatch(reason, q["reason"]):
        problems.append(f"{d}: reason {q['reason']!r} does not match {reason!r}")
    if (d.file, d.line) in g.bronze:
        problems.append(f"{d}: also in bronze")
    return problems


def _check_kept_in_bronze_as_delivered(g: Generated, d: InjectedDefect) -> list[str]:
    """bad_value, late_event, out_of_order_event, delete: valid records for bronze (values are
    silver's business), so they are in bronze at their file and line, byte for byte."""
    row = g.bronze.get((d.file, d.line))
    if row is None:
        return [f"{d}: not in bronze (quarantined: {g.quarantine.get((d.file, d.line))})"]
    if row["raw"] != d.read_line(g.landing_root):
        return [f"{d}: bronze raw {row['raw']!r}"]
    return []


def _check_duplicate_event(g: Generated, d: InjectedDefect) -> list[str]:
    """The copy is not stored; the record it repeats is, from an earlier delivery."""
    text = d.read_line(g.landing_root)
    earlier = [
        key for key, r in g.bronze.items()
        if r["_source"] == d.source and r["raw"] == text and key < (d.file, d.line)
    ]  # fmt: skip
    problems = []
    if (d.file, d.line) in g.bronze:
        problems.append(f"{d}: the copy itself is in bronze")
    if len(earlier) != 1:
        problems.append(f"{d}: {len(earlier)} earlier bronze rows with the same text")
    return problems


def _check_redelivered_file(g: Generated, d: InjectedDefect) -> list[str]:
    rows = [key for key in g.bronze if key[0] == d.file]
    problems = [f"{d}: {len(rows)} rows in bronze"] if rows else []
    if d.file not in g.ingested_files:
        problems.append(f"{d}: not recorded as ingested")
    return problems


def _data_lines(g: Generated, d: InjectedDefect) -> list[tuple[int, str]]:
    first = 1 if d.source in JSON_SOURCES else 2
    return list(enumerate(g.lines(d.file)[first - 1 :], start=first))


def _check_file_ingested(g: Generated, d: InjectedDefect) -> list[str]:
    """gzip, bom: every line of the file that is not itself a malformed line or a repeated event
    is in bronze at its line, with the text as landed (gunzipped, no BOM)."""
    skip = {
        x.line for x in g.summary.defects
        if x.file == d.file and x.kind in ("malformed_line", "duplicate_event")
    }  # fmt: skip
    problems = []
    kept = [(n, text) for n, text in _data_lines(g, d) if n not in skip]
    if not kept:
        problems.append(f"{d}: no line to check")
    for n, text in kept:
        row = g.bronze.get((d.file, n))
        if row is None or row["raw"] != text:
            problems.append(f"{d}: line {n} is {row} in bronze")
    if d.source not in JSON_SOURCES:
        header = g.lines(d.file)[0].split(",")
        for n, _ in kept:
            row = g.bronze.get((d.file, n))
            if row is not None and sorted(row["fields"]) != sorted(header):
                problems.append(f"{d}: line {n} has fields {sorted(row['fields'])}")
    if d.file not in g.ingested_files:
        problems.append(f"{d}: not recorded as ingested")
    return problems


def _check_schema_drift(g: Generated, d: InjectedDefect) -> list[str]:
    """The extra column is kept in `fields`, with the value of the landed row."""
    header = g.lines(d.file)[0].split(",")
    extra = [c for c in header if c not in PAYMENTS_CONTRACT_COLUMNS]
    rows = [r for key, r in g.bronze.items() if key[0] == d.file]
    problems = [] if extra and rows else [f"{d}: extra columns {extra}, {len(rows)} bronze rows"]
    for r in rows:
        landed = next(csv.reader([r["raw"]]))
        expected = {c: landed[header.index(c)] for c in extra}
        if {c: r["fields"].get(c) for c in extra} != expected:
            problems.append(f"{d}: line {r['_line']} fields {r['fields']}")
    return problems


def _check_empty_file(g: Generated, d: InjectedDefect) -> list[str]:
    problems = []
    if any(key[0] == d.file for key in [*g.bronze, *g.quarantine]):
        problems.append(f"{d}: has rows in bronze or quarantine")
    recorded = g.ingested_files.get(d.file)
    if recorded is None or recorded["size_bytes"] != 0:
        problems.append(f"{d}: recorded in bronze/_files as {recorded}")
    return problems


def _check_missing_column(g: Generated, d: InjectedDefect) -> list[str]:
    """Every row of the file is quarantined with a reason naming the column; none in bronze."""
    missing = d.detail.split("'")[1]
    reason = f"missing required column(s) in the header: {missing}"
    problems = []
    lines = _data_lines(g, d)
    if not lines:
        problems.append(f"{d}: no data line")
    for n, text in lines:
        q = g.quarantine.get((d.file, n))
        if q is None or (q["raw"], q["reason"]) != (text, reason):
            problems.append(f"{d}: line {n} quarantined as {q}")
        if (d.file, n) in g.bronze:
            problems.append(f"{d}: line {n} in bronze")
    return problems


CHECKS = {
    "malformed_line": _check_malformed_line,
    "bad_value": _check_kept_in_bronze_as_delivered,
    "late_event": _check_kept_in_bronze_as_delivered,
    "out_of_order_event": _check_kept_in_bronze_as_delivered,
    "delete": _check_kept_in_bronze_as_delivered,
    "duplicate_event": _check_duplicate_event,
    "redelivered_file": _check_redelivered_file,
    "gzip": _check_file_ingested,
    "bom": _check_file_ingested,
    "schema_drift": _check_schema_drift,
    "empty_file": _check_empty_file,
    "missing_column": _check_missing_column,
}


def test_every_defect_kind_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(DEFECT_KINDS)


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_every_injected_defect_ends_where_the_contract_says(
    generated: Generated, kind: str
) -> None:
    defects = generated.of(kind)
    check = CHECKS[kind]

    problems = [p for d in defects for p in check(generated, d)]

    assert defects
    assert problems == []
