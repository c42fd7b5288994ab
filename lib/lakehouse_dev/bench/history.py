"""Synthetic silver history for the history-independence figure.

Fifty days of 100k orders cannot go through generate -> bronze -> silver within the benchmark's
time on 2 cores, so older days are written straight into the silver tables the real pipeline
created (`silver.orders`, `silver.order_items`, `silver.payments`): rows built with
`spark.range`, selected into exactly `lakehouse.silver.schema.silver_schema(spec)` (the real
tables' schema, partitioning and properties stay as silver made them, because the rows are
appended to those tables), one file per day partition (as after compaction), live rows
(`_is_deleted` false) with ids (`h...`) the generator never makes, so the measured day's batch
updates only the real days and inserts the rest, as a real day does.

Per synthetic day and order: `line_no` 1..4 items (2.5 on average, like the generator) and two
payment events (authorized, captured).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.specs import TableSpec
from lakehouse.silver.schema import silver_schema

STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
CURRENCIES = ("USD", "EUR", "GBP")
METHODS = ("card", "paypal", "bank_transfer", "gift_card")


def _pick(values: tuple[str, ...], n: Column) -> Column:
    return F.element_at(F.array(*[F.lit(v) for v in values]), (n % len(values)).cast("int") + 1)


def _orders(spark: SparkSession, first_day: date, days: int, per_day: int) -> DataFrame:
    """One row per synthetic order: `id`, `day` (its date), `order_ts`, `order_id`."""
    ids = spark.range(days * per_day)
    day = F.date_add(F.lit(first_day), (F.col("id") / per_day).cast("int"))
    # An order's time within its day, spread over the 24 hours.
    seconds = (F.col("id") % per_day) * 86_399 / per_day
    return ids.select(
        "id",
        day.alias("day"),
        (F.to_timestamp(day) + F.make_interval(secs=seconds.cast("decimal(18,6)"))).alias(
            "order_ts"
        ),
        F.format_string("h%09d", F.col("id")).alias("order_id"),
    )


def _meta(seq: Column, event_ts: Column, ingest_date: Column) -> list[Column]:
    return [
        seq.alias("_seq"),
        F.lit(None).cast("long").alias("_lsn"),
        event_ts.alias("_event_ts"),
        F.lit(False).alias("_is_deleted"),
        F.lit("bench/synthetic-history").alias("_source_file"),
        ingest_date.alias("_ingest_date"),
        F.lit("bench-history").alias("_run_id"),
        F.current_timestamp().alias("_updated_at"),
    ]


def synthetic_rows(
    spark: SparkSession, spec: TableSpec, first_day: date, days: int, per_day: int
) -> DataFrame:
    """Rows of `silver.<spec.name>` (orders, order_items or payments) for `days` days from
    `first_day`, `per_day` orders a day, in the table's schema."""
    orders = _orders(spark, first_day, days, per_day)
    seq_of = lambda ts: F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")  # noqa: E731
    if spec.name == "orders":
        lsn = F.lpad(F.col("id").cast("string"), 20, "0")
        df = orders.select(
            "order_id",
            F.format_string("c%08d", F.col("id") % 200_000).alias("customer_id"),
            "order_ts",
            _pick(STATUSES, F.col("id")).alias("status"),
            _pick(CURRENCIES, F.col("id")).alias("currency"),
            F.lit("US").alias("shipping_country"),
            F.col("day").alias("order_date"),
            *_meta(lsn, F.col("order_ts"), F.col("day")),
        )
    elif spec.name == "order_items":
        lines = orders.withColumn("line_no", F.explode(F.sequence(F.lit(1), 1 + F.col("id") % 4)))
        lsn = F.lpad((F.col("id") * 10 + F.col("line_no")).cast("string"), 20, "0")
        df = lines.select(
            "order_id",
            F.col("line_no").cast("int").alias("line_no"),
            F.format_string("p%06d", (F.col("id") * 7 + F.col("line_no")) % 5_000).alias(
                "product_id"
            ),
            (1 + F.col("id") % 3).cast("int").alias("quantity"),
            (F.lit(5) + (F.col("id") % 9_500) / 100).cast("decimal(18,2)").alias("unit_price"),
            F.when(F.col("id") % 5 == 0, F.lit(0.1))
            .otherwise(F.lit(0.0))
            .cast("decimal(5,4)")
            .alias("discount"),
            F.col("day").alias("order_date"),
            *_meta(lsn, F.col("order_ts"), F.col("day")),
        )
    elif spec.name == "payments":
        events = orders.withColumn("kind", F.explode(F.array(F.lit(0), F.lit(1))))
        event_ts = F.col("order_ts") + F.make_interval(mins=(F.col("kind") * 5).cast("int"))
        df = events.select(
            F.format_string("hev_%012d_%d", F.col("id"), F.col("kind")).alias("event_id"),
            F.format_string("hpay_%012d", F.col("id")).alias("payment_id"),
            "order_id",
            event_ts.alias("event_ts"),
            F.when(F.col("kind") == 0, "authorized").otherwise("captured").alias("event_type"),
            (F.lit(10) + (F.col("id") % 20_000) / 100).cast("decimal(18,2)").alias("amount"),
            _pick(CURRENCIES, F.col("id")).alias("currency"),
            _pick(METHODS, F.col("id")).alias("method"),
            F.format_string("hpsp_%012d", F.col("id")).alias("provider_ref"),
            F.to_date(event_ts).alias("event_date"),
            *_meta(seq_of(event_ts), event_ts, F.col("day")),
        )
    else:
        raise ValueError(f"no synthetic history for silver.{spec.name}")
    schema = silver_schema(spec)
    return df.select(*[F.col(f.name).cast(f.dataType) for f in schema.fields])


def append_history(
    spark: SparkSession,
    specs: Mapping[str, TableSpec],
    table_path: Mapping[str, str],
    before: date,
    days: int,
    per_day: int,
) -> None:
    """Append `days` synthetic days ending the day before `before` to each table, one file per
    day partition."""
    if days <= 0:
        return
    first = before - timedelta(days=days)
    for name, spec in specs.items():
        rows = synthetic_rows(spark, spec, first, days, per_day)
        (
            rows.repartition(*spec.partition_by)
            .write.format("delta")
            .mode("append")
            .save(table_path[name])
        )
