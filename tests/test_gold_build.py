"""gold: the star schema and the dashboard KPIs, built on real Delta tables from a small silver
scenario with late changes, incrementally and in full (contracts/metrics.md).

The scenario (one module-scoped lakehouse, built once; each step is one or more silver commits
followed by an incremental gold run):

1. `initial`: Dec 2024 to Feb 2025; EUR rates 2024-12-30 (1.10) and 2025-01-02 (1.05), no GBP rate.
2. `gbp_rate`: a GBP rate for 2024-12-01 (1.25) arrives: the GBP order of 2024-12-31 is priced.
3. `late_orders`: order o2 turns `returned`; c4's earlier order o10 (2024-12-31) arrives late.
4. `corrections`: EUR 2024-12-30 corrected to 1.12; o7 deleted; o9 cancelled; a refund and a
   failed payment; new versions of customer c1 and product p1; customer c5 deleted.
5. `no_changes`: nothing new in silver.

Money in the expected rows is written as the exact sum, then the half-up rounded figure.
"""

from __future__ import annotations

import datetime as dt
import html.parser
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.core.context import Lakehouse
from lakehouse.gold import GoldResult, build, build_gold, gold_tables
from lakehouse.gold.build import CONSUMED_TABLE, compute_table
from lakehouse.gold.dashboard import kpi_summary_text, read_kpis, write_dashboard
from lakehouse.gold.published import advance, latest_versions, published_versions, read_gold
from lakehouse.state.catalog import pinned_to, point_gold_views
from lakehouses import local_lakehouse

D = Decimal
date = dt.date
ts = dt.datetime

# ---------------------------------------------------------------------------------------------
# A silver writer for tests: the silver schema gold is built against, CDF on, one commit a call.


def _schema(*fields: tuple[str, Any]) -> StructType:
    return StructType([StructField(n, t, True) for n, t in fields])


_MONEY = DecimalType(18, 2)
SILVER_TABLES: dict[str, tuple[StructType, tuple[str, ...], tuple[str, ...]]] = {
    # name: (schema, key, partition columns)
    "customers": (
        _schema(
            ("customer_id", StringType()),
            ("email_hash", StringType()),
            ("phone_hash", StringType()),
            ("country", StringType()),
            ("city", StringType()),
            ("signup_ts", TimestampType()),
            ("marketing_opt_in", BooleanType()),
            ("_lsn", LongType()),
            ("_is_deleted", BooleanType()),
        ),
        ("customer_id",),
        (),
    ),
    "customers_history": (
        _schema(
            ("customer_id", StringType()),
            ("email_hash", StringType()),
            ("phone_hash", StringType()),
            ("country", StringType()),
            ("city", StringType()),
            ("signup_ts", TimestampType()),
            ("marketing_opt_in", BooleanType()),
            ("valid_from", TimestampType()),
            ("valid_to", TimestampType()),
            ("is_current", BooleanType()),
            ("_lsn", LongType()),
        ),
        ("customer_id", "valid_from"),
        (),
    ),
    "orders": (
        _schema(
            ("order_id", StringType()),
            ("customer_id", StringType()),
            ("order_ts", TimestampType()),
            ("order_date", DateType()),
            ("status", StringType()),
            ("currency", StringType()),
            ("shipping_country", StringType()),
            ("_lsn", LongType()),
            ("_is_deleted", BooleanType()),
        ),
        ("order_id",),
        ("order_date",),
    ),
    "order_items": (
        _schema(
            ("order_id", StringType()),
            ("line_no", IntegerType()),
            ("product_id", StringType()),
            ("quantity", IntegerType()),
            ("unit_price", _MONEY),
            ("discount", DecimalType(5, 4)),
            ("order_date", DateType()),
            ("_lsn", LongType()),
            ("_is_deleted", BooleanType()),
        ),
        ("order_id", "line_no"),
        ("order_date",),
    ),
    "products_history": (
        _schema(
            ("product_id", StringType()),
            ("name", StringType()),
            ("category", StringType()),
            ("brand", StringType()),
            ("list_price", _MONEY),
            ("currency", StringType()),
            ("active", BooleanType()),
            ("updated_at", TimestampType()),
            ("valid_from", TimestampType()),
            ("valid_to", TimestampType()),
            ("is_current", BooleanType()),
        ),
        ("product_id", "valid_from"),
        (),
    ),
    "payments": (
        _schema(
            ("event_id", StringType()),
            ("payment_id", StringType()),
            ("order_id", StringType()),
            ("event_ts", TimestampType()),
            ("event_date", DateType()),
            ("event_type", StringType()),
            ("amount", _MONEY),
            ("currency", StringType()),
            ("method", StringType()),
            ("provider_ref", StringType()),
            ("_is_deleted", BooleanType()),
        ),
        ("event_id",),
        ("event_date",),
    ),
    "clickstream": (
        _schema(
            ("event_id", StringType()),
            ("event_ts", TimestampType()),
            ("session_id", StringType()),
            ("customer_id", StringType()),
            ("event_type", StringType()),
            ("product_id", StringType()),
            ("order_id", StringType()),
            ("event_date", DateType()),
            ("_is_deleted", BooleanType()),
        ),
        ("event_id",),
        ("event_date",),
    ),
    "fx_rates": (
        _schema(
            ("rate_date", DateType()),
            ("currency", StringType()),
            ("rate_to_usd", DecimalType(18, 8)),
            ("_is_deleted", BooleanType()),
        ),
        ("rate_date", "currency"),
        (),
    ),
}


