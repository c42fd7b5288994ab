"""Silver on real Spark and Delta: one clean, typed, current row per key, whatever the delivery.

Every scenario is a story told in landing files written by hand, day by day. Each day is ingested
into bronze and applied to silver, with the ledger recorded after each as the jobs do (the next
run reads the bronze version the last one consumed from it), and the version of every silver table
is noted after every run, so a test can read the state of any day. Stories are module-scoped (a
Spark action costs ~0.5 s); each test then states what silver must hold.

- `orders_story`: CDC orders and their lines over four days, then a retry after a simulated crash
  and a re-run with nothing new: duplicates, late and out-of-order events, deletes, cascades,
  partition pruning, idempotency.
- `shop_story`: every source over three days: SCD2 history, snapshots, corrections, event
  dedup, every validation rule, personal data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import reduce
from pathlib import Path

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from lakehouse.bronze import ingestion as bronze
from lakehouse.bronze.landing import record_id
from lakehouse.core.config import ConfigError
from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import current_version
from lakehouse.core.specs import load_tables
from lakehouse.silver import engine as silver
from lakehouse.silver.schema import live
from lakehouse.state.ledger import LEDGER_TABLE, LedgerEntry, read_ledger, record
from lakehouse.state.quarantine import QUARANTINE_TABLE, read_quarantine
from lakehouses import local_lakehouse

HMAC_KEY = "test-only-hmac-key"
KEY_ENV = "LAKEHOUSE_PII_HMAC_KEY"
SPECS = load_tables()
D1, D2, D3, D4 = "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"


# --- building landing files ----------------------------------------------------------------------


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)


def epoch_ms(text: str) -> int:
    return int(utc(text).timestamp() * 1000)


def cdc(
    op: str,
    lsn: object,
    after: dict | None = None,
    *,
    before: dict | None = None,
    ts: str = "2024-01-01T12:00:00Z",
    **envelope: object,
) -> str:
    """One CDC JSON line, compact; `envelope` adds or overrides envelope fields."""
    event = {
        "op": op,
        "ts_ms": epoch_ms(ts),
        "lsn": lsn,
        "before": before,
        "after": after,
        **envelope,
    }
    return json.dumps(event, separators=(",", ":"))


def order(order_id: str, status: str = "placed", ts: str = f"{D1}T09:00:00Z") -> dict:
    return {
        "order_id": order_id,
        "customer_id": "C1",
        "order_ts": ts,
        "status": status,
        "currency": "EUR",
        "shipping_country": "DE",
    }


def item(
    order_id: str,
    line_no: int,
    quantity: object = 2,
    unit_price: str = "9.99",
    discount: str = "0.10",
) -> dict:
    return {
        "order_id": order_id,
        "line_no": line_no,
        "product_id": "P1",
        "quantity": quantity,
        "unit_price": unit_price,
        "discount": discount,
    }


def deleted(order_id: str) -> dict:
    return {"order_id": order_id}


def counts(entry: LedgerEntry) -> tuple[int | None, ...]:
    """read, inserted, updated, deleted, unchanged, duplicates, stale_ignored, quarantined."""
    return (
        entry.records_read,
        entry.inserted,
        entry.updated,
        entry.deleted,
        entry.unchanged,
        entry.duplicates,
        entry.stale_ignored,
        entry.quarantined,
    )


def hmac_hex(value: str) -> str:
    return hmac.new(HMAC_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def assert_rows(actual: DataFrame, ddl: str, rows: list[tuple]) -> None:
    expected = actual.sparkSession.createDataFrame(rows, ddl)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


# --- driving the pipeline ------------------------------------------------------------------------


@dataclass
class Story:
    """A lakehouse fed day by day; what each run reported and the silver versions after it."""

    lh: Lakehouse
    bronze: dict[str, dict[str, LedgerEntry]] = field(default_factory=dict)
    silver: dict[str, dict[str, LedgerEntry]] = field(default_factory=dict)
    versions: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return self.lh.root

    def land(self, source: str, day: str, name: str, lines: list[str]) -> str:
        relative = f"{source}/ingest_date={day}/{name}"
        path = Path(self.lh.config.storage.landing_root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return relative

    def run_day(self, spark: SparkSession, run_id: str, tables: tuple[str, ...]) -> None:
        """What the daily job does: bronze, ledger, silver, ledger."""
        entries = bronze.ingest(spark, self.lh, run_id)
        record(spark, self.lh, entries)
        self.bronze[run_id] = {e.table_name: e for e in entries}
        self.apply_silver(spark, run_id, tables)

    def apply_silver(self, spark: SparkSession, run_id: str, tables: tuple[str, ...]) -> None:
        entries = silver.apply(spark, self.lh, run_id, list(tables))
        record(spark, self.lh, entries)
        self.silver[run_id] = {e.table_name: e for e in entries}
        previous = list(self.versions.values())[-1] if self.versions else {}
        written = [*tables, *(f"{t}_history" for t in tables if SPECS[t].history == "scd2")]
        self.versions[run_id] = {
            **previous,
            **{t: current_version(spark, self.path(t)) for t in written},
        }

    def path(self, table: str) -> str:
        return silver.silver_path(self.lh, table)

    def read(self, spark: SparkSession, table: str, after: str | None = None) -> DataFrame:
        """A silver table as it was after run `after` (now if None)."""
        reader = spark.read.format("delta")
        if after is not None:
            reader = reader.option("versionAsOf", self.versions[after][table])
        return reader.load(self.path(table))


# --- the orders story: CDC over four days --------------------------------------------------------

O1_CREATE = cdc("c", 10, order("O1"))
# The same event with its keys in another order and other spacing: bronze already sees it as the
# same record (canonical JSON), so silver never does.
O1_CREATE_RESPACED = json.dumps(
    {
        "after": order("O1"),
        "lsn": 10,
        "ts_ms": epoch_ms("2024-01-01T12:00:00Z"),
        "op": "c",
        "before": None,
    },
    separators=(", ", " : "),
)
# The same event re-sent with a different envelope: a new bronze record, the same version to silver.
O1_CREATE_RESENT = cdc("c", 10, order("O1"), source={"attempt": 2})
O1_CREATE_RESENT_AGAIN = cdc("c", 10, order("O1"), source={"attempt": 3})

ORDERS_DAY_1 = [
    O1_CREATE,
    O1_CREATE_RESPACED,
    O1_CREATE_RESENT,
    cdc("u", 30, order("O2", "shipped")),
    cdc("u", 20, order("O2", "paid")),  # late older one
    cdc("c", 40, order("O3")),
    cdc("d", 50, before=deleted("O3")),
    cdc("u", 45, order("O3", "paid")),  # late update of a deleted order
    cdc("c", 60, order("O4")),
    cdc("c", 70, order("O5")),
    cdc("d", 71, before=deleted("O5")),
    cdc("d", 131, before=deleted("O13")),  # its create (lsn 130) arrives tomorrow
]
ITEMS_DAY_1 = [
    cdc("c", 61, item("O4", 1)),
    cdc("c", 62, item("O4", 2)),
    cdc("c", 11, item("O1", 1)),
    cdc("c", 80, item("O9", 1)),  # its order arrives tomorrow
    cdc("c", 81, item("O11", 1)),  # its order arrives on day 3
]
ORDERS_DAY_2 = [
    O1_CREATE,  # again: a bronze duplicate
    O1_CREATE_RESENT_AGAIN,  # a silver duplicate
    cdc("u", 25, order("O2", "paid")),  # older than the lsn 30 applied yesterday
    cdc("u", 47, order("O3", "paid")),  # older than yesterday's delete (lsn 50)
    cdc("d", 100, before=deleted("O4")),  # its lines get no delete events
    cdc("u", 90, order("O5", "paid")),  # newer than the delete (lsn 71): the order is back
    cdc("c", 95, order("O6", ts=f"{D2}T09:00:00Z")),
    cdc("c", 79, order("O9", ts=f"{D2}T09:00:00Z")),
    cdc("c", 130, order("O13")),  # older than yesterday's delete, which had no order_date
]
ORDERS_DAY_3 = [
    cdc("c", 104, order("O11", ts=f"{D3}T09:00:00Z")),
    cdc("c", 105, order("O7", ts=f"{D3}T09:00:00Z")),
    cdc("c", 106, order("O8", ts=f"{D3}T09:00:00Z")),
]
ITEMS_DAY_3 = [
    cdc("u", 110, item("O9", 1, quantity=3)),
    cdc("c", 107, item("O7", 1)),
    cdc("c", 108, item("O8", 1)),
    cdc("c", 109, item("O12", 1)),  # its order arrives on day 4, a day without new lines
]
# Day 4 touches only orders of 2024-01-03 (and quarantines one record).
ORDERS_DAY_4 = [
    cdc("u", 120, order("O7", "paid", ts=f"{D3}T09:00:00Z")),
    cdc("d", 121, before=deleted("O8")),
    cdc("c", 122, order("O10", "lost", ts=f"{D3}T09:00:00Z")),
    cdc("c", 123, order("O12", ts=f"{D3}T09:00:00Z")),
]
CDC_TABLES = ("orders", "order_items")


@pytest.fixture(scope="module")
def orders_story(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Story:
    story = Story(local_lakehouse(tmp_path_factory.mktemp("orders")).only(CDC_TABLES))
    story.land("orders", D1, "orders-1.jsonl", ORDERS_DAY_1)
    story.land("order_items", D1, "items-1.jsonl", ITEMS_DAY_1)
    story.run_day(spark, "day-1", CDC_TABLES)
    story.land("orders", D2, "orders-2.jsonl", ORDERS_DAY_2)
    story.run_day(spark, "day-2", CDC_TABLES)
    story.land("orders", D3, "orders-3.jsonl", ORDERS_DAY_3)
    story.land("order_items", D3, "items-3.jsonl", ITEMS_DAY_3)
    story.run_day(spark, "day-3", CDC_TABLES)
    story.land("orders", D4, "orders-4.jsonl", ORDERS_DAY_4)
    story.run_day(spark, "day-4", CDC_TABLES)
    # A crash after silver committed day 4 but before its ledger rows were written: the retry
    # reads the same bronze increment again.
    DeltaTable.forPath(spark, story.lh.path(LEDGER_TABLE)).delete(
        "run_id = 'day-4' AND layer = 'silver'"
    )
    story.apply_silver(spark, "day-4-retry", CDC_TABLES)
    # The next day nothing new has landed.
    story.run_day(spark, "day-5", CDC_TABLES)
    return story


ORDER_DDL = (
    "order_id string, customer_id string, order_ts timestamp, status string, currency string, "
    "shipping_country string, order_date date, _lsn long, _is_deleted boolean"
)
TOMBSTONE_DDL = "order_id string, _lsn long, _is_deleted boolean"
ITEM_DDL = (
    "order_id string, line_no int, product_id string, quantity int, unit_price decimal(18,2), "
    "discount decimal(5,4), order_date date, _lsn long, _is_deleted boolean"
)


def order_row(order_id: str, status: str, lsn: int, ts: str = f"{D1}T09:00:00") -> tuple:
    return (order_id, "C1", utc(ts), status, "EUR", "DE", utc(ts).date(), lsn, False)


def item_row(
    order_id: str,
    line_no: int,
    lsn: int,
    order_date: str | None,
    quantity: int = 2,
    is_deleted: bool = False,
) -> tuple:
    return (
        order_id,
        line_no,
        "P1",
        quantity,
        Decimal("9.99"),
        Decimal("0.1000"),
        date.fromisoformat(order_date) if order_date else None,
        lsn,
        is_deleted,
    )


def orders_of(df: DataFrame, *order_ids: str, columns: str = ORDER_DDL) -> DataFrame:
    names = [c.split()[0] for c in columns.split(", ")]
    return df.where(F.col("order_id").isin(*order_ids)).select(*names)


def test_same_event_twice_in_one_batch_is_one_row_and_counted_once_as_duplicate(
    spark: SparkSession, orders_story: Story
) -> None:
    orders = orders_story.read(spark, "orders", after="day-1")

    assert_rows(orders_of(orders, "O1"), ORDER_DDL, [order_row("O1", "placed", 10)])
    # The respaced copy is bronze's duplicate, the re-sent one silver's.
    assert orders_story.bronze["day-1"]["orders"].duplicates == 1
    assert orders_story.silver["day-1"]["orders"].duplicates == 1


def test_same_event_again_in_a_later_batch_is_a_duplicate_that_changes_nothing(
    spark: SparkSession, orders_story: Story
) -> None:
    orders = orders_story.read(spark, "orders", after="day-2")

    assert_rows(
        orders_of(orders, "O1", columns=ORDER_DDL + ", _run_id string"),
        ORDER_DDL + ", _run_id string",
        [(*order_row("O1", "placed", 10), "day-1")],
    )
    assert orders_story.bronze["day-2"]["orders"].duplicates == 1
    assert orders_story.silver["day-2"]["orders"].duplicates == 1


def test_late_older_update_in_the_same_batch_does_not_overwrite_the_newer_one(
    spark: SparkSession, orders_story: Story
) -> None:
    orders = orders_story.read(spark, "orders", after="day-1")

    assert_rows(orders_of(orders, "O2"), ORDER_DDL, [order_row("O2", "shipped", 30)])


def test_late_older_update_in_a_later_batch_does_not_overwrite_the_newer_one(
    spark: SparkSession, orders_story: Story
) -> None:
    orders = orders_story.read(spark, "orders", after="day-2")

    assert_rows(orders_of(orders, "O2"), ORDER_DDL, [order_row("O2", "shipped", 30)])


def test_late_update_after_a_delete_in_the_same_batch_leaves_the_tombstone(
    spark: SparkSession, orders_story: Story
) -> None:
    orders = orders_story.read(spark, "orders", after="day-1")

    assert_rows(orders_of(orders, "O3", columns=TOMBSTONE_DDL), TOMBSTONE_DDL, [("O3", 50, True)])
    assert live(orders).where(F.col("order_id") == "O3").count() == 0


def test_late_update_after_a_delete_in_a_later_batch_leaves_the_tombstone(
    spark: SparkSession, orders_story: Story
) -> None:
    orders = orders_story.read(spark, "orders", after="day-2")

    assert_rows(orders_of(orders, "O3", columns=TOMBSTONE_DDL), TOMBSTONE_DDL, [("O3", 50, True)])
    assert live(orders).where(F.col("order_id") == "O3").count() == 0


def test_create_arriving_a_day_after_its_delete_does_not_bring_the_order_back(
    spark: SparkSession, orders_story: Story
) -> None:
    before = orders_story.read(spark, "orders", after="day-1")
    after = orders_story.read(spark, "orders", after="day-2")

    # The delete came first and carries no order_date: its tombstone waits in the null partition,
    # and the late create (an older version) must find it there rather than be inserted beside it.
    tombstone = TOMBSTONE_DDL + ", order_date date"
    assert_rows(orders_of(before, "O13", columns=tombstone), tombstone, [("O13", 131, True, None)])
    assert_rows(orders_of(after, "O13", columns=tombstone), tombstone, [("O13", 131, True, None)])


def test_update_newer_than_the_delete_recreates_the_row(
    spark: SparkSession, orders_story: Story
) -> None:
    before = orders_story.read(spark, "orders", after="day-1")
    after = orders_story.read(spark, "orders", after="day-2")

    assert_rows(orders_of(before, "O5", columns=TOMBSTONE_DDL), TOMBSTONE_DDL, [("O5", 71, True)])
    assert_rows(orders_of(live(after), "O5"), ORDER_DDL, [order_row("O5", "paid", 90)])


def test_cdc_ledger_counts_each_outcome_per_run(orders_story: Story) -> None:
    silver_runs = orders_story.silver

    # read, inserted, updated, deleted, unchanged, duplicates, stale_ignored, quarantined
    assert counts(silver_runs["day-1"]["orders"]) == (11, 3, 0, 3, 0, 1, 4, 0)
    assert counts(silver_runs["day-1"]["order_items"]) == (5, 5, 0, 0, 0, 0, 0, 0)
    assert counts(silver_runs["day-2"]["orders"]) == (8, 2, 1, 1, 0, 1, 3, 0)
    assert counts(silver_runs["day-2"]["order_items"]) == (0, 0, 0, 0, 0, 0, 0, 0)
    assert counts(silver_runs["day-3"]["orders"]) == (3, 3, 0, 0, 0, 0, 0, 0)
    assert counts(silver_runs["day-4"]["orders"]) == (4, 1, 1, 1, 0, 0, 0, 1)


def test_order_delete_tombstones_its_lines_that_had_no_delete_events(
    spark: SparkSession, orders_story: Story
) -> None:
    items = orders_story.read(spark, "order_items", after="day-2")

    assert_rows(
        items.where(F.col("order_id").isin("O1", "O4")).select(*silver_item_columns()),
        ITEM_DDL,
        [
            item_row("O1", 1, 11, D1),
            item_row("O4", 1, 61, D1, is_deleted=True),
            item_row("O4", 2, 62, D1, is_deleted=True),
        ],
    )
    assert counts(orders_story.silver["day-2"]["orders"])[3] == 1  # only the order is counted


def silver_item_columns() -> list[str]:
    return [c.split()[0] for c in ITEM_DDL.split(", ")]


def test_line_that_arrived_before_its_order_takes_the_order_date_once_the_order_arrives(
    spark: SparkSession, orders_story: Story
) -> None:
    items = orders_story.read(spark, "order_items", after="day-2")

    assert_rows(
        items.where(F.col("order_id") == "O9").select(*silver_item_columns()),
        ITEM_DDL,
        [item_row("O9", 1, 80, D2)],
    )


def test_update_of_a_line_that_arrived_before_its_order_keeps_one_row(
    spark: SparkSession, orders_story: Story
) -> None:
    items = orders_story.read(spark, "order_items", after="day-3")

    assert_rows(
        items.where(F.col("order_id") == "O9").select(*silver_item_columns()),
        ITEM_DDL,
        [item_row("O9", 1, 110, D2, quantity=3)],
    )


def test_waiting_line_moves_on_a_day_with_new_lines(
    spark: SparkSession, orders_story: Story
) -> None:
    items = orders_story.read(spark, "order_items", after="day-3")

    assert_rows(
        items.where(F.col("order_id") == "O11").select(*silver_item_columns()),
        ITEM_DDL,
        [item_row("O11", 1, 81, D3)],
    )


def test_waiting_line_moves_on_a_day_without_new_lines(
    spark: SparkSession, orders_story: Story
) -> None:
    items = orders_story.read(spark, "order_items", after="day-4")

    assert_rows(
        items.where(F.col("order_id") == "O12").select(*silver_item_columns()),
        ITEM_DDL,
        [item_row("O12", 1, 109, D3)],
    )


def delta_log_paths(table_path: str, first: int, last: int) -> list[str]:
    """Paths of the files every commit in [first, last] added or removed."""
    paths = []
    for version in range(first, last + 1):
        log = Path(table_path) / "_delta_log" / f"{version:020d}.json"
        for line in log.read_text().splitlines():
            action = json.loads(line)
            for kind in ("add", "remove"):
                if kind in action:
                    paths.append(action[kind]["path"])
    return paths


def test_merge_rewrites_only_files_of_the_partition_it_changes(
    spark: SparkSession, orders_story: Story
) -> None:
    path = orders_story.path("orders")
    first = orders_story.versions["day-3"]["orders"] + 1
    last = orders_story.versions["day-4"]["orders"]

    def files_outside_day_3(after: str) -> DataFrame:
        return (
            orders_story.read(spark, "orders", after=after)
            .where(F.col("order_date") < F.lit(D3).cast("date"))
            .select("order_id", F.input_file_name().alias("file"))
        )

    touched = delta_log_paths(path, first, last)
    assert last == first  # one MERGE
    assert touched, "day 4 changed orders of 2024-01-03, so its MERGE must write files"
    assert [p for p in touched if not p.startswith(f"order_date={D3}/")] == []
    metrics = DeltaTable.forPath(spark, path).history().where(f"version = {last}").first()
    files_in_day_3 = (
        orders_story.read(spark, "orders", after="day-3")
        .where(F.col("order_date") == F.lit(D3).cast("date"))
        .select(F.input_file_name())
        .distinct()
        .count()
    )
    assert int(metrics["operationMetrics"]["numTargetFilesRemoved"]) <= files_in_day_3
    assert_df_equality(
        files_outside_day_3("day-4"), files_outside_day_3("day-3"), ignore_row_order=True
    )


def files_added(spark: SparkSession, path: str, first: int, last: int) -> int:
    commits = (
        DeltaTable.forPath(spark, path)
        .history()
        .where(F.col("version").between(first, last))
        .collect()
    )
    return sum(
        int((c["operationMetrics"] or {}).get(k, 0))
        for c in commits
        for k in ("numFiles", "numTargetFilesAdded", "numAddedFiles")
    )


def test_rerun_with_no_new_files_changes_no_silver_table(
    spark: SparkSession, orders_story: Story
) -> None:
    before, after = orders_story.versions["day-4-retry"], orders_story.versions["day-5"]

    assert after == before
    for table in CDC_TABLES:
        assert files_added(spark, orders_story.path(table), before[table] + 1, after[table]) == 0
        assert_df_equality(
            orders_story.read(spark, table, after="day-5"),
            orders_story.read(spark, table, after="day-4"),
            ignore_row_order=True,
        )
    assert [counts(e) for e in orders_story.silver["day-5"].values()] == [(0,) * 8] * 2


def test_retry_of_a_committed_batch_whose_ledger_rows_were_lost_changes_no_silver_table(
    spark: SparkSession, orders_story: Story
) -> None:
    assert orders_story.versions["day-4-retry"] == orders_story.versions["day-4"]
    for table in CDC_TABLES:
        assert_df_equality(
            orders_story.read(spark, table, after="day-4-retry"),
            orders_story.read(spark, table, after="day-4"),
            ignore_row_order=True,
        )
    quarantined = read_quarantine(spark, orders_story.lh).where("layer = 'silver'")
    assert [tuple(r) for r in quarantined.select("source", "line", "run_id").collect()] == [
        ("orders", 3, "day-4")
    ]


def test_retry_of_a_committed_batch_counts_every_record_as_a_duplicate(
    orders_story: Story,
) -> None:
    retry = orders_story.silver["day-4-retry"]

    # read, inserted, updated, deleted, unchanged, duplicates, stale_ignored, quarantined
    assert counts(retry["orders"]) == (4, 0, 0, 0, 0, 4, 0, 0)
    assert counts(retry["order_items"]) == (0, 0, 0, 0, 0, 0, 0, 0)


def test_final_orders_and_lines_after_every_day(spark: SparkSession, orders_story: Story) -> None:
    orders = orders_story.read(spark, "orders")

    assert_rows(
        live(orders).select(*[c.split()[0] for c in ORDER_DDL.split(", ")]),
        ORDER_DDL,
        [
            order_row("O1", "placed", 10),
            order_row("O2", "shipped", 30),
            order_row("O5", "paid", 90),
            order_row("O6", "placed", 95, f"{D2}T09:00:00"),
            order_row("O7", "paid", 120, f"{D3}T09:00:00"),
            order_row("O9", "placed", 79, f"{D2}T09:00:00"),
            order_row("O11", "placed", 104, f"{D3}T09:00:00"),
            order_row("O12", "placed", 123, f"{D3}T09:00:00"),
        ],
    )
    assert_rows(
        orders.where("_is_deleted").select("order_id", "_lsn", "_is_deleted"),
        TOMBSTONE_DDL,
        [("O3", 50, True), ("O4", 100, True), ("O8", 121, True), ("O13", 131, True)],
    )
    items = orders_story.read(spark, "order_items").where(F.col("order_id").isin("O7", "O8"))
    assert_rows(
        items.select(*silver_item_columns()),
        ITEM_DDL,
        [
            item_row("O7", 1, 107, D3),
            item_row("O8", 1, 108, D3, is_deleted=True),
        ],
    )


# --- the shop story: every source over three days ------------------------------------------------


def customer(customer_id: str, city: str, **changes: object) -> dict:
    row = {
        "customer_id": customer_id,
        "email": "Otto.Normal@Example.org",
        "first_name": "Otto",
        "last_name": "Normalverbraucher",
        "phone": None,
        "country": "DE",
        "city": city,
        "signup_ts": "2023-06-01T00:00:00Z",
        "marketing_opt_in": True,
    }
    return {**row, **changes}


ANN = customer(
    "C2",
    "Leeds",
    email=" Ann@Example.com ",
    first_name="Zelda",
    last_name="Quixotic-Brandywine",
    phone="+49 151 23456789",
    country="GB",
    marketing_opt_in=False,
)
CUSTOMERS_DAY_1 = [
    cdc("c", 1, customer("C1", "Berlin"), ts="2024-01-01T10:00:00Z"),
    cdc(
        "u",
        2,
        customer("C1", "Hamburg"),
        before=customer("C1", "Berlin"),
        ts="2024-01-02T10:00:00Z",
    ),
    # Only a dropped personal column changes: no new version in history.
    cdc("u", 3, customer("C1", "Hamburg", first_name="Otto-Karl"), ts="2024-01-02T12:00:00Z"),
    cdc("c", 4, ANN, ts="2024-01-01T11:00:00Z"),
]
CUSTOMERS_DAY_2 = [cdc("u", 5, customer("C1", "Munich"), ts="2024-01-03T10:00:00Z")]
PII_VALUES = (
    "ann@example.com",
    "zelda",
    "quixotic-brandywine",
    "23456789",
    "203.0.113.77",
    "otto.normal@example.org",
    "normalverbraucher",
)

NO_ORDER_ID = {k: v for k, v in order("O0").items() if k != "order_id"}

# (raw record, column_name, reason) for every rule a record can break, in file order.
BAD_ORDERS = [
    (cdc("c", 11, NO_ORDER_ID), "order_id", "order_id: missing"),
    (cdc("x", 12, order("Q2")), "op", "op: 'x' is not one of c, u, d, r"),
    (cdc("c", "twelve", order("Q3")), "lsn", "lsn: 'twelve' is not an integer"),
    (cdc("c", 13, order("Q4"), ts_ms="soon"), "ts_ms", "ts_ms: missing or not epoch milliseconds"),
    (
        cdc("c", 14, order("Q5", "lost")),
        "status",
        "status: 'lost' is not one of placed, paid, shipped, delivered, cancelled, returned",
    ),
    (
        cdc("c", 15, order("Q6", ts="yesterday")),
        "order_ts",
        "order_ts: 'yesterday' is not an ISO-8601 timestamp",
    ),
    (
        cdc("c", 16, {**order("Q7"), "currency": "JPY"}),
        "currency",
        "currency: 'JPY' is not one of USD, EUR, GBP",
    ),
    (
        cdc("c", 17, {**order("Q8"), "shipping_country": "Germany"}),
        "shipping_country",
        "shipping_country: 'Germany' does not match ^[A-Z]{2}$",
    ),
]
BAD_ITEMS = [
    (cdc("c", 21, item("O1", 2, quantity=0)), "quantity", "quantity: 0 is below the minimum 1"),
    (
        cdc("c", 22, item("O1", 3, quantity="three")),
        "quantity",
        "quantity: 'three' is not an integer",
    ),
    (
        cdc("c", 23, item("O1", 4, unit_price="9.999")),
        "unit_price",
        "unit_price: '9.999' has more than 2 decimals",
    ),
    (cdc("c", 24, item("O1", 5, discount="1.0")), "discount", "discount: 1.0 must be less than 1"),
    (
        cdc("c", 25, item("O1", 6, quantity=0, discount="1.0")),
        "quantity",
        "quantity: 0 is below the minimum 1; discount: 1.0 must be less than 1",
    ),
]
BAD_CUSTOMERS = [
    (
        cdc("c", 6, customer("C3", "Bonn", country="Germany")),
        "country",
        "country: 'Germany' does not match ^[A-Z]{2}$",
    ),
]
PAYMENTS_HEADER = (
    "event_id,payment_id,order_id,event_ts,event_type,amount,currency,method,provider_ref"
)
E1 = "E1,PAY1,O1,2024-01-01T10:05:00Z,captured,20.00,EUR,card,psp-1"
E2 = "E2,PAY2,O1,2024-01-01T10:06:00Z,refunded,5.00,EUR,card,psp-2"
E3 = "E3,PAY3,O1,2024-01-02T08:00:00Z,captured,7.50,GBP,paypal,psp-3"
# E1 again, written differently: a new record to bronze, the same event to silver.
E1_MILLIS = "E1,PAY1,O1,2024-01-01T10:05:00.000Z,captured,20.00,EUR,card,psp-1"
E1_ONE_DECIMAL = "E1,PAY1,O1,2024-01-01T10:05:00Z,captured,20.0,EUR,card,psp-1"
BAD_PAYMENTS = [
    (
        "E4,PAY4,O1,2024-01-01T10:07:00Z,captured,-5.00,EUR,card,psp-4",
        "amount",
        "amount: -5.00 must be greater than 0",
    ),
    (
        "E5,PAY5,O1,2024-01-01T10:08:00Z,captured,0,EUR,card,psp-5",
        "amount",
        "amount: 0 must be greater than 0",
    ),
    (
        "E6,PAY6,O1,2024-02-30T10:00:00Z,captured,1.00,EUR,card,psp-6",
        "event_ts",
        "event_ts: '2024-02-30T10:00:00Z' is not an ISO-8601 timestamp",
    ),
]
FX_HEADER = "rate_date,currency,rate_to_usd"
BAD_FX = [
    ("2024-01-02,GBP,0", "rate_to_usd", "rate_to_usd: 0 must be greater than 0"),
    ("2024-01-02,CHF,0.90", "currency", "currency: 'CHF' is not one of USD, EUR, GBP"),
]
PRODUCTS_HEADER = "product_id,name,category,brand,list_price,currency,active,updated_at"
P1 = "P1,Mug,kitchen,Acme,9.99,USD,true,2023-12-01T00:00:00Z"
P2 = "P2,Plate,kitchen,Acme,4.50,USD,true,2023-12-01T00:00:00Z"
CLICK = json.dumps(
    {
        "event_id": "K1",
        "event_ts": "2024-01-01T10:00:00Z",
        "session_id": "S1",
        "customer_id": "C2",
        "event_type": "page_view",
        "product_id": None,
        "order_id": None,
        "ip": "203.0.113.77",
        "user_agent": "Mozilla/5.0",
    }
)


def bad(rows: list[tuple[str, str, str]]) -> list[str]:
    return [r[0] for r in rows]


@dataclass
class Shop(Story):
    files: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def shop_story(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    shop = Shop(local_lakehouse(tmp_path_factory.mktemp("shop")))
    land = shop.land
    shop.files["customers"] = land(
        "customers", D1, "customers-1.jsonl", CUSTOMERS_DAY_1 + bad(BAD_CUSTOMERS)
    )
    shop.files["orders"] = land(
        "orders", D1, "orders-1.jsonl", [cdc("c", 10, order("O1")), *bad(BAD_ORDERS)]
    )
    shop.files["order_items"] = land(
        "order_items", D1, "items-1.jsonl", [cdc("c", 20, item("O1", 1)), *bad(BAD_ITEMS)]
    )
    shop.files["payments"] = land(
        "payments", D1, "payments-a.csv", [PAYMENTS_HEADER, E1, E2, *bad(BAD_PAYMENTS)]
    )
    # The same payment event in a second file of the day (which also has a drift column).
    land("payments", D1, "payments-b.csv", [PAYMENTS_HEADER + ",batch", E1_MILLIS + ",b2"])
    shop.files["fx_rates"] = land(
        "fx_rates",
        D1,
        "fx.csv",
        [FX_HEADER, "2024-01-01,EUR,1.10", "2024-01-01,GBP,1.27", *bad(BAD_FX)],
    )
    land("products", D1, "products.csv", [PRODUCTS_HEADER, P1, P2])
    land("clickstream", D1, "clicks.jsonl", [CLICK])
    shop.run_day(spark, "day-1", tuple(SPECS))

    land("customers", D2, "customers-2.jsonl", CUSTOMERS_DAY_2)
    land(
        "payments",
        D2,
        "payments.csv",
        [PAYMENTS_HEADER + ",fee", E1 + ",0.30", E1_ONE_DECIMAL + ",0.30", E3 + ",0.10"],
    )
    land("fx_rates", D2, "fx.csv", [FX_HEADER, "2024-01-01,EUR,1.11", "2024-01-02,EUR,1.12"])
    land("products", D2, "products.csv", [PRODUCTS_HEADER, P1])  # P2 dropped
    shop.run_day(spark, "day-2", ("customers", "fx_rates", "payments", "products"))

    land("products", D3, "products.csv", [PRODUCTS_HEADER, P1, P2])  # P2 back
    shop.run_day(spark, "day-3", ("products",))
    return shop


def test_customer_moving_twice_has_three_history_versions_timed_by_commit(
    spark: SparkSession, shop_story: Shop
) -> None:
    history = shop_story.read(spark, "customers_history").where("customer_id = 'C1'")
    current = live(shop_story.read(spark, "customers")).where("customer_id = 'C1'")

    assert_rows(
        history.select("customer_id", "city", "valid_from", "valid_to", "is_current", "_lsn"),
        "customer_id string, city string, valid_from timestamp, valid_to timestamp, "
        "is_current boolean, _lsn long",
        [
            ("C1", "Berlin", utc("2024-01-01T10:00:00"), utc("2024-01-02T10:00:00"), False, 1),
            ("C1", "Hamburg", utc("2024-01-02T10:00:00"), utc("2024-01-03T10:00:00"), False, 2),
            ("C1", "Munich", utc("2024-01-03T10:00:00"), None, True, 5),
        ],
    )
    assert_rows(
        current.select("customer_id", "city", "_lsn"),
        "customer_id string, city string, _lsn long",
        [("C1", "Munich", 5)],
    )


def test_customers_keep_only_keyed_hashes_of_email_and_phone(
    spark: SparkSession, shop_story: Shop
) -> None:
    customers = live(shop_story.read(spark, "customers"))

    assert_rows(
        customers.select("customer_id", "email_hash", "phone_hash", "country", "city"),
        "customer_id string, email_hash string, phone_hash string, country string, city string",
        [
            ("C1", hmac_hex("otto.normal@example.org"), None, "DE", "Munich"),
            (
                "C2",
                hmac.new(b"test-only-hmac-key", b"ann@example.com", hashlib.sha256).hexdigest(),
                hmac_hex("+49 151 23456789"),
                "GB",
                "Leeds",
            ),
        ],
    )
    assert [c for c in customers.columns if not c.startswith("_")] == [
        "customer_id",
        "email_hash",
        "phone_hash",
        "country",
        "city",
        "signup_ts",
        "marketing_opt_in",
    ]


def test_no_personal_data_in_clear_in_any_silver_table(
    spark: SparkSession, shop_story: Shop
) -> None:
    tables = sorted(p.name for p in (Path(shop_story.root) / "silver").iterdir())
    assert {"customers", "customers_history", "clickstream"} <= set(tables)

    def holding_pii(df: DataFrame) -> DataFrame:
        strings = [f.name for f in df.schema.fields if isinstance(f.dataType, StringType)]
        hits = [F.lower(F.col(c)).contains(v) for c in strings for v in PII_VALUES]
        return df.where(reduce(lambda a, b: a | b, hits))

    leaks = {t: holding_pii(shop_story.read(spark, t)).count() for t in tables}

    assert leaks == dict.fromkeys(tables, 0)
    # The values did reach bronze, so silver could have leaked them.
    raw = spark.read.format("delta").load(shop_story.lh.path("bronze.customers"))
    assert raw.where(F.lower("raw").contains("quixotic-brandywine")).count() == 1


def test_product_dropped_from_a_snapshot_is_inactive_from_that_day_then_active_again(
    spark: SparkSession, shop_story: Shop
) -> None:
    ddl = "product_id string, active boolean, snapshot_date date, inactive_from date"
    names = ["product_id", "active", "snapshot_date", "inactive_from"]
    d = date.fromisoformat

    assert_rows(
        live(shop_story.read(spark, "products", after="day-2")).select(*names),
        ddl,
        [
            ("P1", True, d(D2), None),
            ("P2", False, d(D2), d(D2)),
        ],
    )
    assert_rows(
        live(shop_story.read(spark, "products", after="day-3")).select(*names),
        ddl,
        [
            ("P1", True, d(D3), None),
            ("P2", True, d(D3), None),
        ],
    )


def test_products_history_has_an_inactive_version_for_the_days_a_product_was_absent(
    spark: SparkSession, shop_story: Shop
) -> None:
    history = shop_story.read(spark, "products_history")

    assert_rows(
        history.select("product_id", "active", "valid_from", "valid_to", "is_current"),
        "product_id string, active boolean, valid_from timestamp, valid_to timestamp, "
        "is_current boolean",
        [
            ("P1", True, utc(D1), None, True),
            ("P2", True, utc(D1), utc(D2), False),
            ("P2", False, utc(D2), utc(D3), False),
            ("P2", True, utc(D3), None, True),
        ],
    )


def test_fx_rate_delivered_again_on_a_later_day_corrects_the_earlier_one(
    spark: SparkSession, shop_story: Shop
) -> None:
    ddl = "rate_date date, currency string, rate_to_usd decimal(18,8)"
    d = date.fromisoformat

    def rates(after: str) -> DataFrame:
        return live(shop_story.read(spark, "fx_rates", after=after)).select(
            "rate_date", "currency", "rate_to_usd"
        )

    assert_rows(
        rates("day-1"), ddl, [(d(D1), "EUR", Decimal("1.10")), (d(D1), "GBP", Decimal("1.27"))]
    )
    assert_rows(
        rates("day-2"),
        ddl,
        [
            (d(D1), "EUR", Decimal("1.11")),
            (d(D1), "GBP", Decimal("1.27")),
            (d(D2), "EUR", Decimal("1.12")),
        ],
    )


def test_payment_event_delivered_again_is_one_row_per_event_id(
    spark: SparkSession, shop_story: Shop
) -> None:
    payments = live(shop_story.read(spark, "payments")).select(
        "event_id",
        "payment_id",
        "event_ts",
        "event_type",
        "amount",
        "currency",
        "method",
        "provider_ref",
        "event_date",
    )

    assert_rows(
        payments,
        "event_id string, payment_id string, event_ts timestamp, event_type string, "
        "amount decimal(18,2), currency string, method string, provider_ref string, "
        "event_date date",
        [
            (
                "E1",
                "PAY1",
                utc("2024-01-01T10:05:00"),
                "captured",
                Decimal("20.00"),
                "EUR",
                "card",
                "psp-1",
                date(2024, 1, 1),
            ),
            (
                "E2",
                "PAY2",
                utc("2024-01-01T10:06:00"),
                "refunded",
                Decimal("5.00"),
                "EUR",
                "card",
                "psp-2",
                date(2024, 1, 1),
            ),
            (
                "E3",
                "PAY3",
                utc("2024-01-02T08:00:00"),
                "captured",
                Decimal("7.50"),
                "GBP",
                "paypal",
                "psp-3",
                date(2024, 1, 2),
            ),
        ],
    )
    # read, inserted, updated, deleted, unchanged, duplicates, stale_ignored, quarantined
    assert counts(shop_story.silver["day-1"]["payments"]) == (6, 2, 0, 0, 0, 1, 0, 3)
    assert counts(shop_story.silver["day-2"]["payments"]) == (2, 1, 0, 0, 0, 1, 0, 0)
    assert shop_story.bronze["day-2"]["payments"].duplicates == 1  # E1 as first written


def test_every_broken_rule_is_quarantined_with_its_column_and_reason(
    spark: SparkSession, shop_story: Shop
) -> None:
    def expected(source: str, rows: list[tuple[str, str, str]], first_line: int) -> list[tuple]:
        return [
            (source, shop_story.files[source], first_line + i, raw, column, reason)
            for i, (raw, column, reason) in enumerate(rows)
        ]

    quarantined = read_quarantine(spark, shop_story.lh).where("layer = 'silver'")

    assert_rows(
        quarantined.select("source", "file", "line", "raw", "column_name", "reason"),
        "source string, file string, line long, raw string, column_name string, reason string",
        expected("orders", BAD_ORDERS, 2)
        + expected("order_items", BAD_ITEMS, 2)
        + expected("customers", BAD_CUSTOMERS, len(CUSTOMERS_DAY_1) + 1)
        + expected("payments", BAD_PAYMENTS, 4)
        + expected("fx_rates", BAD_FX, 4),
    )
    assert {r["run_id"] for r in quarantined.select("run_id").distinct().collect()} == {"day-1"}


def test_the_broken_records_of_every_table_are_quarantined_by_one_commit(
    spark: SparkSession, shop_story: Shop
) -> None:
    silver_rows = read_quarantine(spark, shop_story.lh).where("layer = 'silver'").count()
    merges = DeltaTable.forPath(spark, shop_story.lh.path(QUARANTINE_TABLE)).history()
    inserted = [
        int(m["operationMetrics"]["numTargetRowsInserted"])
        for m in merges.where("operation = 'MERGE'").collect()
    ]

    assert silver_rows == (
        len(BAD_ORDERS) + len(BAD_ITEMS) + len(BAD_CUSTOMERS) + len(BAD_PAYMENTS) + len(BAD_FX)
    )
    assert silver_rows in inserted  # one MERGE for the five tables, not one each


def test_every_silver_ledger_row_accounts_for_every_record_read(
    spark: SparkSession, orders_story: Story, shop_story: Shop
) -> None:
    outcomes = (
        "inserted",
        "updated",
        "deleted",
        "unchanged",
        "duplicates",
        "stale_ignored",
        "quarantined",
    )
    total = reduce(lambda a, b: a + b, [F.coalesce(F.col(c), F.lit(0)) for c in outcomes])

    for story in (orders_story, shop_story):
        ledger = read_ledger(spark, story.lh).where("layer = 'silver'")
        unbalanced = ledger.where(F.col("records_read") != total)
        assert unbalanced.select("run_id", "table_name").collect() == []
        assert ledger.where("records_read > 0").count() >= 5


# --- other scenarios -----------------------------------------------------------------------------


def test_missing_hmac_key_stops_silver_before_it_writes_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spark: SparkSession
) -> None:
    lh = local_lakehouse(tmp_path)
    monkeypatch.delenv(KEY_ENV)

    with pytest.raises(ConfigError, match=KEY_ENV):
        silver.apply(spark, lh, "run-1", ["orders"])

    assert not (tmp_path / "lake" / "silver").exists()


def in_threads(*actions: Callable[[], object]) -> list[BaseException]:
    """Run the actions at once, one thread each; the errors they raised."""
    start = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: Callable[[], object]) -> None:
        start.wait()
        try:
            action()
        except BaseException as exc:  # reported by the test, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_writers_to_the_same_tables_end_with_the_correct_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    story = Story(local_lakehouse(tmp_path).only(CDC_TABLES))
    story.land(
        "orders", D1, "orders-1.jsonl", [cdc("c", 10, order("O1")), cdc("c", 20, order("O2"))]
    )
    story.land(
        "order_items",
        D1,
        "items-1.jsonl",
        [cdc("c", 11, item("O1", 1)), cdc("c", 21, item("O2", 1))],
    )
    story.run_day(spark, "day-1", CDC_TABLES)
    story.land(
        "orders",
        D2,
        "orders-2.jsonl",
        [cdc("d", 100, before=deleted("O1")), cdc("c", 101, order("O3"))],
    )
    story.land(
        "order_items",
        D2,
        "items-2.jsonl",
        [cdc("u", 102, item("O2", 1, quantity=5)), cdc("c", 103, item("O2", 2))],
    )
    record(spark, story.lh, bronze.ingest(spark, story.lh, "day-2"))

    def writer(run_id: str, table: str) -> Callable[[], object]:
        # Two jobs, two sessions: what two schedulers' runs would be.
        session = spark.newSession()
        return lambda: silver.apply_table(session, story.lh, run_id, table)

    # Two runs of the orders job on the same increment (the same rows twice), while the lines
    # job updates lines in the partition the orders job's cascade tombstones a line in.
    errors = in_threads(
        writer("day-2-a", "orders"), writer("day-2-b", "orders"), writer("day-2-c", "order_items")
    )

    assert errors == []
    assert_rows(
        story.read(spark, "orders").select("order_id", "status", "_lsn", "_is_deleted"),
        "order_id string, status string, _lsn long, _is_deleted boolean",
        [("O1", "placed", 100, True), ("O2", "placed", 20, False), ("O3", "placed", 101, False)],
    )
    assert_rows(
        story.read(spark, "order_items").select(*silver_item_columns()),
        ITEM_DDL,
        [
            item_row("O1", 1, 11, D1, is_deleted=True),
            item_row("O2", 1, 102, D1, quantity=5),
            item_row("O2", 2, 103, D1),
        ],
    )


# --- bronze at any age: a copy delivered after the dedup window ----------------------------------


def test_a_copy_delivered_after_bronze_window_is_landed_again_and_silver_adds_no_row(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Bronze compares a record with `dedup_window_days` either side of its ingest date (and with
    erased records at any age); a later copy is landed again and silver counts it a duplicate."""
    lh = local_lakehouse(tmp_path).only(("orders",))
    lh = lh.with_config(bronze=dataclasses.replace(lh.config.bronze, dedup_window_days=1))
    story = Story(lh)
    first = [cdc("c", 10, order("O1")), cdc("c", 11, order("O2"))]
    story.land("orders", D1, "orders-1.jsonl", first)
    story.run_day(spark, "day-1", ("orders",))
    # O2's record was erased (what `lakehouse erase` records): a copy is never landed again.
    o2_id = record_id(
        "orders", json.dumps(json.loads(first[1]), sort_keys=True, separators=(",", ":"))
    )
    erased = [("orders", o2_id, "req-1", utc("2024-01-02T00:00:00Z"))]
    spark.createDataFrame(erased, bronze.ERASED_SCHEMA).write.format("delta").save(
        bronze.erased_path(lh)
    )
    story.land("orders", D2, "orders-1-again.jsonl", first)  # within a day of D1
    story.run_day(spark, "day-2", ("orders",))
    story.land("orders", "2024-01-05", "orders-1-late.jsonl", first)  # four days later
    story.run_day(spark, "day-5", ("orders",))

    def bronze_counts(run_id: str) -> tuple[int, ...]:
        e = story.bronze[run_id]["orders"]
        return (e.files_read, e.records_read, e.records_written, e.duplicates, e.quarantined)

    # files read, records read, written, duplicates, quarantined: the early copy is held; of the
    # late one O1 is landed again, O2 (erased) is not
    assert bronze_counts("day-2") == (1, 2, 0, 2, 0)
    assert bronze_counts("day-5") == (1, 2, 1, 1, 0)
    # silver: read, inserted, updated, deleted, unchanged, duplicates, stale, quarantined
    assert counts(story.silver["day-5"]["orders"]) == (1, 0, 0, 0, 0, 1, 0, 0)
    assert_df_equality(
        story.read(spark, "orders"),
        story.read(spark, "orders", after="day-1"),
        ignore_row_order=True,
    )
