"""Money building blocks shared by the star schema and the KPIs: line and order amounts, and USD
conversion at the FX rate of a date with fallback to the newest earlier rate of the currency.

Decimal types are chosen so that every product is exact whatever
`spark.sql.decimalOperations.allowPrecisionLoss` says: Spark only trims scale when a result needs
more than 38 digits, and none of these do.

- `LINE_AMOUNT` decimal(19,6): `quantity * unit_price * (1 - discount)` has exactly 2 + 4 = 6
  decimals; 13 integer digits are far above any order line or order.
- `RATE` decimal(18,8): silver's `rate_to_usd`.
- `USD_AMOUNT` decimal(38,14): `LINE_AMOUNT * RATE` is decimal(19+18+1, 6+8), exact; sums stay at
  (38,14), 24 integer digits.
- `PAYMENT_USD` decimal(38,10): payment amount decimal(18,2) times `RATE` is (37,10), exact.
- `MONEY` decimal(18,2): the final per-day figures, rounded half-up (`F.round`) once.

Room: an order line or order up to 10^13 in its currency, a day up to 10^16 USD (the average
order value of a day up to 10^14 USD of revenue, see `kpis`); sums of USD amounts hold 10^24.
Spark with ANSI mode off turns a decimal that does not fit its type into NULL, silently: every
place a money value is cast, summed or rounded goes through `fits`, `money_sum` or
`round_money`, which fail the query with a `money overflow` error instead, so a figure beyond
these bounds stops the run before anything is published (docs/GOLD.md, "Decimals").
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

LINE_AMOUNT = DecimalType(19, 6)
RATE = DecimalType(18, 8)
USD_AMOUNT = DecimalType(38, 14)
PAYMENT_USD = DecimalType(38, 10)
MONEY = DecimalType(18, 2)
RATIO = DecimalType(5, 4)
COUNT = DecimalType(10, 0)

USD = "USD"


def is_counted(status: Column | str = "status") -> Column:
    """A counted order is one whose current status is not `cancelled`."""
    col = F.col(status) if isinstance(status, str) else status
    return ~col.eqNullSafe(F.lit("cancelled"))


OVERFLOW = "money overflow"


def fits(value: Column, source: Column, what: str | Column) -> Column:
    """`value` (a cast or product of `source`), or a failed query naming `what` when it is null
    although `source` is not: the value did not fit its decimal type (Spark, ANSI mode off,
    would publish NULL)."""
    label = F.lit(what) if isinstance(what, str) else what
    return F.when(
        value.isNull() & source.isNotNull(),
        F.raise_error(F.concat(F.lit(f"{OVERFLOW}: "), label, F.lit(" does not fit its type"))),
    ).otherwise(value)


def money_sum(amount: Column, what: str) -> Column:
    """The sum of `amount` (an aggregate; 0 when there is none), failing the query when the sum
    overflows its type instead of becoming null."""
    total = F.sum(amount)
    return F.when(
        total.isNull() & (F.count(amount) > 0),
        F.raise_error(F.lit(f"{OVERFLOW}: the sum of {what} does not fit its type")),
    ).otherwise(F.coalesce(total, F.lit(0)))


def round_money(amount: Column, what: str | Column = "a money figure") -> Column:
    """Half-up rounding to 2 decimals (Spark's `round` is HALF_UP on decimals), as `MONEY`;
    a figure beyond `MONEY` fails the query (`fits`)."""
    return fits(F.round(amount, 2).cast(MONEY), amount, what)


def ratio(numerator: Column, denominator: Column, of: DecimalType = RATIO) -> Column:
    """`numerator / denominator` of two counts as `of` (decimal(5,4): at most 9.9999, for a
    fraction), rounded half-up to 4 decimals; null when the denominator is 0. decimal(10,0) /
    decimal(10,0) is decimal(21,11) before rounding: exact enough that rounding once gives the
    true half-up result. A quotient too large for `of` fails the query (`fits`), never null."""
    quotient = F.round(numerator.cast(COUNT) / denominator.cast(COUNT), 4)
    return F.when(denominator == 0, F.lit(None).cast(of)).otherwise(
        fits(quotient.cast(of), quotient, "a ratio")
    )


def line_amounts(items: DataFrame) -> DataFrame:
    """Add `line_amount` (`LINE_AMOUNT`, order currency) = `quantity * unit_price * (1 - discount)`.

    In: order items with `quantity` int, `unit_price` decimal(18,2), `discount` decimal(5,4).
    Out: the same columns plus `line_amount`.
    """
    one = F.lit(1).cast(DecimalType(1, 0))
    amount = F.col("quantity").cast(COUNT) * F.col("unit_price") * (one - F.col("discount"))
    what = (
        F.concat(F.lit("the line amount of order "), F.col("order_id"))
        if "order_id" in items.columns
        else "an order line amount"
    )
    return items.withColumn("line_amount", fits(amount.cast(LINE_AMOUNT), amount, what))


def order_amounts(orders: DataFrame, items: DataFrame) -> DataFrame:
    """Add `amount` (`LINE_AMOUNT`): the sum of the order's line amounts, 0 for an order with no
    items.

    In: `orders` with `order_id` (one row per order, any other columns kept); `items` with
    `order_id`, `quantity`, `unit_price`, `discount`.
    Out: `orders`' columns plus `amount`.
    """
    sums = (
        line_amounts(items)
        .groupBy("order_id")
        .agg(money_sum(F.col("line_amount"), "an order's line amounts").alias("_sum"))
        .select(
            "order_id",
            fits(
                F.col("_sum").cast(LINE_AMOUNT),
                F.col("_sum"),
                F.concat(F.lit("the amount of order "), F.col("order_id")),
            ).alias("amount"),
        )
    )
    return orders.join(sums, "order_id", "left").withColumn(
        "amount", F.coalesce(F.col("amount"), F.lit(0).cast(LINE_AMOUNT))
    )


def rate_calendar(fx_rates: DataFrame, dates: DataFrame) -> DataFrame:
    """The rate of every non-USD currency for every day from its first rate up to the newest date
    in `dates`: a day without its own rate takes the newest earlier one.

    In: `fx_rates` live silver rows with `rate_date` date, `currency`, `rate_to_usd` decimal(18,8);
    `dates` with a `date` column (the days that will be priced; only its maximum is used).
    Out: `currency`, `date`, `rate_to_usd` (`RATE`), `fx_rate_date` (the `rate_date` used).
    """
    through = dates.agg(F.max("date").alias("_through"))
    by_currency = Window.partitionBy("currency").orderBy("rate_date")
    ranges = (
        fx_rates.where(F.col("currency") != USD)
        .select("currency", "rate_date", F.col("rate_to_usd").cast(RATE).alias("rate_to_usd"))
        .withColumn("_next", F.lead("rate_date").over(by_currency))
        .crossJoin(through)
    )
    last_day = F.coalesce(F.date_sub(F.col("_next"), 1), F.col("_through"), F.col("rate_date"))
    # greatest(): a rate newer than every priced day still yields its own day, never a
    # descending sequence.
    days = F.sequence(F.col("rate_date"), F.greatest(F.col("rate_date"), last_day))
    return ranges.select(
        "currency",
        F.explode(days).alias("date"),
        "rate_to_usd",
        F.col("rate_date").alias("fx_rate_date"),
    )


def with_usd_rate(df: DataFrame, calendar: DataFrame, date_col: str) -> DataFrame:
    """Add `rate_to_usd` (`RATE`, 1 for USD, null when the currency has no rate on or before the
    date) and `fx_rate_date` (the rate's date; null for USD and when unpriced).

    In: `df` with `currency` and `date_col`; `calendar` from `rate_calendar`.
    Out: `df`'s columns plus `rate_to_usd`, `fx_rate_date`.
    """
    cal = calendar.select(
        F.col("currency").alias("_cal_currency"),
        F.col("date").alias("_cal_date"),
        F.col("rate_to_usd").alias("_cal_rate"),
        F.col("fx_rate_date").alias("_cal_rate_date"),
    )
    joined = df.join(
        cal,
        (F.col("currency") == F.col("_cal_currency")) & (F.col(date_col) == F.col("_cal_date")),
        "left",
    )
    is_usd = F.col("currency") == USD
    return joined.select(
        *df.columns,
        F.when(is_usd, F.lit(1).cast(RATE)).otherwise(F.col("_cal_rate")).alias("rate_to_usd"),
        F.when(is_usd, F.lit(None).cast("date"))
        .otherwise(F.col("_cal_rate_date"))
        .alias("fx_rate_date"),
    )


def priced_orders(orders: DataFrame, items: DataFrame, calendar: DataFrame) -> DataFrame:
    """Orders with their amount in order currency and in USD at the order date's rate.

    In: live `orders` (`order_id`, `customer_id`, `order_date`, `status`, `currency`, ...);
    live `items` (`order_id`, `quantity`, `unit_price`, `discount`); `calendar` from
    `rate_calendar`.
    Out: `order_id`, `customer_id`, `order_date`, `status`, `currency`, `amount` (`LINE_AMOUNT`),
    `rate_to_usd`, `fx_rate_date`, `amount_usd` (`USD_AMOUNT`, null when unpriced).
    """
    base = orders.select("order_id", "customer_id", "order_date", "status", "currency")
    return with_usd_rate(order_amounts(base, items), calendar, "order_date").withColumn(
        "amount_usd", (F.col("amount") * F.col("rate_to_usd")).cast(USD_AMOUNT)
    )
