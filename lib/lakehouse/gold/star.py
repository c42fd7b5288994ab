"""The star schema: SCD2 dimensions, the date dimension and the two fact tables (metrics.md,
"Star schema"). Pure DataFrame -> DataFrame transforms; reading silver and writing gold is in
`build.py`.

Surrogate keys are `xxhash64(natural key, valid_from)`: deterministic, so a full rebuild and an
incremental run give every version the same key, and a fact keeps its key when other versions of
the same customer or product arrive.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.gold.pricing import (
    PAYMENT_USD,
    USD_AMOUNT,
    is_counted,
    line_amounts,
    with_usd_rate,
)


def date_key(date: Column | str) -> Column:
    """`yyyymmdd` as an int, the join key to `dim_date`."""
    d = F.col(date) if isinstance(date, str) else date
    return (F.year(d) * 10000 + F.month(d) * 100 + F.dayofmonth(d)).cast("int")


def dim_customers(customers_history: DataFrame, customers: DataFrame) -> DataFrame:
    """One row per customer version (SCD type 2), identity pseudonymised.

    In: `customers_history` (silver SCD2: `customer_id`, `email_hash`, `phone_hash`, `country`,
    `city`, `signup_ts`, `marketing_opt_in`, `valid_from`, `valid_to`, `is_current`);
    `customers` (silver current rows with `customer_id`, `_is_deleted`): a customer whose current
    row is a tombstone is left out with all their versions.
    Out: `customer_key` long, `customer_id`, `email_hash`, `phone_hash`, `country`, `city`,
    `signup_date` date, `marketing_opt_in`, `valid_from`, `valid_to`, `is_current`.
    """
    deleted = customers.where(F.col("_is_deleted")).select("customer_id")
    return customers_history.join(deleted, "customer_id", "left_anti").select(
        F.xxhash64("customer_id", "valid_from").alias("customer_key"),
        "customer_id",
        "email_hash",
        "phone_hash",
        "country",
        "city",
        F.to_date("signup_ts").alias("signup_date"),
        "marketing_opt_in",
        "valid_from",
        "valid_to",
        "is_current",
    )


def dim_products(products_history: DataFrame) -> DataFrame:
    """One row per product version (SCD type 2).

    In: silver `products_history` (`product_id`, `name`, `category`, `brand`, `list_price`,
    `currency`, `active`, `updated_at`, `valid_from`, `valid_to`, `is_current`).
    Out: `product_key` long plus those columns.
    """
    return products_history.select(
        F.xxhash64("product_id", "valid_from").alias("product_key"),
        "product_id",
        "name",
        "category",
        "brand",
        "list_price",
        "currency",
        "active",
        "updated_at",
        "valid_from",
        "valid_to",
        "is_current",
    )


def dim_date(dates: DataFrame) -> DataFrame:
    """One row per calendar day from the earliest to the newest date in `dates`, gaps included.

    In: `dates` with a `date` column (order and payment dates).
    Out: `date_key` int (yyyymmdd), `date`, `year`, `quarter`, `month`, `month_name`,
    `day_of_month`, `day_of_week` (ISO: 1 = Monday .. 7 = Sunday), `weekday_name`, `iso_year`,
    `iso_week`, `is_weekend`.
    """
    span = dates.agg(F.min("date").alias("_lo"), F.max("date").alias("_hi"))
    days = span.where(F.col("_lo").isNotNull()).select(
        F.explode(F.sequence("_lo", "_hi")).alias("date")
    )
    iso_dow = ((F.dayofweek("date") + 5) % 7) + 1
    return days.select(
        date_key("date").alias("date_key"),
        "date",
        F.year("date").alias("year"),
        F.quarter("date").alias("quarter"),
        F.month("date").alias("month"),
        F.date_format("date", "MMMM").alias("month_name"),
        F.dayofmonth("date").alias("day_of_month"),
        iso_dow.alias("day_of_week"),
        F.date_format("date", "EEEE").alias("weekday_name"),
        # The ISO year is the year of the week's Thursday.
        F.year(F.date_add(F.col("date"), F.lit(4) - iso_dow)).alias("iso_year"),
        F.weekofyear("date").alias("iso_week"),
        (iso_dow >= 6).alias("is_weekend"),
    )


def point_in_time_key(
    facts: DataFrame, dim: DataFrame, natural_key: str, key: str, ts: str, fact_keys: list[str]
) -> DataFrame:
    """Add the surrogate `key` of the dimension version valid at the fact's `ts`: the newest
    version with `valid_from <= ts`; a fact older than every version takes the earliest version;
    null when the dimension has no row for the natural key.

    In: `facts` with `fact_keys`, `natural_key`, `ts`; `dim` with `natural_key`, `key`,
    `valid_from`.
    Out: `facts`' columns plus `key`.
    """
    versions = dim.select(natural_key, key, "valid_from")
    version = F.struct("valid_from", key)
    picked = (
        facts.select(*fact_keys, natural_key, ts)
        .join(versions, natural_key)
        .groupBy(*fact_keys)
        .agg(
            F.max(F.when(F.col("valid_from") <= F.col(ts), version)).alias("_asof"),
            F.min(version).alias("_first"),
        )
        .select(*fact_keys, F.coalesce(F.col("_asof")[key], F.col("_first")[key]).alias(key))
    )
    return facts.join(picked, fact_keys, "left")


def fact_orders(
    orders: DataFrame,
    items: DataFrame,
    calendar: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    carried_orders: Sequence[str] = (),
    carried_items: Sequence[str] = (),
) -> DataFrame:
    """One row per order line of a live order, counted or cancelled.

    In: live silver `orders` (`order_id`, `customer_id`, `order_ts`, `order_date`, `status`,
    `currency`); live silver `items` (`order_id`, `line_no`, `product_id`, `quantity`,
    `unit_price`, `discount`); `calendar` from `pricing.rate_calendar`; `customers` from
    `dim_customers`; `products` from `dim_products`.
    Out: `order_id`, `line_no`, `order_date`, `date_key`, `order_ts`, `status`, `is_counted`,
    `customer_id`, `customer_key`, `product_id`, `product_key`, `quantity`, `unit_price`,
    `discount`, `currency`, `line_amount` (decimal(19,6), order currency, unrounded),
    `rate_to_usd`, `fx_rate_date`, `line_amount_usd` (decimal(38,14), unrounded; null when the
    order has no usable rate), then the `carried_orders` and `carried_items` columns as they
    are (columns a later landing contract added, docs/CONTRACTS.md).
    """
    heads = orders.select(
        "order_id", "customer_id", "order_ts", "order_date", "status", "currency", *carried_orders
    )
    heads = point_in_time_key(
        heads, customers, "customer_id", "customer_key", "order_ts", ["order_id"]
    )
    lines = line_amounts(
        items.select(
            "order_id",
            "line_no",
            "product_id",
            "quantity",
            "unit_price",
            "discount",
            *carried_items,
        )
    ).join(heads, "order_id")
    lines = point_in_time_key(
        lines, products, "product_id", "product_key", "order_ts", ["order_id", "line_no"]
    )
    priced = with_usd_rate(lines, calendar, "order_date")
    return priced.select(
        "order_id",
        "line_no",
        "order_date",
        date_key("order_date").alias("date_key"),
        "order_ts",
        "status",
        is_counted().alias("is_counted"),
        "customer_id",
        "customer_key",
        "product_id",
        "product_key",
        "quantity",
        "unit_price",
        "discount",
        "currency",
        "line_amount",
        "rate_to_usd",
        "fx_rate_date",
        (F.col("line_amount") * F.col("rate_to_usd")).cast(USD_AMOUNT).alias("line_amount_usd"),
        *carried_orders,
        *carried_items,
    )


def fact_payments(payments: DataFrame, calendar: DataFrame) -> DataFrame:
    """One row per live payment event, its amount in its currency and in USD at the event date's
    rate (newest earlier rate when the day has none; USD at 1).

    In: live silver `payments` (`event_id`, `payment_id`, `order_id`, `event_ts`, `event_date`,
    `event_type`, `amount` decimal(18,2), `currency`, `method`, `provider_ref`); `calendar` from
    `pricing.rate_calendar`.
    Out: `event_id`, `payment_id`, `order_id`, `event_ts`, `event_date`, `date_key`,
    `event_type`, `method`, `provider_ref`, `currency`, `amount`, `rate_to_usd`, `fx_rate_date`,
    `amount_usd` (decimal(38,10), unrounded; null when no usable rate).
    """
    base = payments.select(
        "event_id",
        "payment_id",
        "order_id",
        "event_ts",
        "event_date",
        date_key("event_date").alias("date_key"),
        "event_type",
        "method",
        "provider_ref",
        "currency",
        "amount",
    )
    return with_usd_rate(base, calendar, "event_date").withColumn(
        "amount_usd", (F.col("amount") * F.col("rate_to_usd")).cast(PAYMENT_USD)
    )
