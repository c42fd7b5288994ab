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
- a customer or product version change (SCD2 history): the order dates of that customer or
  product from the earliest moment the versions' spans changed (a version inserted or deleted:
  its `valid_from`; a version updated: its `valid_to`, old and new, since a version's start
  never moves), because facts carry the key (customer or product id and `valid_from`) of the
  version valid at the order time and no other dimension column: an order before that moment
  keeps its version (an erasure rewrites columns, not spans, and moves no fact). A new
  version today reaches today's orders, not a year of history (issue #17: a day's cost
  independent of history); a late, back-dated version reaches back as far as it must;
- a customer tombstone (or its undoing): every order date of that customer, since a deleted
  customer has no dimension rows at all.
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


def version_change_starts(history_changes: DataFrame, key: str) -> DataFrame:
    """Per key, the earliest moment from which the version valid at a time may have changed:
    an inserted or deleted version's `valid_from`, an updated version's `valid_to` (both
    images; null, the open end, moves nothing).

    In: CDF rows of an SCD2 history (`key`, `valid_from`, `valid_to`, `_change_type`).
    Out: `key`, `since` (timestamp).
    """
    moment = F.when(F.col("_change_type").isin("insert", "delete"), F.col("valid_from")).otherwise(
        F.col("valid_to")
    )
    return (
        history_changes.select(key, moment.alias("_t"))
        .where(F.col(key).isNotNull() & F.col("_t").isNotNull())
        .groupBy(key)
        .agg(F.min("_t").alias("since"))
    )


def order_dates_since(rows: DataFrame, key: str, starts: DataFrame) -> DataFrame:
    """Order dates of the rows whose `key` changed version, from the day the change starts.

    In: live orders or items with `key` and `order_date`; `starts` from
    `version_change_starts`. Out: one column `date`, distinct.
    """
    return (
        rows.join(starts, key)
        .where(F.col("order_date") >= F.to_date("since"))
        .select(F.col("order_date").alias("date"))
        .distinct()
    )


def deleted_or_restored(changes: DataFrame, key: str) -> DataFrame:
    """The keys a Change Data Feed of current rows deletes or brings back: any image with
    `_is_deleted` set.

    In: CDF rows with `key` and `_is_deleted`. Out: one column `key`, distinct.
    """
    return changes.where(F.col("_is_deleted") & F.col(key).isNotNull()).select(key).distinct()


def order_dates_of(rows: DataFrame, key: str, keys: DataFrame) -> DataFrame:
    """Order dates of the rows whose `key` is in `keys`.

    In: live orders or items with `key` and `order_date`; `keys` with a `key` column.
    Out: one column `date`, distinct.
    """
    return rows.join(keys, key, "left_semi").select(F.col("order_date").alias("date")).distinct()


def attribution_changes(order_changes: DataFrame) -> DataFrame:
    """The orders of a Change Data Feed whose attribution to a session may have changed: those
    inserted or deleted, and those whose images differ in being a live counted order (a
    tombstone, or a status crossing `cancelled`) or in what prices them (`currency`,
    `order_date`); a status change between counted statuses (placed to shipped to returned)
    changes no session's `orders` or `revenue_usd`, nor any product's purchased lines.

    In: CDF rows of silver.orders (`order_id`, `status`, `currency`, `order_date`,
    `_is_deleted`, `_change_type`). Out: one column `order_id`, distinct.
    """
    counted = is_counted() & ~F.col("_is_deleted")
    state = F.struct(counted.alias("counted"), "currency", "order_date")
    per_order = order_changes.groupBy("order_id").agg(
        F.max(F.col("_change_type").isin("insert", "delete")).alias("_came_or_went"),
        F.countDistinct(state).alias("_states"),
    )
    return per_order.where(F.col("_came_or_went") | (F.col("_states") > 1)).select("order_id")
