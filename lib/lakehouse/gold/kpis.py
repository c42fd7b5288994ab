"""The dashboard KPIs of metrics.md: gold.daily_kpis, gold.daily_payments and
gold.customer_retention. Pure DataFrame -> DataFrame transforms.

Money is summed exactly (decimal(38,14) for orders, decimal(38,10) for payments) and rounded
half-up to decimal(18,2) once, on the final per-day figure; a figure that does not fit fails the
run with a `money overflow` error (`pricing.fits`), never a NULL. Ratios (`capture_rate`,
`retention_rate`) are decimal(5,4), rounded half-up.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from lakehouse.gold.pricing import COUNT, fits, is_counted, money_sum, ratio, round_money

# Daily revenue divided by the order count: decimal(28,14) / decimal(10,0) would be (39,25), so
# Spark keeps (38,24). Rounding that once more to cents is still exact half-up: a quotient below
# a half cent is below it by at least 10^-14 / orders >= 10^-24 (orders < 10^10), more than half
# of the last of 24 decimals, so it is never rounded up onto the half cent. Days up to 10^14
# USD of revenue; beyond, `fits` fails the run.
_DAY_SUM = DecimalType(28, 14)


def first_order_dates(orders: DataFrame) -> DataFrame:
    """A customer's first order date: the earliest `order_date` among their counted orders.

    In: live orders with `customer_id`, `order_date`, `status`.
    Out: `customer_id`, `first_order_date` (customers with no counted order have no row).
    """
    return (
        orders.where(is_counted() & F.col("customer_id").isNotNull())
        .groupBy("customer_id")
        .agg(F.min("order_date").alias("first_order_date"))
    )


def _count_if(condition: Column) -> Column:
    return F.count(F.when(condition, F.lit(1)))


def daily_kpis(priced_orders: DataFrame, first_orders: DataFrame) -> DataFrame:
    """gold.daily_kpis: one row per order date that has at least one live order (a day with only
    cancelled orders has `orders` 0 and a null average).

    In: `priced_orders` from `pricing.priced_orders` (`order_id`, `customer_id`, `order_date`,
    `status`, `amount_usd` null when unpriced, `rate_to_usd`); `first_orders` from
    `first_order_dates` covering at least the customers in `priced_orders`.
    Out: `order_date`, `orders`, `gross_revenue_usd`, `net_revenue_usd`, `avg_order_value_usd`
    (decimal(18,2), half-up), `customers`, `new_customers`, `returning_customers`,
    `orders_unpriced` (long).
    """
    counted = is_counted()
    priced = F.col("rate_to_usd").isNotNull()
    returned = F.col("status").eqNullSafe(F.lit("returned"))
    days = (
        priced_orders.join(first_orders, "customer_id", "left")
        .groupBy("order_date")
        .agg(
            _count_if(counted).alias("orders"),
            money_sum(F.when(counted & priced, F.col("amount_usd")), "a day's orders").alias(
                "_gross"
            ),
            money_sum(
                F.when(counted & priced & ~returned, F.col("amount_usd")), "a day's orders"
            ).alias("_net"),
            F.countDistinct(F.when(counted, F.col("customer_id"))).alias("customers"),
            F.countDistinct(
                F.when(
                    counted & (F.col("first_order_date") == F.col("order_date")),
                    F.col("customer_id"),
                )
            ).alias("new_customers"),
            _count_if(counted & ~priced).alias("orders_unpriced"),
        )
    )
    day = F.concat(F.lit(" of "), F.col("order_date").cast("string"))
    gross = F.col("_gross")
    average = fits(
        gross.cast(_DAY_SUM), gross, F.concat(F.lit("the revenue used for the average"), day)
    ) / F.col("orders").cast(COUNT)
    return days.select(
        "order_date",
        "orders",
        round_money(gross, F.concat(F.lit("gross_revenue_usd"), day)).alias("gross_revenue_usd"),
        round_money(F.col("_net"), F.concat(F.lit("net_revenue_usd"), day)).alias(
            "net_revenue_usd"
        ),
        F.when(F.col("orders") == 0, F.lit(None).cast("decimal(18,2)"))
        .otherwise(round_money(average, F.concat(F.lit("avg_order_value_usd"), day)))
        .alias("avg_order_value_usd"),
        "customers",
        "new_customers",
        (F.col("customers") - F.col("new_customers")).alias("returning_customers"),
        "orders_unpriced",
    )


def daily_payments(payments: DataFrame) -> DataFrame:
    """gold.daily_payments: one row per UTC date with at least one live payment event.

    In: `fact_payments` rows (`event_date`, `event_type`, `amount_usd` null when unpriced,
    `rate_to_usd`).
    Out: `event_date`; `captured_usd`, `refunded_usd` (decimal(18,2), half-up; unpriced events
    left out); `payments_failed` (long); `capture_rate` (decimal(5,4), half-up: captured events /
    (captured + failed events), null when both are 0); `payments_unpriced` (long: captured or
    refunded events with no usable rate, so left out of the two sums).
    """
    kind = F.col("event_type")
    captured = kind == "captured"
    refunded = kind == "refunded"
    days = payments.groupBy("event_date").agg(
        money_sum(F.when(captured, F.col("amount_usd")), "a day's captures").alias("_captured"),
        money_sum(F.when(refunded, F.col("amount_usd")), "a day's refunds").alias("_refunded"),
        _count_if(captured).alias("_n_captured"),
        _count_if(kind == "failed").alias("payments_failed"),
        _count_if((captured | refunded) & F.col("rate_to_usd").isNull()).alias("payments_unpriced"),
    )
    day = F.concat(F.lit(" of "), F.col("event_date").cast("string"))
    return days.select(
        "event_date",
        round_money(F.col("_captured"), F.concat(F.lit("captured_usd"), day)).alias("captured_usd"),
        round_money(F.col("_refunded"), F.concat(F.lit("refunded_usd"), day)).alias("refunded_usd"),
        "payments_failed",
        ratio(F.col("_n_captured"), F.col("_n_captured") + F.col("payments_failed")).alias(
            "capture_rate"
        ),
        "payments_unpriced",
    )


def payments_by_method(payments: DataFrame) -> DataFrame:
    """The dashboard's payments by method (not a gold table: metrics.md has no such figure; the
    dashboard computes it from the published gold.fact_payments, docs/REPORTS.md): one row per
    UTC event date and `method` with at least one live payment event.

    In: `fact_payments` rows (`event_date`, `method`, `event_type`, `amount_usd` null when
    unpriced).
    Out: `event_date`, `method`; `captured_usd`, `refunded_usd` (decimal(18,2), half-up per day
    and method, as daily_payments rounds per day; unpriced events left out); `payments_failed`
    (long).
    """
    kind = F.col("event_type")
    days = payments.groupBy("event_date", "method").agg(
        money_sum(F.when(kind == "captured", F.col("amount_usd")), "a day's captures").alias(
            "_captured"
        ),
        money_sum(F.when(kind == "refunded", F.col("amount_usd")), "a day's refunds").alias(
            "_refunded"
        ),
        _count_if(kind == "failed").alias("payments_failed"),
    )
    day = F.concat(F.lit(" of "), F.col("event_date").cast("string"), F.lit(" by "), "method")
    return days.select(
        "event_date",
        "method",
        round_money(F.col("_captured"), F.concat(F.lit("captured_usd"), day)).alias("captured_usd"),
        round_money(F.col("_refunded"), F.concat(F.lit("refunded_usd"), day)).alias("refunded_usd"),
        "payments_failed",
    )


def _months_between(later: Column, earlier: Column) -> Column:
    return (F.year(later) - F.year(earlier)) * 12 + F.month(later) - F.month(earlier)


def newest_month(orders: DataFrame) -> DataFrame:
    """The newest month with data: first day of the month of the latest counted order.

    In: live orders with `order_date`, `status`. Out: one row, `newest_month` (null when none).
    """
    return orders.where(is_counted()).agg(
        F.trunc(F.max("order_date"), "month").alias("newest_month")
    )


def customer_retention(orders: DataFrame, through_month: dt.date | None = None) -> DataFrame:
    """gold.customer_retention: one row per (cohort month, months since), `months_since` from 0
    to the newest month with data, rows with 0 active customers included.

    In: live orders with `customer_id`, `order_date`, `status`, holding every order of each
    customer it covers (a customer's cohort depends on all their counted orders);
    `through_month`: the newest month with data (first day of the month) when `orders` covers
    only some customers; by default the newest month in `orders`.
    Out: `cohort_month` date (first day), `months_since` int, `cohort_customers` long,
    `active_customers` long, `retention_rate` decimal(5,4) (half-up).
    """
    counted = orders.where(is_counted() & F.col("customer_id").isNotNull()).select(
        "customer_id", F.trunc("order_date", "month").alias("month")
    )
    cohort_of = counted.groupBy("customer_id").agg(F.min("month").alias("cohort_month"))
    cohorts = cohort_of.groupBy("cohort_month").agg(F.count("*").alias("cohort_customers"))
    if through_month is None:
        newest = counted.agg(F.max("month").alias("_newest"))
    else:
        newest = orders.sparkSession.range(1).select(F.lit(through_month).alias("_newest"))
    span = F.greatest(F.lit(0), _months_between(F.col("_newest"), F.col("cohort_month")))
    grid = cohorts.crossJoin(newest).select(
        "cohort_month",
        F.explode(F.sequence(F.lit(0), span)).alias("months_since"),
        "cohort_customers",
    )
    active = (
        counted.distinct()
        .join(cohort_of, "customer_id")
        .select(
            "cohort_month",
            _months_between(F.col("month"), F.col("cohort_month")).alias("months_since"),
            "customer_id",
        )
        .groupBy("cohort_month", "months_since")
        .agg(F.countDistinct("customer_id").alias("active_customers"))
    )
    return (
        grid.join(active, ["cohort_month", "months_since"], "left")
        .select(
            "cohort_month",
            F.col("months_since").cast("int").alias("months_since"),
            "cohort_customers",
            F.coalesce(F.col("active_customers"), F.lit(0)).alias("active_customers"),
        )
        .withColumn("retention_rate", ratio(F.col("active_customers"), F.col("cohort_customers")))
    )
