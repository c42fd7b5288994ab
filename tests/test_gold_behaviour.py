"""The customer-behaviour marts (metrics.md, "Customer behaviour (clickstream), version 1") on
tiny inline DataFrames, every column computed by hand: a session that crosses midnight, an
anonymous one that abandons its cart, one that buys a cancelled and an unpriced order, a late
event that moves a session to the day before; the funnel's rates with half-up rounding and
null denominators; product engagement by event date and order date."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from lakehouse.gold.behaviour import daily_funnel, product_engagement, sessions, top_products

D = Decimal
date = dt.date


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


CLICKS = (
    "event_id string, event_ts timestamp, event_date date, session_id string, "
    "customer_id string, event_type string, product_id string, order_id string"
)


def click(
    event_id: str,
    at: str,
    session: str,
    kind: str,
    customer: str | None = None,
    product: str | None = None,
    order: str | None = None,
) -> tuple[Any, ...]:
    moment = ts(at)
    return (event_id, moment, moment.date(), session, customer, kind, product, order)


# S1 starts anonymous before midnight and signs in after it: a known, converted session of
# 2024-01-01. S2 is anonymous and leaves with a product in its cart. S3 buys O2 (counted but
# unpriced: adds 0) twice over and O3 (cancelled: not attributed).
EVENTS = [
    click("e01", "2024-01-01 23:58:00", "S1", "page_view"),
    click("e02", "2024-01-01 23:59:00", "S1", "product_view", product="P1"),
    click("e03", "2024-01-02 00:01:30", "S1", "add_to_cart", "C1", "P1"),
    click("e04", "2024-01-02 00:02:00", "S1", "product_view", "C1", "P2"),
    click("e05", "2024-01-02 00:03:00", "S1", "checkout", "C1"),
    click("e06", "2024-01-02 00:03:30", "S1", "purchase", "C1", order="O1"),
    click("e07", "2024-01-02 10:00:00", "S2", "page_view"),
    click("e08", "2024-01-02 10:00:10", "S2", "product_view", product="P1"),
    click("e09", "2024-01-02 10:00:20", "S2", "product_view", product="P1"),
    click("e10", "2024-01-02 10:00:40.900", "S2", "add_to_cart", product="P1"),
    click("e11", "2024-01-02 12:00:00", "S3", "checkout", "C2"),
    click("e12", "2024-01-02 12:00:05", "S3", "purchase", "C2", order="O2"),
    click("e13", "2024-01-02 12:00:06", "S3", "purchase", "C2", order="O3"),
    click("e14", "2024-01-02 12:00:07", "S3", "purchase", order="O2"),
]

# O1's USD amount has a third decimal: the session's revenue is rounded half-up once.
PRICED_ORDERS = [
    ("O1", "placed", D("50.125")),
    ("O2", "placed", None),
    ("O3", "cancelled", D("20.00")),
]

# C1 changed version at noon on 2024-01-01: S1 (from 23:58) takes the second version's key.
DIM_CUSTOMERS = [
    ("C1", 101, ts("2023-12-01 00:00:00")),
    ("C1", 102, ts("2024-01-01 12:00:00")),
    ("C2", 201, ts("2023-06-01 00:00:00")),
]

SESSION_COLUMNS = (
    "session_id",
    "session_date",
    "start_ts",
    "end_ts",
    "duration_s",
    "events",
    "page_views",
    "product_views",
    "add_to_carts",
    "checkouts",
    "purchases",
    "products_viewed",
    "is_known",
    "customer_key",
    "converted",
    "orders",
    "revenue_usd",
)


def _sessions(spark: SparkSession, events: list[tuple[Any, ...]], scope: Any = None) -> DataFrame:
    return sessions(
        spark.createDataFrame(events, CLICKS),
        spark.createDataFrame(
            PRICED_ORDERS, "order_id string, status string, amount_usd decimal(38,14)"
        ),
        spark.createDataFrame(
            DIM_CUSTOMERS, "customer_id string, customer_key long, valid_from timestamp"
        ),
        scope,
    )


def _rows(df: DataFrame, key: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in df.orderBy(key).collect()]


S1 = (
    "S1",
    date(2024, 1, 1),
    ts("2024-01-01 23:58:00"),
    ts("2024-01-02 00:03:30"),
    330,
    6,
    1,
    2,
    1,
    1,
    1,
    2,
    True,
    102,
    True,
    1,
    D("50.13"),
)
S2 = (
    "S2",
    date(2024, 1, 2),
    ts("2024-01-02 10:00:00"),
    ts("2024-01-02 10:00:40.900"),
    40,  # whole seconds of 40.9
    4,
    1,
    2,
    1,
    0,
    0,
    1,  # P1 viewed twice is one product
    False,
    None,
    False,
    0,
    D("0.00"),
)
S3 = (
    "S3",
    date(2024, 1, 2),
    ts("2024-01-02 12:00:00"),
    ts("2024-01-02 12:00:07"),
    7,
    4,
    0,
    0,
    0,
    1,
    3,
    0,
    True,  # the latest event with a customer (e13) names C2
    201,
    True,
    1,  # O2 once; O3 is cancelled
    D("0.00"),  # O2 has no rate yet
)


def test_every_column_of_each_session(spark: SparkSession) -> None:
    out = _sessions(spark, EVENTS)
    assert out.columns == list(SESSION_COLUMNS)
    assert _rows(out, "session_id") == [S1, S2, S3]


def test_a_late_event_before_midnight_moves_its_session_to_the_day_before(
    spark: SparkSession,
) -> None:
    late = click("e00", "2024-01-01 23:59:30", "S2", "page_view")
    out = _sessions(spark, [*EVENTS, late])
    s2 = next(r for r in _rows(out, "session_id") if r[0] == "S2")
    # 23:59:30 to 10:00:40.900 the next day: 10 h 1 min 10.9 s
    assert s2[:7] == (
        "S2",
        date(2024, 1, 1),
        ts("2024-01-01 23:59:30"),
        ts("2024-01-02 10:00:40.900"),
        36070,
        5,
        2,
    )


def test_the_scope_keeps_the_sessions_that_start_on_its_dates(spark: SparkSession) -> None:
    out = _sessions(spark, EVENTS, [date(2024, 1, 2)])
    assert _rows(out, "session_id") == [S2, S3]


def test_the_customer_is_the_one_on_the_latest_event_that_names_one(
    spark: SparkSession,
) -> None:
    events = [
        click("f1", "2024-01-03 09:00:00", "S9", "page_view", "C2"),
        click("f2", "2024-01-03 09:05:00", "S9", "page_view", "C1"),
        click("f3", "2024-01-03 09:06:00", "S9", "page_view"),
    ]
    row = _sessions(spark, events).collect()[0]
    assert (row.is_known, row.customer_key) == (True, 102)


FUNNEL_IN = (
    "session_date date, page_views long, product_views long, add_to_carts long, "
    "checkouts long, purchases long"
)


def test_the_funnel_counts_sessions_per_step_and_rounds_its_rates_half_up(
    spark: SparkSession,
) -> None:
    a, b, c = date(2024, 2, 1), date(2024, 2, 2), date(2024, 2, 3)
    rows = [
        (a, 1, 1, 0, 0, 0),
        (a, 1, 1, 0, 0, 0),
        (a, 1, 0, 0, 0, 0),
        (b, 1, 1, 1, 1, 1),
        (b, 0, 1, 2, 0, 0),  # cart abandoned
        (b, 1, 1, 1, 1, 0),  # abandoned at the checkout
        (c, 0, 0, 0, 0, 1),  # 1 / 32 = 0.03125: half-up 0.0313 (half-even would say 0.0312)
        *[(c, 0, 0, 0, 0, 0)] * 31,
    ]
    out = daily_funnel(spark.createDataFrame(rows, FUNNEL_IN))
    assert out.columns == [
        "session_date",
        "sessions",
        "with_page_view",
        "with_product_view",
        "with_add_to_cart",
        "with_checkout",
        "with_purchase",
        "view_rate",
        "cart_rate",
        "checkout_rate",
        "purchase_rate",
        "conversion_rate",
        "cart_abandonment_rate",
    ]
    assert _rows(out, "session_date") == [
        (a, 3, 3, 2, 0, 0, 0, D("0.6667"), D("0.0000"), None, None, D("0.0000"), None),
        (
            b,
            3,
            2,
            3,
            3,
            2,
            1,
            D("1.0000"),
            D("1.0000"),
            D("0.6667"),
            D("0.5000"),
            D("0.3333"),
            D("0.6667"),
        ),
        (c, 32, 0, 0, 0, 0, 1, D("0.0000"), None, None, None, D("0.0313"), None),
    ]


def test_the_funnel_of_the_fixture_sessions(spark: SparkSession) -> None:
    out = daily_funnel(_sessions(spark, EVENTS))
    one, two = date(2024, 1, 1), date(2024, 1, 2)
    # 2024-01-02: S2 abandons its cart, S3 checks out and buys without a view
    assert _rows(out, "session_date") == [
        (one, 1, 1, 1, 1, 1, 1, *[D("1.0000")] * 5, D("0.0000")),
        (two, 2, 1, 1, 1, 1, 1, D("0.5000"), *[D("1.0000")] * 3, D("0.5000"), D("1.0000")),
    ]


def test_product_engagement_counts_views_carts_and_purchased_lines_per_day(
    spark: SparkSession,
) -> None:
    events = [
        click("g1", "2024-01-01 08:00:00", "T1", "page_view"),
        click("g2", "2024-01-01 08:01:00", "T1", "product_view", product="P1"),
        click("g3", "2024-01-01 08:02:00", "T1", "product_view", product="P1"),
        click("g4", "2024-01-01 08:03:00", "T1", "add_to_cart", product="P1"),
        click("g5", "2024-01-01 23:59:59", "T2", "product_view", product="P2"),
        click("g6", "2024-01-02 00:00:01", "T2", "product_view", product="P1"),
        click("g7", "2024-01-02 00:00:02", "T2", "product_view", product="P1"),
        click("g8", "2024-01-02 00:00:03", "T2", "product_view", product="P1"),
        click("g9", "2024-01-02 07:00:00", "T3", "product_view", product="P2"),
        click("ga", "2024-01-02 07:00:01", "T3", "purchase", order="O4"),
    ]
    orders = spark.createDataFrame(
        [
            ("O1", date(2024, 1, 1), "placed"),
            ("O2", date(2024, 1, 1), "cancelled"),
            ("O3", date(2024, 1, 2), "shipped"),
            ("O4", date(2024, 1, 2), "returned"),
        ],
        "order_id string, order_date date, status string",
    )
    items = spark.createDataFrame(
        [
            ("O1", "P1"),
            ("O1", "P3"),
            ("O2", "P1"),  # cancelled: not a purchase
            ("O3", "P1"),
            ("O3", "P1"),
            ("O4", "P2"),
            ("O4", "P2"),
            ("O4", "P2"),
        ],
        "order_id string, product_id string",
    )
    out = product_engagement(spark.createDataFrame(events, CLICKS), orders, items)
    assert out.columns == [
        "date",
        "product_id",
        "views",
        "add_to_carts",
        "purchases",
        "view_to_purchase_rate",
    ]
    assert sorted(tuple(r) for r in out.collect()) == [
        (date(2024, 1, 1), "P1", 2, 1, 1, D("0.5000")),
        (date(2024, 1, 1), "P2", 1, 0, 0, D("0.0000")),
        (date(2024, 1, 1), "P3", 0, 0, 1, None),
        (date(2024, 1, 2), "P1", 3, 0, 2, D("0.6667")),
        (date(2024, 1, 2), "P2", 1, 0, 3, D("3.0000")),
    ]


@pytest.mark.parametrize("kind", ["page_view", "checkout", "purchase"])
def test_events_without_a_product_add_no_engagement_row(spark: SparkSession, kind: str) -> None:
    events = [click("h1", "2024-01-01 08:00:00", "T1", kind, order="O9")]
    empty_orders = spark.createDataFrame([], "order_id string, order_date date, status string")
    empty_items = spark.createDataFrame([], "order_id string, product_id string")
    out = product_engagement(spark.createDataFrame(events, CLICKS), empty_orders, empty_items)
    assert out.count() == 0


def test_the_dashboards_products_are_the_most_bought_then_the_most_viewed(
    spark: SparkSession,
) -> None:
    rows = [
        (date(2024, 1, 1), "P1", 10, 2, 1),
        (date(2024, 1, 2), "P1", 5, 1, 2),  # P1: 15 views, 3 lines
        (date(2024, 1, 1), "P2", 3, 0, 3),  # P2: 3 lines, fewer views than P1
        (date(2024, 1, 1), "P3", 0, 0, 3),  # P3: 3 lines, no views: no rate
        (date(2024, 1, 1), "P4", 40, 9, 0),
        (date(2024, 1, 1), "P5", 7, 1, 0),  # left out by n = 4
    ]
    engagement = spark.createDataFrame(
        rows, "date date, product_id string, views long, add_to_carts long, purchases long"
    )
    assert [tuple(r) for r in top_products(engagement, 4).collect()] == [
        ("P1", 15, 3, 3, D("0.2000")),
        ("P2", 3, 0, 3, D("1.0000")),
        ("P3", 0, 0, 3, None),
        ("P4", 40, 9, 0, D("0.0000")),
    ]


def test_a_step_reached_by_more_sessions_than_the_one_before_has_a_rate_over_1(
    spark: SparkSession,
) -> None:
    day = date(2024, 3, 1)
    rows = [(day, 1, 1, 0, 0, 0), *[(day, 0, 0, 1, 0, 0)] * 12]  # 12 carts, 1 view
    (row,) = daily_funnel(spark.createDataFrame(rows, FUNNEL_IN)).collect()
    assert (row.with_product_view, row.with_add_to_cart, row.cart_rate) == (1, 12, D("12.0000"))
    assert row.cart_abandonment_rate == D("1.0000")
