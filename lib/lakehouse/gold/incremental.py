"""Which gold rows a batch of silver changes affects. Pure DataFrame -> DataFrame transforms over
Change Data Feed rows (every `_change_type`: inserts, deletes and both images of an update, so a
row's old and new keys are both affected) and current silver state.

How each change reaches gold (all dates UTC):

- an order or item change: the order dates of both images (money, status, counted or not);
- an FX change of (currency, rate_date): every date from `rate_date` up to the day before the
  currency's next rate (open-ended when none) that has orders or payments in that currency, since
  those days priced with the changed rate or fell back to the one before it;
- an order change of customer X may move X's first order date: the old first date was either an
  image date of a changed order (already affected) or the earliest date of X's unchanged counted
  orders; the new one is X's earliest counted order now. Both are affected (new vs returning);
- retention: the cohorts of every changed customer, old and new (months of the dates above), plus
  every cohort when the newest month with data moves (each cohort gains or loses a column);
- a customer or product version change (SCD2 history, customer tombstone): every order date of
  that customer or product, since facts carry the version key valid at the order time.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.gold.pricing import USD, is_counted


def changed_values(changes: DataFrame, column: str, alias: str | None = None) -> DataFrame:
    """The distinct non-null values of `column` over every image in a Change Data Feed.

    In: CDF rows of a silver table. Out: one column, `alias` (default `column`).
    """
    name = alias or column
    return changes.where(F.col(column).isNotNull()).select(F.col(column).alias(name)).distinct()


def fx_change_ranges(fx_changes: DataFrame, fx_rates: DataFrame) -> DataFrame:
    """The date range each changed rate prices: from the changed `rate_date` up to (excluding)
    the currency's next rate date in the current table.

    In: CDF rows of silver.fx_rates (`currency`, `rate_date`); live silver.fx_rates.
    Out: `currency`, `start_date`, `end_date` (exclusive; null when no later rate). USD changes
    are ignored: USD always converts at 1.
    """
    changed = (
        fx_changes.where((F.col("currency") != USD) & F.col("rate_date").isNotNull())
        .select("currency", F.col("rate_date").alias("start_date"))
        .distinct()
    )
    later = fx_rates.select(F.col("currency").alias("_c"), F.col("rate_date").alias("_next"))
    return (
        changed.join(
            later,
            (F.col("currency") == F.col("_c")) & (F.col("_next") > F.col("start_date")),
            "left",
        )
        .groupBy("currency", "start_date")
        .agg(F.min("_next").alias("end_date"))
    )


def dates_in_ranges(rows: DataFrame, date_col: str, ranges: DataFrame) -> DataFrame:
    """Dates of `rows` that fall in a range of their currency.

    In: `rows` with `currency` and `date_col`; `ranges` from `fx_change_ranges`.
    Out: one column `date`, distinct.
    """
    days = rows.select("currency", F.col(date_col).alias("date")).distinct()
    r = ranges.select(F.col("currency").alias("_rc"), F.col("start_date"), F.col("end_date"))
    inside = (
        (F.col("currency") == F.col("_rc"))
        & (F.col("date") >= F.col("start_date"))
        & (F.col("end_date").isNull() | (F.col("date") < F.col("end_date")))
    )
    return days.join(r, inside).select("date").distinct()


def first_order_shift_dates(order_changes: DataFrame, orders: DataFrame) -> DataFrame:
    """Dates whose new vs returning split may change because a changed customer's first order
    date moved: each changed customer's earliest counted order now, and the earliest among their
    counted orders that did not change (the old first date when it was not a changed order).

    In: CDF rows of silver.orders (`order_id`, `customer_id`); live silver.orders (`order_id`,
    `customer_id`, `order_date`, `status`).
    Out: one column `date`, distinct.
    """
    changed_ids = changed_values(order_changes, "order_id")
    customers = changed_values(order_changes, "customer_id")
    counted = orders.where(is_counted()).join(customers, "customer_id", "left_semi")
    now = counted.groupBy("customer_id").agg(F.min("order_date").alias("date"))
    unchanged = (
        counted.join(changed_ids, "order_id", "left_anti")
        .groupBy("customer_id")
        .agg(F.min("order_date").alias("date"))
    )
    return now.select("date").union(unchanged.select("date")).distinct()


def months_of(dates: DataFrame) -> DataFrame:
    """First day of the month of each date. In: `date`. Out: `cohort_month`, distinct."""
    return dates.select(F.trunc("date", "month").alias("cohort_month")).distinct()


def order_dates_of(rows: DataFrame, key: str, keys: DataFrame) -> DataFrame:
    """Order dates of the rows whose `key` is in `keys`.

    In: live orders or items with `key` and `order_date`; `keys` with a `key` column.
    Out: one column `date`, distinct.
    """
    return rows.join(keys, key, "left_semi").select(F.col("order_date").alias("date")).distinct()
