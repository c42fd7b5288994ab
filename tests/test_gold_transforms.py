"""gold transforms on tiny inline DataFrames: decimal exactness, FX fallback, the date dimension
and the affected-key rules of incremental runs (contracts/metrics.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from lakehouse.gold import incremental as inc
from lakehouse.gold.kpis import daily_kpis, daily_payments
from lakehouse.gold.pricing import (
    line_amounts,
    money_sum,
    order_amounts,
    rate_calendar,
    with_usd_rate,
)
from lakehouse.gold.star import dim_date

D = Decimal
date = dt.date

FX_SCHEMA = StructType(
    [
        StructField("rate_date", DateType()),
        StructField("currency", StringType()),
        StructField("rate_to_usd", DecimalType(18, 8)),
    ]
)


@pytest.fixture
def no_precision_loss(spark: SparkSession) -> Iterator[None]:
    key = "spark.sql.decimalOperations.allowPrecisionLoss"
    before = spark.conf.get(key)
    spark.conf.set(key, "false")
    yield
    spark.conf.set(key, before)


def _usd_lines(spark: SparkSession) -> list[tuple[Decimal, Decimal]]:
    items = spark.createDataFrame(
        [(999, D("12345678.99"), D("0.3333"), "EUR", date(2025, 1, 1))],
        "quantity int, unit_price decimal(18,2), discount decimal(5,4), currency string, "
        "order_date date",
    )
    fx = spark.createDataFrame([(date(2025, 1, 1), "EUR", D("1.23456789"))], FX_SCHEMA)
    calendar = rate_calendar(fx, items.select(F.col("order_date").alias("date")))
    priced = with_usd_rate(line_amounts(items), calendar, "order_date")
    return [
        (r.line_amount, r.usd)
        for r in priced.select(
            "line_amount", (F.col("line_amount") * F.col("rate_to_usd")).alias("usd")
        ).collect()
    ]


EXACT_LINE = D("999") * D("12345678.99") * (1 - D("0.3333"))  # 8224618513.3236667
EXPECTED = [(EXACT_LINE, EXACT_LINE * D("1.23456789"))]


def test_line_and_usd_amounts_are_exact(spark: SparkSession) -> None:
    # 8224618513.323667 * 1.23456789 keeps all 14 decimals: no rounding before the daily figure
    assert _usd_lines(spark) == EXPECTED


def test_amounts_do_not_depend_on_allow_precision_loss(
    spark: SparkSession, no_precision_loss: None
) -> None:
    assert _usd_lines(spark) == EXPECTED


# --- money at the limits of its types (pricing.py): a value never turns into NULL -------------

PRICED = (
    "order_id string, customer_id string, order_date date, status string, "
    "amount_usd decimal(38,14), rate_to_usd decimal(18,8)"
)
FIRSTS = "customer_id string, first_order_date date"


def _kpis(spark: SparkSession, amounts: list[Decimal]) -> list[tuple[object, ...]]:
    day = date(2025, 1, 2)
    orders = spark.createDataFrame(
        [(f"o{i}", f"c{i}", day, "paid", a, D(1)) for i, a in enumerate(amounts)], PRICED
    )
    firsts = spark.createDataFrame([(f"c{i}", day) for i in range(len(amounts))], FIRSTS)
    return [
        (r.gross_revenue_usd, r.net_revenue_usd, r.avg_order_value_usd)
        for r in daily_kpis(orders, firsts).collect()
    ]


def test_a_marketplace_sized_day_has_its_average_order_value(spark: SparkSession) -> None:
    # $21 billion over three orders once overflowed decimal(24,14) into a NULL average.
    amounts = [D("7000000000.00000000000001"), D("7000000000"), D("7000000000.01499999999999")]
    assert _kpis(spark, amounts) == [(D("21000000000.02"), D("21000000000.02"), D("7000000000.01"))]


def test_the_average_is_exact_half_up_at_the_largest_day_it_takes(spark: SparkSession) -> None:
    # Just under 10^14 over 3 orders: the exact average 33333333333333.32499999999999666... is
    # 3.3 * 10^-15 under the half cent, so rounding it to 14 decimals first would round it up.
    amounts = [D("33333333333333.32499999999999"), D("33333333333333.325"), D("33333333333333.325")]
    assert _kpis(spark, amounts) == [
        (D("99999999999999.97"), D("99999999999999.97"), D("33333333333333.32"))
    ]


def test_a_day_beyond_the_money_types_fails_instead_of_publishing_null(
    spark: SparkSession,
) -> None:
    with pytest.raises(Exception, match=r"money overflow: .* of 2025-01-02 does not fit its type"):
        _kpis(spark, [D("60000000000000000"), D("60000000000000000")])
    with pytest.raises(Exception, match="money overflow: the revenue used for the average"):
        _kpis(spark, [D("200000000000000")])


def test_payments_beyond_the_money_type_fail_the_query(spark: SparkSession) -> None:
    payments = spark.createDataFrame(
        [(date(2025, 1, 3), "captured", D("20000000000000000"), D(1))],
        "event_date date, event_type string, amount_usd decimal(38,10), rate_to_usd decimal(18,8)",
    )
    with pytest.raises(Exception, match="money overflow: captured_usd of 2025-01-03"):
        daily_payments(payments).collect()


def test_an_order_line_too_large_for_its_type_fails_the_query(spark: SparkSession) -> None:
    items = spark.createDataFrame(
        [("o1", 2_000_000_000, D("99999.99"), D("0"))],
        "order_id string, quantity int, unit_price decimal(18,2), discount decimal(5,4)",
    )
    with pytest.raises(Exception, match="money overflow: the line amount of order o1"):
        line_amounts(items).collect()
    lines = [("o2", 1, D("9000000000000.00"), D("0")), ("o2", 1, D("2000000000000.00"), D("0"))]
    too_much = spark.createDataFrame(lines, items.schema)
    orders = spark.createDataFrame([("o2",)], "order_id string")
    with pytest.raises(Exception, match="money overflow: the amount of order o2"):
        order_amounts(orders, too_much).collect()


def test_a_sum_beyond_its_type_fails_and_an_empty_sum_is_zero(spark: SparkSession) -> None:
    big = spark.createDataFrame(
        [(D("600000000000000000000000"),), (D("600000000000000000000000"),)],
        "amount decimal(38,14)",
    )
    with pytest.raises(Exception, match="money overflow: the sum of the test amounts"):
        big.agg(money_sum(F.col("amount"), "the test amounts")).collect()
    empty = big.where("amount < 0").agg(money_sum(F.col("amount"), "the test amounts"))
    assert empty.first()[0] == 0


def test_fx_falls_back_to_the_newest_earlier_rate_of_the_currency(spark: SparkSession) -> None:
    fx = spark.createDataFrame(
        [
            (date(2025, 1, 1), "EUR", D("1.10")),
            (date(2025, 1, 5), "EUR", D("1.20")),
            (date(2025, 1, 3), "GBP", D("1.30")),
            (date(2025, 1, 1), "USD", D("9.99")),  # ignored: USD is always 1
        ],
        FX_SCHEMA,
    )
    days = spark.createDataFrame(
        [
            ("EUR", date(2024, 12, 31)),  # before the first EUR rate: unpriced
            ("EUR", date(2025, 1, 1)),
            ("EUR", date(2025, 1, 4)),  # falls back to 01-01
            ("EUR", date(2025, 1, 5)),
            ("EUR", date(2025, 1, 9)),  # falls back to 01-05
            ("GBP", date(2025, 1, 2)),  # before the only GBP rate: unpriced
            ("USD", date(2025, 1, 2)),
        ],
        "currency string, day date",
    )
    got = with_usd_rate(days, rate_calendar(fx, days.select(F.col("day").alias("date"))), "day")
    expected = spark.createDataFrame(
        [
            ("EUR", date(2024, 12, 31), None, None),
            ("EUR", date(2025, 1, 1), D("1.10"), date(2025, 1, 1)),
            ("EUR", date(2025, 1, 4), D("1.10"), date(2025, 1, 1)),
            ("EUR", date(2025, 1, 5), D("1.20"), date(2025, 1, 5)),
            ("EUR", date(2025, 1, 9), D("1.20"), date(2025, 1, 5)),
            ("GBP", date(2025, 1, 2), None, None),
            ("USD", date(2025, 1, 2), D("1"), None),
        ],
        "currency string, day date, rate_to_usd decimal(18,8), fx_rate_date date",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_dim_date_has_iso_weeks_across_the_year_boundary(spark: SparkSession) -> None:
    dates = spark.createDataFrame([(date(2024, 12, 29),), (date(2025, 1, 1),)], "date date")
    got = dim_date(dates).select(
        "date_key",
        "date",
        "year",
        "quarter",
        "month",
        "day_of_week",
        "weekday_name",
        "iso_year",
        "iso_week",
        "is_weekend",
    )
    schema = StructType(
        [
            StructField("date_key", IntegerType()),
            StructField("date", DateType()),
            StructField("year", IntegerType()),
            StructField("quarter", IntegerType()),
            StructField("month", IntegerType()),
            StructField("day_of_week", IntegerType()),
            StructField("weekday_name", StringType()),
            StructField("iso_year", IntegerType()),
            StructField("iso_week", IntegerType()),
            StructField("is_weekend", BooleanType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            # Sunday 2024-12-29 closes ISO week 52 of 2024
            (20241229, date(2024, 12, 29), 2024, 4, 12, 7, "Sunday", 2024, 52, True),
            # Monday 2024-12-30 opens ISO week 1 of 2025
            (20241230, date(2024, 12, 30), 2024, 4, 12, 1, "Monday", 2025, 1, False),
            (20241231, date(2024, 12, 31), 2024, 4, 12, 2, "Tuesday", 2025, 1, False),
            (20250101, date(2025, 1, 1), 2025, 1, 1, 3, "Wednesday", 2025, 1, False),
        ],
        schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_an_fx_change_affects_days_up_to_the_next_rate_of_its_currency(
    spark: SparkSession,
) -> None:
    fx_now = spark.createDataFrame(
        [
            (date(2025, 1, 1), "EUR", D("1.1")),
            (date(2025, 1, 5), "EUR", D("1.2")),
            (date(2025, 1, 1), "GBP", D("1.3")),
        ],
        FX_SCHEMA,
    )
    changes = fx_now.where("currency = 'EUR' AND rate_date = '2025-01-01'")
    orders = spark.createDataFrame(
        [
            ("EUR", date(2024, 12, 31)),
            ("EUR", date(2025, 1, 1)),
            ("EUR", date(2025, 1, 4)),
            ("EUR", date(2025, 1, 5)),
            ("GBP", date(2025, 1, 2)),
        ],
        "currency string, order_date date",
    )
    got = inc.dates_in_ranges(orders, "order_date", inc.fx_change_ranges(changes, fx_now))
    expected = spark.createDataFrame([(date(2025, 1, 1),), (date(2025, 1, 4),)], "date date")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_late_earlier_order_affects_the_customer_s_old_first_order_date(
    spark: SparkSession,
) -> None:
    orders = spark.createDataFrame(
        [
            ("a1", "c1", date(2025, 1, 10), "paid"),
            ("a2", "c1", date(2025, 1, 20), "paid"),
            ("a0", "c1", date(2025, 1, 2), "paid"),  # arrived late
            ("b1", "c2", date(2025, 1, 15), "paid"),  # c2 untouched
        ],
        "order_id string, customer_id string, order_date date, status string",
    )
    changes = orders.where("order_id = 'a0'")
    got = inc.first_order_shift_dates(changes, orders)
    # c1's first order is now 01-02 and was 01-10 (earliest unchanged): both days change
    expected = spark.createDataFrame([(date(2025, 1, 2),), (date(2025, 1, 10),)], "date date")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_new_customer_version_affects_that_customer_s_orders_from_its_start_only(
    spark: SparkSession,
) -> None:
    from datetime import datetime

    orders = spark.createDataFrame(
        [
            ("a1", "c1", date(2024, 3, 1)),  # a year before the change: keeps its version
            ("a2", "c1", date(2025, 2, 28)),
            ("a3", "c1", date(2025, 3, 1)),  # the day the new version starts
            ("a4", "c1", date(2025, 3, 2)),
            ("b1", "c2", date(2024, 3, 1)),  # c2: a late version back-dated to 2024
            ("b2", "c2", date(2024, 2, 1)),
            ("d1", "c3", date(2025, 3, 5)),  # c3 untouched
        ],
        "order_id string, customer_id string, order_date date",
    )
    # Both images of the closed version (its valid_to set) and the new version, as the CDF has
    # them; c2's new version starts in 2024 (a late event).
    changes = spark.createDataFrame(
        [
            ("c1", datetime(2024, 1, 1), None, "update_preimage"),
            ("c1", datetime(2024, 1, 1), datetime(2025, 3, 1, 9), "update_postimage"),
            ("c1", datetime(2025, 3, 1, 9), None, "insert"),
            ("c2", datetime(2024, 2, 20), None, "insert"),
        ],
        "customer_id string, valid_from timestamp, valid_to timestamp, _change_type string",
    )

    got = inc.order_dates_since(
        orders, "customer_id", inc.version_change_starts(changes, "customer_id")
    )

    expected = spark.createDataFrame(
        [(date(2025, 3, 1),), (date(2025, 3, 2),), (date(2024, 3, 1),)], "date date"
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_customer_deleted_or_restored_affects_all_their_orders(spark: SparkSession) -> None:
    changes = spark.createDataFrame(
        [
            ("c1", False, "update_preimage"),
            ("c1", True, "update_postimage"),  # deleted
            ("c2", True, "update_preimage"),
            ("c2", False, "update_postimage"),  # restored
            ("c3", False, "insert"),  # a new customer: no order of theirs moves
        ],
        "customer_id string, _is_deleted boolean, _change_type string",
    )

    got = inc.deleted_or_restored(changes, "customer_id")

    assert sorted(r.customer_id for r in got.collect()) == ["c1", "c2"]


def test_only_orders_that_appear_go_or_cross_cancelled_change_their_sessions(
    spark: SparkSession,
) -> None:
    d1, d2 = date(2024, 1, 1), date(2024, 1, 2)
    changes = spark.createDataFrame(
        [
            ("new", "placed", "EUR", d1, False, "insert"),
            ("shipped", "placed", "EUR", d1, False, "update_preimage"),
            ("shipped", "shipped", "EUR", d1, False, "update_postimage"),
            ("cancelled", "placed", "EUR", d1, False, "update_preimage"),
            ("cancelled", "cancelled", "EUR", d1, False, "update_postimage"),
            ("tombstone", "placed", "EUR", d1, False, "update_preimage"),
            ("tombstone", "placed", "EUR", d1, True, "update_postimage"),
            ("moved", "placed", "EUR", d1, False, "update_preimage"),
            ("moved", "placed", "EUR", d2, False, "update_postimage"),
            ("repriced", "paid", "EUR", d1, False, "update_preimage"),
            ("repriced", "paid", "USD", d1, False, "update_postimage"),
            ("returned", "delivered", "EUR", d1, False, "update_preimage"),
            ("returned", "returned", "EUR", d1, False, "update_postimage"),
        ],
        "order_id string, status string, currency string, order_date date, "
        "_is_deleted boolean, _change_type string",
    )
    got = {r.order_id for r in inc.attribution_changes(changes).collect()}
    assert got == {"new", "cancelled", "tombstone", "moved", "repriced"}
