"""The customer-behaviour marts of metrics.md ("Customer behaviour (clickstream), version 1"):
gold.sessions, gold.daily_funnel and gold.product_engagement. Pure DataFrame -> DataFrame
transforms; what the contract leaves open is written down in docs/CLICKSTREAM.md.

All times are UTC. Counts are longs; rates are half-up to 4 decimals, null when the denominator
is 0 (`pricing.ratio`): decimal(5,4) for the fractions (`view_rate`, `conversion_rate`,
`cart_abandonment_rate`), decimal(14,4) for the rates that can exceed 1 (`cart_rate`,
`checkout_rate`, `purchase_rate`: a step reached without the one before it;
`view_to_purchase_rate`: lines bought without a view that day); `revenue_usd` is the exact sum of
the attributed orders' USD amounts, rounded half-up to cents once per session.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from lakehouse.gold.pricing import is_counted, money_sum, ratio, round_money
from lakehouse.gold.star import point_in_time_key

# The event types of the funnel, in its order (landing.md, "Clickstream JSON lines").
FUNNEL = ("page_view", "product_view", "add_to_cart", "checkout", "purchase")
# Rates that can exceed 1 (and 10): decimal(14,4) where a fraction is decimal(5,4).
WIDE_RATIO = DecimalType(14, 4)


def _count_of(event_type: str) -> Column:
    return F.count(F.when(F.col("event_type") == event_type, F.lit(1)))


def sessions(
    clicks: DataFrame,
    orders: DataFrame,
    customers: DataFrame,
    scope: Sequence[object] | None = None,
) -> DataFrame:
    """gold.sessions: one row per session (the events sharing a `session_id`).

    In: `clicks`, silver clickstream rows (`event_id`, `event_ts`, `session_id`, `customer_id`,
    `event_type`, `product_id`, `order_id`), each event once, holding every event of each
    session wanted; `orders`, priced orders (`pricing.priced_orders`: `order_id`, `status`,
    `amount_usd` null when unpriced) covering at least the orders the sessions purchase;
    `customers`, `star.dim_customers` rows (`customer_id`, `customer_key`, `valid_from`);
    `scope`, session dates to keep (None: every session).
    Out: `session_id`, `session_date` (date of `start_ts`), `start_ts`, `end_ts`, `duration_s`
    (whole seconds), `events`, `page_views`, `product_views`, `add_to_carts`, `checkouts`,
    `purchases`, `products_viewed` (distinct products of `product_view` events), `is_known`,
    `customer_key` (the `dim_customers` version of the session's customer valid at `start_ts`;
    null when anonymous), `converted`, `orders` (distinct counted orders of its `purchase`
    events), `revenue_usd` (decimal(18,2)).
    """
    # The customer is the one on the session's latest event that carries one: the max of
    # (event_ts, event_id) over those events, event_id breaking a tie in event time.
    tagged = F.when(
        F.col("customer_id").isNotNull(), F.struct("event_ts", "event_id", "customer_id")
    )
    heads = (
        clicks.groupBy("session_id")
        .agg(
            F.min("event_ts").alias("start_ts"),
            F.max("event_ts").alias("end_ts"),
            F.count(F.lit(1)).alias("events"),
            _count_of("page_view").alias("page_views"),
            _count_of("product_view").alias("product_views"),
            _count_of("add_to_cart").alias("add_to_carts"),
            _count_of("checkout").alias("checkouts"),
            _count_of("purchase").alias("purchases"),
            F.countDistinct(
                F.when(F.col("event_type") == "product_view", F.col("product_id"))
            ).alias("products_viewed"),
            F.max(tagged)["customer_id"].alias("customer_id"),
        )
        .withColumn("session_date", F.to_date("start_ts"))
    )
    if scope is not None:
        heads = heads.where(F.col("session_date").isin(list(scope)))
    keyed = point_in_time_key(
        heads, customers, "customer_id", "customer_key", "start_ts", ["session_id"]
    )
    bought = (
        clicks.where((F.col("event_type") == "purchase") & F.col("order_id").isNotNull())
        .select("session_id", "order_id")
        .distinct()
        .join(
            orders.where(is_counted()).select("order_id", "amount_usd"),
            "order_id",
        )
        .groupBy("session_id")
        .agg(
            F.count(F.lit(1)).alias("orders"),
            money_sum(F.col("amount_usd"), "a session's orders").alias("_revenue"),
        )
    )
    return keyed.join(bought, "session_id", "left").select(
        "session_id",
        "session_date",
        "start_ts",
        "end_ts",
        F.expr("(unix_micros(end_ts) - unix_micros(start_ts)) div 1000000").alias("duration_s"),
        "events",
        "page_views",
        "product_views",
        "add_to_carts",
        "checkouts",
        "purchases",
        "products_viewed",
        F.col("customer_id").isNotNull().alias("is_known"),
        "customer_key",
        (F.col("purchases") > 0).alias("converted"),
        F.coalesce(F.col("orders"), F.lit(0)).alias("orders"),
        round_money(
            F.coalesce(F.col("_revenue"), F.lit(0)),
            F.concat(F.lit("revenue_usd of session "), F.col("session_id")),
        ).alias("revenue_usd"),
    )


def daily_funnel(sessions: DataFrame) -> DataFrame:
    """gold.daily_funnel: one row per `session_date` with at least one session.

    In: gold.sessions rows. Out: `session_date`, `sessions`, `with_page_view`,
    `with_product_view`, `with_add_to_cart`, `with_checkout`, `with_purchase` (sessions holding
    at least one event of the type), `view_rate`, `cart_rate`, `checkout_rate`,
    `purchase_rate`, `conversion_rate`, `cart_abandonment_rate` (half-up, null when the
    denominator is 0; the module's doc gives their types, metrics.md what each divides).
    """

    def holding(column: str) -> Column:
        return F.count(F.when(F.col(column) > 0, F.lit(1)))

    days = sessions.groupBy("session_date").agg(
        F.count(F.lit(1)).alias("sessions"),
        holding("page_views").alias("with_page_view"),
        holding("product_views").alias("with_product_view"),
        holding("add_to_carts").alias("with_add_to_cart"),
        holding("checkouts").alias("with_checkout"),
        holding("purchases").alias("with_purchase"),
        F.count(F.when((F.col("add_to_carts") > 0) & (F.col("purchases") == 0), F.lit(1))).alias(
            "_abandoned"
        ),
    )
    c = F.col
    return days.select(
        "session_date",
        "sessions",
        "with_page_view",
        "with_product_view",
        "with_add_to_cart",
        "with_checkout",
        "with_purchase",
        ratio(c("with_product_view"), c("sessions")).alias("view_rate"),
        ratio(c("with_add_to_cart"), c("with_product_view"), WIDE_RATIO).alias("cart_rate"),
        ratio(c("with_checkout"), c("with_add_to_cart"), WIDE_RATIO).alias("checkout_rate"),
        ratio(c("with_purchase"), c("with_checkout"), WIDE_RATIO).alias("purchase_rate"),
        ratio(c("with_purchase"), c("sessions")).alias("conversion_rate"),
        ratio(c("_abandoned"), c("with_add_to_cart")).alias("cart_abandonment_rate"),
    )


def product_engagement(clicks: DataFrame, orders: DataFrame, items: DataFrame) -> DataFrame:
    """gold.product_engagement: one row per (`date`, `product_id`) with any activity.

    In: `clicks`, silver clickstream rows (`event_ts`, `event_type`, `product_id`);
    live silver `orders` (`order_id`, `order_date`, `status`) and `items` (`order_id`,
    `product_id`), both over the same dates as `clicks`.
    Out: `date`, `product_id`, `views` (`product_view` events that day), `add_to_carts`,
    `purchases` (lines of counted orders of that order date with the product),
    `view_to_purchase_rate` (purchases / views, decimal(14,4) half-up, null when views is 0).
    """
    events = (
        clicks.where(
            F.col("product_id").isNotNull()
            & F.col("event_type").isin("product_view", "add_to_cart")
        )
        .groupBy(F.to_date("event_ts").alias("date"), "product_id")
        .agg(
            _count_of("product_view").alias("views"),
            _count_of("add_to_cart").alias("add_to_carts"),
        )
    )
    lines = (
        items.where(F.col("product_id").isNotNull())
        .select("order_id", "product_id")
        .join(
            orders.where(is_counted()).select("order_id", F.col("order_date").alias("date")),
            "order_id",
        )
        .groupBy("date", "product_id")
        .agg(F.count(F.lit(1)).alias("purchases"))
    )
    both = events.join(lines, ["date", "product_id"], "full")
    views = F.coalesce(F.col("views"), F.lit(0))
    purchases = F.coalesce(F.col("purchases"), F.lit(0))
    return both.select(
        "date",
        "product_id",
        views.alias("views"),
        F.coalesce(F.col("add_to_carts"), F.lit(0)).alias("add_to_carts"),
        purchases.alias("purchases"),
        _view_to_purchase(purchases, views).alias("view_to_purchase_rate"),
    )


def _view_to_purchase(purchases: Column, views: Column) -> Column:
    """purchases / views as `WIDE_RATIO`, half-up to 4 decimals; null when views is 0."""
    return ratio(purchases, views, WIDE_RATIO)


def top_products(engagement: DataFrame, n: int) -> DataFrame:
    """The dashboard's product table (not a gold table): gold.product_engagement rows summed per
    product, the `n` products with the most purchased lines (then views, then id).

    In: gold.product_engagement rows (already limited to the days wanted).
    Out: `product_id`, `views`, `add_to_carts`, `purchases`, `view_to_purchase_rate` (as the
    mart's, over the summed counts), at most `n` rows, in that order.
    """
    sums = engagement.groupBy("product_id").agg(
        F.sum("views").alias("views"),
        F.sum("add_to_carts").alias("add_to_carts"),
        F.sum("purchases").alias("purchases"),
    )
    views, purchases = F.col("views"), F.col("purchases")
    return (
        sums.select(
            "product_id",
            "views",
            "add_to_carts",
            "purchases",
            _view_to_purchase(purchases, views).alias("view_to_purchase_rate"),
        )
        .orderBy(purchases.desc(), views.desc(), "product_id")
        .limit(n)
    )