@dataclass
class SilverWriter:
    """Writes silver tables with the schema gold reads: Delta, Change Data Feed on from version 0,
    one MERGE on the table's key per call (so each call is one silver version), tombstones for
    deletes. Rows are dicts; omitted columns are null, `_is_deleted` defaults to false and
    `order_date` / `event_date` to the date of `order_ts` / `event_ts`."""

    spark: SparkSession
    lakehouse_root: str
    _lsn: int = field(default=0)

    def path(self, table: str) -> str:
        return f"{self.lakehouse_root}/silver/{table}"

    def upsert(self, table: str, rows: list[dict[str, Any]]) -> None:
        schema, keys, parts = SILVER_TABLES[table]
        source = self.spark.createDataFrame([self._complete(table, r) for r in rows], schema)
        if not DeltaTable.isDeltaTable(self.spark, self.path(table)):
            (
                source.write.format("delta")
                .option("delta.enableChangeDataFeed", "true")
                .partitionBy(*parts)
                .save(self.path(table))
            )
            return
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        (
            DeltaTable.forPath(self.spark, self.path(table))
            .alias("t")
            .merge(source.alias("s"), on)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

    def delete(self, table: str, keys: list[dict[str, Any]]) -> None:
        """Tombstone rows (`_is_deleted = true`), keeping their other columns, like silver."""
        _, key_cols, _ = SILVER_TABLES[table]
        cond = " OR ".join(
            "(" + " AND ".join(f"{k} = '{row[k]}'" for k in key_cols) + ")" for row in keys
        )
        DeltaTable.forPath(self.spark, self.path(table)).update(cond, {"_is_deleted": "true"})

    def _complete(self, table: str, row: dict[str, Any]) -> tuple[Any, ...]:
        schema = SILVER_TABLES[table][0]
        row = dict(row)
        if "_lsn" in schema.fieldNames():
            self._lsn += 1
            row.setdefault("_lsn", self._lsn)
        if "_is_deleted" in schema.fieldNames():
            row.setdefault("_is_deleted", False)
        if table == "orders":
            row.setdefault("order_date", row["order_ts"].date())
        if table in ("payments", "clickstream"):
            row.setdefault("event_date", row["event_ts"].date())
        return tuple(row.get(f) for f in schema.fieldNames())


# ---------------------------------------------------------------------------------------------
# The scenario


def customer(cid: str, city: str = "Paris", **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": cid,
        "email_hash": f"h-{cid}",
        "phone_hash": None,
        "country": "FR",
        "city": city,
        "signup_ts": ts(2024, 11, 1, 12),
        "marketing_opt_in": True,
        **extra,
    }


def customer_version(
    cid: str, valid_from: dt.datetime, valid_to: dt.datetime | None = None, city: str = "Paris"
) -> dict[str, Any]:
    return {
        **customer(cid, city),
        "valid_from": valid_from,
        "valid_to": valid_to,
        "is_current": valid_to is None,
    }


def product_version(
    pid: str, price: str, valid_from: dt.datetime, valid_to: dt.datetime | None = None
) -> dict[str, Any]:
    return {
        "product_id": pid,
        "name": f"Product {pid}",
        "category": "toys",
        "brand": "Acme",
        "list_price": D(price),
        "currency": "USD",
        "active": True,
        "updated_at": valid_from,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "is_current": valid_to is None,
    }


def order(oid: str, cid: str, at: dt.datetime, status: str, currency: str) -> dict[str, Any]:
    return {
        "order_id": oid,
        "customer_id": cid,
        "order_ts": at,
        "status": status,
        "currency": currency,
        "shipping_country": "FR",
    }


def item(
    oid: str, line: int, pid: str, qty: int, price: str, discount: str, order_date: dt.date
) -> dict[str, Any]:
    return {
        "order_id": oid,
        "line_no": line,
        "product_id": pid,
        "quantity": qty,
        "unit_price": D(price),
        "discount": D(discount),
        "order_date": order_date,
    }


def payment(
    eid: str, oid: str, at: dt.datetime, kind: str, amount: str, currency: str
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "payment_id": f"pay-{eid}",
        "order_id": oid,
        "event_ts": at,
        "event_type": kind,
        "amount": D(amount),
        "currency": currency,
        "method": "card",
        "provider_ref": f"ref-{eid}",
    }


def click(
    eid: str,
    sid: str,
    at: dt.datetime,
    kind: str,
    cid: str | None = None,
    product: str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_ts": at,
        "session_id": sid,
        "customer_id": cid,
        "event_type": kind,
        "product_id": product,
        "order_id": order,
    }


def rate(day: dt.date, currency: str, value: str) -> dict[str, Any]:
    return {"rate_date": day, "currency": currency, "rate_to_usd": D(value)}


EPOCH = ts(2024, 1, 1)
JAN1 = ts(2025, 1, 1)


def write_initial(silver: SilverWriter) -> None:
    silver.upsert("customers", [customer(c) for c in ("c1", "c2", "c3", "c4", "c5")])
    silver.upsert(
        "customers_history",
        [customer_version(c, ts(2024, 11, 1)) for c in ("c1", "c2", "c3", "c4", "c5")],
    )
    silver.upsert(
        "products_history",
        [product_version("p1", "10.00", EPOCH), product_version("p2", "7.00", EPOCH)],
    )
    silver.upsert(
        "fx_rates", [rate(date(2024, 12, 30), "EUR", "1.10"), rate(date(2025, 1, 2), "EUR", "1.05")]
    )
    silver.upsert(
        "orders",
        [
            order("o1", "c1", ts(2024, 12, 30, 10), "delivered", "EUR"),
            order("o2", "c2", ts(2024, 12, 30, 12), "paid", "USD"),
            order("o3", "c3", ts(2024, 12, 31, 9), "placed", "GBP"),
            order("o4", "c1", ts(2025, 1, 1, 8), "shipped", "EUR"),
            order("o5", "c4", ts(2025, 1, 1, 11), "cancelled", "USD"),
            order("o6", "c2", ts(2025, 1, 2, 9), "returned", "EUR"),
            order("o7", "c5", ts(2025, 1, 2, 10), "delivered", "USD"),  # no items: amount 0
            order("o9", "c4", ts(2025, 1, 2, 11), "delivered", "EUR"),
            order("o12", "c2", ts(2025, 1, 15, 9), "cancelled", "USD"),
            order("o8", "c3", ts(2025, 2, 3, 9), "delivered", "USD"),
        ],
    )
    silver.upsert(
        "order_items",
        [
            item("o1", 1, "p1", 2, "10.00", "0", date(2024, 12, 30)),  # 20.000000 EUR
            item("o1", 2, "p2", 1, "5.55", "0.1000", date(2024, 12, 30)),  # 5.55 * 0.9 = 4.995000
            item("o2", 1, "p1", 1, "19.99", "0", date(2024, 12, 30)),  # 19.99 USD
            item("o3", 1, "p2", 3, "7.00", "0", date(2024, 12, 31)),  # 21.00 GBP
            item("o4", 1, "p1", 1, "100.00", "0.2500", date(2025, 1, 1)),  # 75.00 EUR
            item("o5", 1, "p1", 1, "50.00", "0", date(2025, 1, 1)),  # cancelled
            item("o6", 1, "p2", 1, "0.10", "0", date(2025, 1, 2)),  # 0.10 EUR
            item("o9", 1, "p2", 1, "0.10", "0", date(2025, 1, 2)),  # 0.10 EUR
            item("o12", 1, "p2", 1, "30.00", "0", date(2025, 1, 15)),  # cancelled
            item("o8", 1, "p1", 1, "10.00", "0", date(2025, 2, 3)),  # 10.00 USD
        ],
    )
    silver.upsert(
        "payments",
        [
            payment("e1", "o1", ts(2024, 12, 30, 10, 5), "authorized", "24.99", "EUR"),
            payment("e2", "o1", ts(2024, 12, 30, 10, 6), "captured", "24.99", "EUR"),
            payment("e3", "o2", ts(2024, 12, 30, 12, 1), "failed", "19.99", "USD"),
            payment("e4", "o2", ts(2024, 12, 30, 12, 5), "captured", "19.99", "USD"),
            payment("e5", "o3", ts(2024, 12, 31, 9, 5), "captured", "21.00", "GBP"),
            payment("e6", "o6", ts(2025, 1, 3, 10), "refunded", "0.10", "EUR"),
            payment("e7", "o9", ts(2025, 1, 3, 11), "captured", "0.10", "EUR"),
            payment("e8", "o8", ts(2025, 2, 3, 9, 5), "authorized", "10.00", "USD"),
        ],
    )
    silver.upsert(
        "clickstream",
        [
            # s1: c1 views p1, adds it, checks out and buys o1
            click("k1", "s1", ts(2024, 12, 30, 9, 58), "page_view", "c1"),
            click("k2", "s1", ts(2024, 12, 30, 9, 59), "product_view", "c1", "p1"),
            click("k3", "s1", ts(2024, 12, 30, 10), "add_to_cart", "c1", "p1"),
            click("k4", "s1", ts(2024, 12, 30, 10, 0, 30), "checkout", "c1"),
            click("k5", "s1", ts(2024, 12, 30, 10, 1), "purchase", "c1", order="o1"),
            # s2: anonymous, across midnight, leaves p2 in its cart
            click("k6", "s2", ts(2024, 12, 31, 23, 59), "page_view"),
            click("k7", "s2", ts(2025, 1, 1, 0, 0, 30), "product_view", product="p2"),
            click("k8", "s2", ts(2025, 1, 1, 0, 1), "add_to_cart", product="p2"),
            # s3: c4 views p2 and buys o9 (0.10 EUR)
            click("k9", "s3", ts(2025, 1, 2, 10, 59), "product_view", "c4", "p2"),
            click("k10", "s3", ts(2025, 1, 2, 11), "purchase", "c4", order="o9"),
            # s4: c5 looks in; s5: c1 looks in (its move to Lyon from JAN1 is recorded later)
            click("k11", "s4", ts(2025, 1, 2, 12), "page_view", "c5"),
            click("k12", "s5", ts(2025, 1, 2, 13), "page_view", "c1"),
            # s6: c6 looks in half an hour before the shop's database records c6 (corrections)
            click("k13", "s6", ts(2025, 1, 2, 14), "page_view", "c6"),
        ],
    )


def write_gbp_rate(silver: SilverWriter) -> None:
    silver.upsert("fx_rates", [rate(date(2024, 12, 1), "GBP", "1.25")])


def write_late_orders(silver: SilverWriter) -> None:
    silver.upsert(
        "orders",
        [
            order("o2", "c2", ts(2024, 12, 30, 12), "returned", "USD"),
            order("o10", "c4", ts(2024, 12, 31, 15), "delivered", "USD"),
        ],
    )
    silver.upsert("order_items", [item("o10", 1, "p1", 1, "5.00", "0", date(2024, 12, 31))])
    # s3's first event arrives late: the session started the evening before
    silver.upsert("clickstream", [click("k0", "s3", ts(2025, 1, 1, 23, 50), "page_view", "c4")])


def write_corrections(silver: SilverWriter) -> None:
    silver.upsert("fx_rates", [rate(date(2024, 12, 30), "EUR", "1.12")])
    silver.upsert(
        "orders",
        [
            {**order("o7", "c5", ts(2025, 1, 2, 10), "delivered", "USD"), "_is_deleted": True},
            order("o9", "c4", ts(2025, 1, 2, 11), "cancelled", "EUR"),
        ],
    )
    silver.upsert(
        "payments",
        [
            payment("e9", "o8", ts(2025, 2, 3, 13), "refunded", "10.00", "USD"),
            payment("e10", "o8", ts(2025, 2, 3, 14), "failed", "10.00", "USD"),
        ],
    )
    silver.upsert(
        "customers_history",
        [
            customer_version("c1", ts(2024, 11, 1), valid_to=JAN1),
            customer_version("c1", JAN1, city="Lyon"),
        ],
    )
    silver.upsert("customers", [customer("c1", city="Lyon"), customer("c6")])
    silver.upsert("customers_history", [customer_version("c6", C6_FROM)])
    silver.delete("customers", [{"customer_id": "c5"}])
    silver.upsert(
        "products_history",
        [
            product_version("p1", "10.00", EPOCH, valid_to=JAN1),
            product_version("p1", "12.00", JAN1),
        ],
    )


C6_FROM = ts(2025, 1, 2, 14, 30)

STEPS = (
    ("initial", write_initial),
    ("gbp_rate", write_gbp_rate),
    ("late_orders", write_late_orders),
    ("corrections", write_corrections),
    ("no_changes", lambda silver: None),
)


@dataclass
class Lake:
    spark: SparkSession
    lh: Lakehouse
    results: dict[str, GoldResult]
    versions: dict[str, dict[str, int]]  # step -> gold table -> version after the step
    full: Lakehouse  # the same silver, gold built once in full mode

    @property
    def root(self) -> str:
        return self.lh.root

    def path(self, table: str) -> str:
        """Location of `gold.<table>` in the incrementally built lakehouse."""
        return self.lh.path(f"gold.{table}")

    def gold(self, table: str, step: str = "corrections") -> DataFrame:
        """A gold table as it was after `step`."""
        return (
            self.spark.read.format("delta")
            .option("versionAsOf", self.versions[step][table])
            .load(self.path(table))
        )


def _gold_versions(spark: SparkSession, lh: Lakehouse) -> dict[str, int]:
    return {
        t: DeltaTable.forPath(spark, lh.path(f"gold.{t}")).history(1).head()["version"]
        for t in gold_tables(lh)
    }


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    lh = local_lakehouse(tmp_path_factory.mktemp("gold_lake"))
    root = lh.root
    silver = SilverWriter(spark, root)
    results: dict[str, GoldResult] = {}
    versions: dict[str, dict[str, int]] = {}
    current: dict[str, int] = {}
    for n, (step, write) in enumerate(STEPS, start=1):
        write(silver)
        results[step] = build_gold(spark, lh, f"run-{n}-{step}")
        current.update(
            {t: w.version for t, w in results[step].tables.items() if w.version is not None}
        )
        versions[step] = dict(current)
    # The same silver, rebuilt from scratch in full mode in another lakehouse.
    full = local_lakehouse(tmp_path_factory.mktemp("gold_full"))
    shutil.copytree(f"{root}/silver", f"{full.root}/silver")
    build_gold(spark, full, "full-rebuild", mode="full")
    yield Lake(spark, lh, results, versions, full)


# ---------------------------------------------------------------------------------------------
# Expected tables

KPI_SCHEMA = StructType(
    [
        StructField("order_date", DateType()),
        StructField("orders", LongType()),
        StructField("gross_revenue_usd", DecimalType(18, 2)),
        StructField("net_revenue_usd", DecimalType(18, 2)),
        StructField("avg_order_value_usd", DecimalType(18, 2)),
        StructField("customers", LongType()),
        StructField("new_customers", LongType()),
        StructField("returning_customers", LongType()),
        StructField("orders_unpriced", LongType()),
    ]
)
PAYMENTS_SCHEMA = StructType(
    [
        StructField("event_date", DateType()),
        StructField("captured_usd", DecimalType(18, 2)),
        StructField("refunded_usd", DecimalType(18, 2)),
        StructField("payments_failed", LongType()),
        StructField("capture_rate", DecimalType(5, 4)),
        StructField("payments_unpriced", LongType()),
    ]
)
RETENTION_SCHEMA = StructType(
    [
        StructField("cohort_month", DateType()),
        StructField("months_since", IntegerType()),
        StructField("cohort_customers", LongType()),
        StructField("active_customers", LongType()),
        StructField("retention_rate", DecimalType(5, 4)),
    ]
)


def expect(spark: SparkSession, schema: StructType, rows: list[tuple[Any, ...]]) -> DataFrame:
    """Expected rows; decimals may be written as strings ("47.48")."""
    decimal = [isinstance(f.dataType, DecimalType) for f in schema.fields]
    return spark.createDataFrame(
        [
            tuple(D(v) if d and isinstance(v, str) else v for v, d in zip(r, decimal, strict=True))
            for r in rows
        ],
        schema,
    )


def assert_table(
    lake: Lake, table: str, step: str, schema: StructType, rows: list[tuple[Any, ...]]
) -> None:
    # Delta stores every column as nullable, hence ignore_nullable.
    assert_df_equality(
        lake.gold(table, step),
        expect(lake.spark, schema, rows),
        ignore_row_order=True,
        ignore_nullable=True,
    )


DEC = date(2024, 12, 1)
JAN = date(2025, 1, 1)


def test_daily_kpis_follow_the_contract_on_the_initial_load(lake: Lake) -> None:
    # o1 = (2*10.00 + 5.55*0.9) EUR = 24.995 EUR * 1.10 = 27.4945 USD; o2 = 19.99 USD.
    # o3 is GBP with no GBP rate: counted but unpriced. o4 = 100*0.75 = 75 EUR; 2025-01-01 has no
    # EUR rate: falls back to 2024-12-30's 1.10 -> 82.50. o6, o9 = 0.10 EUR * 1.05 = 0.105 each.
    # c4's only other order (o5) is cancelled, so c4 is new on 2025-01-02.
    assert_table(
        lake,
        "daily_kpis",
        "initial",
        KPI_SCHEMA,
        [
            # gross 27.4945+19.99 = 47.4845 -> 47.48; AOV 47.4845/2 = 23.74225 -> 23.74
            (date(2024, 12, 30), 2, "47.48", "47.48", "23.74", 2, 2, 0, 0),
            # only the unpriced GBP order: revenue 0, AOV 0/1
            (date(2024, 12, 31), 1, "0.00", "0.00", "0.00", 1, 1, 0, 1),
            # o4 82.50 (fallback rate); o5 cancelled; c1 first ordered 2024-12-30
            (date(2025, 1, 1), 1, "82.50", "82.50", "82.50", 1, 0, 1, 0),
            # gross 0.105 (o6) + 0 (o7, no items) + 0.105 (o9) = 0.21 (rounding each order would
            # give 0.22); net leaves out returned o6: 0.105 -> 0.11 half-up; AOV 0.21/3 = 0.07;
            # new c5, c4; returning c2
            (date(2025, 1, 2), 3, "0.21", "0.11", "0.07", 3, 2, 1, 0),
            # only a cancelled order: 0 orders, null AOV
            (date(2025, 1, 15), 0, "0.00", "0.00", None, 0, 0, 0, 0),
            # o8 10.00 USD; c3 first ordered 2024-12-31
            (date(2025, 2, 3), 1, "10.00", "10.00", "10.00", 1, 0, 1, 0),
        ],
    )


def test_an_unpriced_order_is_priced_when_its_rate_arrives(lake: Lake) -> None:
    # GBP 2024-12-01 = 1.25 is the newest GBP rate on or before 2024-12-31: 21.00*1.25 = 26.25.
    assert_table(
        lake,
        "daily_kpis",
        "gbp_rate",
        KPI_SCHEMA,
        [
            (date(2024, 12, 30), 2, "47.48", "47.48", "23.74", 2, 2, 0, 0),
            (date(2024, 12, 31), 1, "26.25", "26.25", "26.25", 1, 1, 0, 0),
            (date(2025, 1, 1), 1, "82.50", "82.50", "82.50", 1, 0, 1, 0),
            (date(2025, 1, 2), 3, "0.21", "0.11", "0.07", 3, 2, 1, 0),
            (date(2025, 1, 15), 0, "0.00", "0.00", None, 0, 0, 0, 0),
            (date(2025, 2, 3), 1, "10.00", "10.00", "10.00", 1, 0, 1, 0),
        ],
    )


def test_the_rate_arrival_rewrites_only_the_days_it_prices(lake: Lake) -> None:
    result = lake.results["gbp_rate"]
    assert result.mode == "incremental"
    assert set(result.written) == {"fact_orders", "fact_payments", "daily_kpis", "daily_payments"}
    # one day of KPIs (2024-12-31), one GBP order line, one GBP payment, one payment day
    assert result.rows_written == {
        **dict.fromkeys(gold_tables(lake.lh), 0),
        "fact_orders": 1,
        "fact_payments": 1,
        "daily_kpis": 1,
        "daily_payments": 1,
    }


def test_a_late_earlier_order_moves_new_and_returning_and_a_late_return_leaves_net(
    lake: Lake,
) -> None:
    assert_table(
        lake,
        "daily_kpis",
        "late_orders",
        KPI_SCHEMA,
        [
            # o2 now returned: net = 27.4945 -> 27.49, gross unchanged
            (date(2024, 12, 30), 2, "47.48", "27.49", "23.74", 2, 2, 0, 0),
            # o3 26.25 + late o10 5.00 = 31.25; AOV 31.25/2 = 15.625 -> 15.63; c3 and c4 new here
            (date(2024, 12, 31), 2, "31.25", "31.25", "15.63", 2, 2, 0, 0),
            (date(2025, 1, 1), 1, "82.50", "82.50", "82.50", 1, 0, 1, 0),
            # c4's first order is now 2024-12-31: c4 turns returning on a day with no change of its
            # own
            (date(2025, 1, 2), 3, "0.21", "0.11", "0.07", 3, 1, 2, 0),
            (date(2025, 1, 15), 0, "0.00", "0.00", None, 0, 0, 0, 0),
            (date(2025, 2, 3), 1, "10.00", "10.00", "10.00", 1, 0, 1, 0),
        ],
    )


def test_fx_correction_deletion_and_cancellation(lake: Lake) -> None:
    # EUR 2024-12-30 corrected to 1.12 reprices 2024-12-30 and 2025-01-01 (up to the next EUR
    # rate, 2025-01-02), not 2025-01-02.
    assert_table(
        lake,
        "daily_kpis",
        "corrections",
        KPI_SCHEMA,
        [
            # o1 24.995*1.12 = 27.9944; gross 27.9944+19.99 = 47.9844 -> 47.98; net 27.9944 ->
            # 27.99;
            # AOV 47.9844/2 = 23.9922 -> 23.99
            (date(2024, 12, 30), 2, "47.98", "27.99", "23.99", 2, 2, 0, 0),
            (date(2024, 12, 31), 2, "31.25", "31.25", "15.63", 2, 2, 0, 0),
            # o4 75*1.12 = 84.00
            (date(2025, 1, 1), 1, "84.00", "84.00", "84.00", 1, 0, 1, 0),
            # o7 deleted, o9 cancelled: only returned o6 counts: gross 0.105 -> 0.11, net 0,
            # AOV 0.105/1 -> 0.11
            (date(2025, 1, 2), 1, "0.11", "0.00", "0.11", 1, 0, 1, 0),
            (date(2025, 1, 15), 0, "0.00", "0.00", None, 0, 0, 0, 0),
            (date(2025, 2, 3), 1, "10.00", "10.00", "10.00", 1, 0, 1, 0),
        ],
    )


def test_daily_payments_capture_rate_refunds_and_fx(lake: Lake) -> None:
    assert_table(
        lake,
        "daily_payments",
        "initial",
        PAYMENTS_SCHEMA,
        [
            # captured e2 24.99 EUR*1.10 = 27.489 + e4 19.99 = 47.479 -> 47.48; 2 captured, 1
            # failed:
            # 2/3 = 0.66666 -> 0.6667
            (date(2024, 12, 30), "47.48", "0.00", 1, "0.6667", 0),
            # the GBP capture has no rate yet: left out of the sum, counted unpriced; rate 1/1
            (date(2024, 12, 31), "0.00", "0.00", 0, "1.0000", 1),
            # 2025-01-03 has no EUR rate: 2025-01-02's 1.05; 0.10*1.05 = 0.105 -> 0.11 each way
            (date(2025, 1, 3), "0.11", "0.11", 0, "1.0000", 0),
            # only an authorization: no captured or failed events, capture rate null
            (date(2025, 2, 3), "0.00", "0.00", 0, None, 0),
        ],
    )
    assert_table(
        lake,
        "daily_payments",
        "corrections",
        PAYMENTS_SCHEMA,
        [
            # 24.99*1.12 = 27.9888 + 19.99 = 47.9788 -> 47.98
            (date(2024, 12, 30), "47.98", "0.00", 1, "0.6667", 0),
            # GBP 21.00*1.25 = 26.25
            (date(2024, 12, 31), "26.25", "0.00", 0, "1.0000", 0),
            (date(2025, 1, 3), "0.11", "0.11", 0, "1.0000", 0),
            # a 10.00 USD refund and a failed payment: 0 captured / (0 + 1 failed) = 0
            (date(2025, 2, 3), "0.00", "10.00", 1, "0.0000", 0),
        ],
    )


def test_retention_cohorts_cross_the_year_boundary(lake: Lake) -> None:
    # Dec cohort c1, c2, c3; Jan cohort c4 (o5 cancelled, first counted o9) and c5.
    # Newest month with data: Feb 2025.
    assert_table(
        lake,
        "customer_retention",
        "initial",
        RETENTION_SCHEMA,
        [
            (DEC, 0, 3, 3, "1.0000"),
            (DEC, 1, 3, 2, "0.6667"),  # Jan: c1 (o4), c2 (o6): 2/3
            (DEC, 2, 3, 1, "0.3333"),  # Feb: c3 (o8): 1/3
            (JAN, 0, 2, 2, "1.0000"),
            (JAN, 1, 2, 0, "0.0000"),  # Feb: nobody, the row is still there
        ],
    )


def test_a_late_earlier_order_moves_the_customer_to_an_earlier_cohort(lake: Lake) -> None:
    assert_table(
        lake,
        "customer_retention",
        "late_orders",
        RETENTION_SCHEMA,
        [
            (DEC, 0, 4, 4, "1.0000"),  # c4 joins Dec with o10 (2024-12-31)
            (DEC, 1, 4, 3, "0.7500"),  # Jan: c1, c2, c4 (o9)
            (DEC, 2, 4, 1, "0.2500"),  # Feb: c3
            (JAN, 0, 1, 1, "1.0000"),  # c5 alone
            (JAN, 1, 1, 0, "0.0000"),
        ],
    )
    # o9 cancelled (c4 not active in Jan any more) and o7 deleted (c5 has no order: the Jan
    # cohort is gone).
    assert_table(
        lake,
        "customer_retention",
        "corrections",
        RETENTION_SCHEMA,
        [
            (DEC, 0, 4, 4, "1.0000"),
            (DEC, 1, 4, 2, "0.5000"),  # c1 (o4), c2 (o6, returned still counts)
            (DEC, 2, 4, 1, "0.2500"),
        ],
    )


def test_fact_orders_has_every_line_of_counted_and_cancelled_orders(lake: Lake) -> None:
    facts = lake.gold("fact_orders").select(
        "order_id",
        "line_no",
        "order_date",
        "status",
        "is_counted",
        "currency",
        "line_amount",
        "fx_rate_date",
        "line_amount_usd",
    )
    schema = StructType(
        [
            StructField("order_id", StringType()),
            StructField("line_no", IntegerType()),
            StructField("order_date", DateType()),
            StructField("status", StringType()),
            StructField("is_counted", BooleanType()),
            StructField("currency", StringType()),
            StructField("line_amount", DecimalType(19, 6)),
            StructField("fx_rate_date", DateType()),
            StructField("line_amount_usd", DecimalType(38, 14)),
        ]
    )
    d30, d31 = date(2024, 12, 30), date(2024, 12, 31)
    j1, j2 = date(2025, 1, 1), date(2025, 1, 2)
    assert_df_equality(
        facts,
        expect(
            lake.spark,
            schema,
            [
                ("o1", 1, d30, "delivered", True, "EUR", "20", d30, "22.4"),  # 20*1.12
                ("o1", 2, d30, "delivered", True, "EUR", "4.995", d30, "5.5944"),  # 4.995*1.12
                ("o2", 1, d30, "returned", True, "USD", "19.99", None, "19.99"),
                ("o3", 1, d31, "placed", True, "GBP", "21", date(2024, 12, 1), "26.25"),
                ("o10", 1, d31, "delivered", True, "USD", "5", None, "5"),
                ("o4", 1, j1, "shipped", True, "EUR", "75", d30, "84"),  # fallback to 12-30
                ("o5", 1, j1, "cancelled", False, "USD", "50", None, "50"),
                ("o6", 1, j2, "returned", True, "EUR", "0.1", j2, "0.105"),
                ("o9", 1, j2, "cancelled", False, "EUR", "0.1", j2, "0.105"),
                ("o12", 1, date(2025, 1, 15), "cancelled", False, "USD", "30", None, "30"),
                ("o8", 1, date(2025, 2, 3), "delivered", True, "USD", "10", None, "10"),
            ],
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_facts_carry_the_dimension_version_valid_at_the_order_time(lake: Lake) -> None:
    facts = lake.gold("fact_orders")
    customers = lake.gold("dim_customers").select(
        "customer_key", "customer_id", F.col("valid_from").alias("customer_from"), "city"
    )
    products = lake.gold("dim_products").select(
        "product_key", F.col("valid_from").alias("product_from"), "list_price"
    )
    got = {
        (r.order_id, r.line_no): (r.city, r.customer_from, r.product_from, r.list_price)
        for r in facts.join(customers, ["customer_key", "customer_id"], "left")
        .join(products, "product_key", "left")
        .collect()
    }
    nov1 = ts(2024, 11, 1)
    assert got[("o1", 1)] == ("Paris", nov1, EPOCH, D("10.00"))  # before c1 moved and p1 changed
    assert got[("o4", 1)] == ("Lyon", JAN1, JAN1, D("12.00"))  # 2025-01-01 08:00: new versions
    assert got[("o8", 1)] == ("Paris", nov1, JAN1, D("12.00"))  # c3 never changed
    # c5 was deleted in silver: no dimension row, and its deleted order o7 had no lines anyway
    assert lake.gold("dim_customers").where("customer_id = 'c5'").count() == 0


def test_dim_customers_holds_pseudonymised_scd2_versions(lake: Lake) -> None:
    got = lake.gold("dim_customers").drop("customer_key").where("customer_id in ('c1', 'c2')")
    schema = StructType(
        [
            StructField("customer_id", StringType()),
            StructField("email_hash", StringType()),
            StructField("phone_hash", StringType()),
            StructField("country", StringType()),
            StructField("city", StringType()),
            StructField("signup_date", DateType()),
            StructField("marketing_opt_in", BooleanType()),
            StructField("valid_from", TimestampType()),
            StructField("valid_to", TimestampType()),
            StructField("is_current", BooleanType()),
        ]
    )
    nov1, signup = ts(2024, 11, 1), date(2024, 11, 1)
    assert_df_equality(
        got,
        expect(
            lake.spark,
            schema,
            [
                ("c1", "h-c1", None, "FR", "Paris", signup, True, nov1, JAN1, False),
                ("c1", "h-c1", None, "FR", "Lyon", signup, True, JAN1, None, True),
                ("c2", "h-c2", None, "FR", "Paris", signup, True, nov1, None, True),
            ],
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert not {"email", "phone", "first_name", "last_name"} & set(got.columns)


def test_fact_payments_convert_each_event(lake: Lake) -> None:
    got = {r.event_id: (r.amount_usd, r.fx_rate_date) for r in lake.gold("fact_payments").collect()}
    assert len(got) == 10
    assert got["e2"] == (D("27.9888000000"), date(2024, 12, 30))  # 24.99 * 1.12
    assert got["e5"] == (D("26.2500000000"), date(2024, 12, 1))  # 21.00 * 1.25, fallback
    assert got["e6"] == (D("0.1050000000"), date(2025, 1, 2))  # 01-03 falls back to 01-02


def test_dim_date_spans_order_and_payment_dates(lake: Lake) -> None:
    days = lake.gold("dim_date").orderBy("date").collect()
    # 2024-12-30 .. 2025-02-03: 2 + 31 + 3 days, gaps included
    assert len(days) == 36
    assert (days[0].date, days[-1].date) == (date(2024, 12, 30), date(2025, 2, 3))


def test_incremental_runs_equal_a_full_rebuild(lake: Lake) -> None:
    assert [r.mode for r in lake.results.values()] == [
        "full",
        "incremental",
        "incremental",
        "incremental",
        "incremental",
    ]
    for table in gold_tables(lake.lh):
        full = lake.spark.read.format("delta").load(lake.full.path(f"gold.{table}"))
        incremental = lake.spark.read.format("delta").load(lake.path(table))
        assert_df_equality(incremental, full, ignore_row_order=True)


def _key(lake: Lake, cid: str, valid_from: dt.datetime) -> int:
    """The dim_customers key of a customer version, as the star schema computes it."""
    row = lake.spark.range(1).select(F.xxhash64(F.lit(cid), F.lit(valid_from))).first()
    assert row is not None
    return int(row[0])


def _session_rows(lake: Lake, step: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in lake.gold("sessions", step).orderBy("session_id").collect()]


def test_sessions_of_the_first_load_with_attributed_revenue(lake: Lake) -> None:
    c1, c4, c5 = (_key(lake, c, ts(2024, 11, 1)) for c in ("c1", "c4", "c5"))
    assert _session_rows(lake, "initial") == [
        # o1: 24.995 EUR at 1.10 = 27.4945 -> 27.49
        ("s1", date(2024, 12, 30), ts(2024, 12, 30, 9, 58), ts(2024, 12, 30, 10, 1), 180,
         5, 1, 1, 1, 1, 1, 1, True, c1, True, 1, D("27.49")),
        ("s2", date(2024, 12, 31), ts(2024, 12, 31, 23, 59), ts(2025, 1, 1, 0, 1), 120,
         3, 1, 1, 1, 0, 0, 1, False, None, False, 0, D("0.00")),
        # o9: 0.10 EUR at 1.05 = 0.105 -> 0.11 (half-up)
        ("s3", date(2025, 1, 2), ts(2025, 1, 2, 10, 59), ts(2025, 1, 2, 11), 60,
         2, 0, 1, 0, 0, 1, 1, True, c4, True, 1, D("0.11")),
        ("s4", date(2025, 1, 2), ts(2025, 1, 2, 12), ts(2025, 1, 2, 12), 0,
         1, 1, 0, 0, 0, 0, 0, True, c5, False, 0, D("0.00")),
        ("s5", date(2025, 1, 2), ts(2025, 1, 2, 13), ts(2025, 1, 2, 13), 0,
         1, 1, 0, 0, 0, 0, 0, True, c1, False, 0, D("0.00")),
        # c6 is not in dim_customers yet: known, without a key
        ("s6", date(2025, 1, 2), ts(2025, 1, 2, 14), ts(2025, 1, 2, 14), 0,
         1, 1, 0, 0, 0, 0, 0, True, None, False, 0, D("0.00")),
    ]  # fmt: skip


def test_a_late_event_a_cancellation_a_new_version_and_a_deletion_reach_their_sessions(
    lake: Lake,
) -> None:
    """After the late event s3 starts the evening before (its row moves from 2025-01-02 to
    2025-01-01); after the corrections o9 is cancelled (s3 attributes nothing), EUR of
    2024-12-30 is 1.12 (s1: 24.995 * 1.12 = 27.9944), c1's version of JAN1 is the one valid
    for s5, and the deleted c5 has no key (s4 stays known). c6's first version, recorded after
    c6's session began, is the one s6 takes."""
    # s2, which crosses into 2025-01-01 (a date the late event's run recomputes), keeps its one
    # row of 2024-12-31
    after_late = [r[:2] for r in _session_rows(lake, "late_orders")]
    assert after_late == [
        ("s1", date(2024, 12, 30)),
        ("s2", date(2024, 12, 31)),
        ("s3", date(2025, 1, 1)),
        ("s4", date(2025, 1, 2)),
        ("s5", date(2025, 1, 2)),
        ("s6", date(2025, 1, 2)),
    ]
    c1_old, c1_new, c4 = (
        _key(lake, "c1", ts(2024, 11, 1)),
        _key(lake, "c1", JAN1),
        _key(lake, "c4", ts(2024, 11, 1)),
    )
    assert _session_rows(lake, "corrections") == [
        ("s1", date(2024, 12, 30), ts(2024, 12, 30, 9, 58), ts(2024, 12, 30, 10, 1), 180,
         5, 1, 1, 1, 1, 1, 1, True, c1_old, True, 1, D("27.99")),
        ("s2", date(2024, 12, 31), ts(2024, 12, 31, 23, 59), ts(2025, 1, 1, 0, 1), 120,
         3, 1, 1, 1, 0, 0, 1, False, None, False, 0, D("0.00")),
        # 2025-01-01 23:50 to 2025-01-02 11:00: 11 h 10 min
        ("s3", date(2025, 1, 1), ts(2025, 1, 1, 23, 50), ts(2025, 1, 2, 11), 40200,
         3, 1, 1, 0, 0, 1, 1, True, c4, True, 0, D("0.00")),
        ("s4", date(2025, 1, 2), ts(2025, 1, 2, 12), ts(2025, 1, 2, 12), 0,
         1, 1, 0, 0, 0, 0, 0, True, None, False, 0, D("0.00")),
        ("s5", date(2025, 1, 2), ts(2025, 1, 2, 13), ts(2025, 1, 2, 13), 0,
         1, 1, 0, 0, 0, 0, 0, True, c1_new, False, 0, D("0.00")),
        # c6's only version starts after the session: the session takes it (the earliest)
        ("s6", date(2025, 1, 2), ts(2025, 1, 2, 14), ts(2025, 1, 2, 14), 0,
         1, 1, 0, 0, 0, 0, 0, True, _key(lake, "c6", C6_FROM), False, 0, D("0.00")),
    ]  # fmt: skip


def test_the_daily_funnel_after_the_corrections(lake: Lake) -> None:
    rows = [tuple(r) for r in lake.gold("daily_funnel").orderBy("session_date").collect()]
    one, zero = D("1.0000"), D("0.0000")
    assert rows == [
        (date(2024, 12, 30), 1, 1, 1, 1, 1, 1, one, one, one, one, one, zero),
        # s2 leaves its cart: abandonment 1/1, no checkout so no purchase rate
        (date(2024, 12, 31), 1, 1, 1, 1, 0, 0, one, one, zero, None, zero, one),
        # s3 buys without a cart or checkout (the order was cancelled since; the event stays)
        (date(2025, 1, 1), 1, 1, 1, 0, 0, 1, one, zero, None, None, one, None),
        (date(2025, 1, 2), 3, 3, 0, 0, 0, 0, zero, None, None, None, zero, None),
    ]


def test_product_engagement_after_the_corrections(lake: Lake) -> None:
    rows = sorted(tuple(r) for r in lake.gold("product_engagement").collect())
    assert rows == [
        # o1 (p1, p2) and o2 (p1, returned: still counted)
        (date(2024, 12, 30), "p1", 1, 1, 2, D("2.0000")),
        (date(2024, 12, 30), "p2", 0, 0, 1, None),
        (date(2024, 12, 31), "p1", 0, 0, 1, None),  # the late o10
        (date(2024, 12, 31), "p2", 0, 0, 1, None),  # o3
        (date(2025, 1, 1), "p1", 0, 0, 1, None),  # o4 (o5 is cancelled)
        (date(2025, 1, 1), "p2", 1, 1, 0, D("0.0000")),  # s2 after midnight
        (date(2025, 1, 2), "p2", 1, 0, 1, D("1.0000")),  # o6 (o9 cancelled)
        (date(2025, 2, 3), "p1", 0, 0, 1, None),  # o8
    ]


def test_a_run_without_silver_changes_writes_nothing(lake: Lake) -> None:
    result = lake.results["no_changes"]
    assert result.written == ()
    assert _gold_versions(lake.spark, lake.lh) == lake.versions["corrections"]
    state = DeltaTable.forPath(lake.spark, lake.lh.path(CONSUMED_TABLE))
    assert state.history(1).head()["version"] == 3  # four runs wrote state, the fifth did not


def test_consumed_versions_are_recorded_per_run(lake: Lake) -> None:
    state = lake.spark.read.format("delta").load(lake.lh.path(CONSUMED_TABLE))
    newest = {
        r["table"]: r["version"] for r in state.where("run_id = 'run-4-corrections'").collect()
    }
    assert newest == {
        f"silver.{t}": v for t, v in lake.results["corrections"].consumed_versions.items()
    }
    assert (
        newest["silver.orders"]
        == DeltaTable.forPath(lake.spark, f"{lake.root}/silver/orders").history(1).head()["version"]
    )


def _python(value: Any) -> Any:
    # delta-rs gives timezone-aware UTC timestamps; Spark naive ones in the session zone (UTC).
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def test_gold_tables_are_readable_with_delta_rs(lake: Lake) -> None:
    from deltalake import DeltaTable as RsDeltaTable

    for table in gold_tables(lake.lh):
        path = lake.path(table)
        arrow = RsDeltaTable(path).to_pyarrow_table()
        rs_rows = sorted(
            (tuple(_python(v) for v in row.values()) for row in arrow.to_pylist()), key=repr
        )
        spark_df = lake.spark.read.format("delta").load(path)
        assert arrow.column_names == spark_df.columns
        spark_rows = sorted((tuple(r) for r in spark_df.collect()), key=repr)
        assert rs_rows == spark_rows, table


class _Cells(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._date: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-date"):
            self._date = a["data-date"]
            self.rows[self._date] = {}
        if tag == "td" and self._date and a.get("data-table"):
            self.rows[self._date][f"{a['data-table']}.{a['data-col']}"] = a["data-value"] or ""


def _as_text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def test_dashboard_embeds_the_gold_figures(lake: Lake) -> None:
    out = write_dashboard(lake.spark, lake.lh, "run-7")
    assert out == str(
        Path(lake.lh.config.storage.reports_root) / "runs" / "run-7" / "dashboard.html"
    )
    page = Path(out).read_text(encoding="utf-8")
    # Self-contained: nothing loaded from elsewhere (the browser tests also watch for requests).
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page)
    assert page.count("data-chart=") == 9  # eight charts and the cohort heat map
    data = json.loads(page.split('id="kpi-data">', 1)[1].split("</script>", 1)[0])
    cells = _Cells()
    cells.feed(page)
    for table, key in (
        ("daily_kpis", "order_date"),
        ("daily_payments", "event_date"),
        ("customer_retention", "cohort_month"),
        ("daily_funnel", "session_date"),
    ):
        rows = [
            {k: _as_text(v) for k, v in r.asDict().items()}
            for r in lake.spark.read.format("delta")
            .load(lake.path(table))
            .orderBy(key, *(["months_since"] if table == "customer_retention" else []))
            .collect()
        ]
        assert data[table] == rows, table
        if table in ("customer_retention", "daily_funnel"):
            continue
        for row in rows:
            shown = cells.rows[row[key]]
            for col, value in row.items():
                if col != key:
                    assert shown[f"{table}.{col}"] == ("" if value is None else str(value))
    # The product table covers the 28 days up to the newest engagement date (2025-02-03): o8.
    assert data["top_products"] == [
        {
            "product_id": "p1",
            "views": 0,
            "add_to_carts": 0,
            "purchases": 1,
            "view_to_purchase_rate": None,
        }
    ]


def test_payments_by_method_add_up_to_the_daily_payments(lake: Lake) -> None:
    """The dashboard's payments by method (last 28 days, from the published fact_payments)
    against gold.daily_payments: the same failed events per day, and captured and refunded
    amounts within a cent per method (each rounded on its own)."""
    data = read_kpis(lake.spark, lake.lh)
    by_method = data["payments_by_method"]
    assert by_method
    last = data["daily_payments"][-1]["event_date"]
    assert {r["event_date"] for r in by_method} == {
        p["event_date"]
        for p in data["daily_payments"]
        if p["event_date"] > last - dt.timedelta(days=28)
    }
    for p in data["daily_payments"]:
        rows = [r for r in by_method if r["event_date"] == p["event_date"]]
        if not rows:
            continue
        assert sum(r["payments_failed"] for r in rows) == p["payments_failed"]
        for col in ("captured_usd", "refunded_usd"):
            total = sum((r[col] for r in rows), Decimal("0.00"))
            assert abs(total - p[col]) <= Decimal("0.01") * len(rows), (p["event_date"], col)


def test_summary_text_gives_totals_and_the_last_day(lake: Lake) -> None:
    text = kpi_summary_text(lake.spark, lake.lh)
    # orders 2+2+1+1+0+1 = 7; gross 47.98+31.25+84.00+0.11+0.00+10.00 = 173.34
    assert "orders 7" in text and "gross $173.34" in text
    assert "last day 2025-02-03" in text


# ---------------------------------------------------------------------------------------------
# The published set: readers never see half of a run's publish (gold/published.py)


def _gold_locations(lh: Lakehouse) -> dict[str, str]:
    """Catalog name -> location of every gold table (the views `point_gold_views` makes; only
    gold: the other layers' names keep the first location registered in the test session)."""
    return {f"gold.{t}": lh.path(f"gold.{t}") for t in gold_tables(lh)}


def _sorted(df: DataFrame) -> list[Any]:
    return sorted(df.collect(), key=str)


def test_a_gold_name_registered_as_a_table_becomes_a_view_of_the_published_version(
    lake: Lake,
) -> None:
    spark, lh = lake.spark, lake.lh
    location = lh.path("gold.daily_kpis")
    locations = _gold_locations(lh)
    point_gold_views(spark, lh, locations)
    spark.sql("DROP VIEW gold.daily_kpis")
    spark.sql(f"CREATE TABLE gold.daily_kpis USING DELTA LOCATION '{location}'")
    published = published_versions(spark, lh)

    assert point_gold_views(spark, lh, locations) == ["gold.daily_kpis"]

    kinds = {t.name: t.tableType for t in spark.catalog.listTables("gold")}
    assert {kinds[t] for t in gold_tables(lh)} == {"VIEW"}
    assert pinned_to(spark, "gold.daily_kpis") == (location, published["daily_kpis"])
    assert DeltaTable.isDeltaTable(spark, location)  # dropping the table name kept its data
    assert _sorted(spark.table("gold.daily_kpis")) == _sorted(read_gold(spark, lh, "daily_kpis"))
    assert point_gold_views(spark, lh, locations) == []  # pinned already: left alone


class _Stopped(Exception):
    """Stands for a run killed in the middle of publishing gold."""


def test_a_run_stopped_while_publishing_leaves_readers_on_the_previous_set(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lh = local_lakehouse(tmp_path)
    silver = SilverWriter(spark, lh.root)
    write_initial(silver)
    build_gold(spark, lh, "run-1")
    first = published_versions(spark, lh)
    assert first == latest_versions(spark, lh) and set(first) == set(gold_tables(lh))
    kpis_before = read_gold(spark, lh, "daily_kpis").orderBy("order_date").collect()
    point_gold_views(spark, lh, _gold_locations(lh))  # the catalog, as the run leaves it
    write_late_orders(silver)

    writes: list[str] = []
    real_overwrite, real_replace = build._overwrite, build._replace_scope

    def stop_at_the_second_write(real: Any) -> Any:
        def write(spark: SparkSession, path: str, name: str, *args: Any) -> Any:
            if writes:
                raise _Stopped(name)
            writes.append(name)
            return real(spark, path, name, *args)

        return write

    monkeypatch.setattr(build, "_overwrite", stop_at_the_second_write(real_overwrite))
    monkeypatch.setattr(build, "_replace_scope", stop_at_the_second_write(real_replace))
    with pytest.raises(_Stopped):
        build_gold(spark, lh, "run-2")
    monkeypatch.undo()

    [half] = writes
    assert latest_versions(spark, lh)[half] == first[half] + 1
    assert published_versions(spark, lh) == first
    assert read_gold(spark, lh, "daily_kpis").orderBy("order_date").collect() == kpis_before
    assert read_kpis(spark, lh)["daily_kpis"] == [r.asDict() for r in kpis_before]
    # SQL readers of the catalog too: the views stay on the published set, even re-pointed
    # (as `lakehouse maintain` would) between the stopped run and its rerun.
    assert point_gold_views(spark, lh, _gold_locations(lh)) == []
    assert pinned_to(spark, f"gold.{half}") == (lh.path(f"gold.{half}"), first[half])
    assert _sorted(spark.table(f"gold.{half}")) == _sorted(read_gold(spark, lh, half))
    assert spark.table("gold.daily_kpis").orderBy("order_date").collect() == kpis_before

    result = build_gold(spark, lh, "run-3")

    assert half in result.written
    assert published_versions(spark, lh) == latest_versions(spark, lh)
    assert set(point_gold_views(spark, lh, _gold_locations(lh))) >= {f"gold.{half}"}
    for table, version in published_versions(spark, lh).items():
        assert pinned_to(spark, f"gold.{table}") == (lh.path(f"gold.{table}"), version)
    assert _sorted(spark.table("gold.daily_kpis")) == _sorted(read_gold(spark, lh, "daily_kpis"))
    for table in ("daily_kpis", "fact_orders", "customer_retention"):
        full = compute_table(spark, lh, table, result.consumed_versions)
        assert_df_equality(
            read_gold(spark, lh, table), full, ignore_row_order=True, ignore_nullable=True
        )


def test_compaction_moves_readers_only_from_a_table_at_its_published_version(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh = local_lakehouse(tmp_path)
    write_initial(SilverWriter(spark, lh.root))
    build_gold(spark, lh, "run-1")
    first = published_versions(spark, lh)
    # An unpublished write on top of fact_payments, as a stopped run leaves one.
    payments = lh.path("gold.fact_payments")
    spark.read.format("delta").load(payments).write.format("delta").mode("overwrite").save(payments)
    before = latest_versions(spark, lh)

    for table in ("daily_kpis", "fact_payments"):
        DeltaTable.forPath(spark, lh.path(f"gold.{table}")).optimize().executeCompaction()
    advance(spark, lh, "maintain-test", before)

    # daily_kpis was at its published version: readers move to the compacted one; fact_payments
    # had an unpublished write on top: readers stay where they were.
    assert published_versions(spark, lh) == {**first, "daily_kpis": first["daily_kpis"] + 1}
