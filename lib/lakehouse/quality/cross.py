"""Cross-table checks computed with Spark joins. Each returns the offending rows as a DataFrame
and the fraction of checked rows (or keys) that passed."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.quality.suites import EqualsAggregateSpec, ExistsInSpec, ReconcilesSpec, SideSpec

Reader = Callable[[str], DataFrame]


def exists_in(
    df: DataFrame, spec: ExistsInSpec, read: Reader, *, scoped: bool = False
) -> tuple[DataFrame, float]:
    """Rows of `df` whose non-null `spec.column` is absent from `spec.table`; the fraction
    present (1.0 for no rows). `scoped`: `df` is a run's rows, so the parent table is searched
    for their values only (its key column, joined with them: Spark broadcasts them when its
    statistics say they are small, and a day's rows usually are)."""
    ref = spec.ref_column or spec.column
    checked = df.where(F.col(spec.column).isNotNull())
    parents = read(spec.table).select(F.col(ref).alias(spec.column))
    if scoped:
        parents = _restrict(parents, spec.column, checked.select(spec.column).distinct())
    present = parents.distinct().withColumn("_present", F.lit(True))
    joined = checked.join(present, spec.column, "left")
    absent = F.col("_present").isNull()
    # The checked column first (as a left-anti join put it): the report shows it first.
    missing = joined.where(absent).drop("_present")
    return missing, _judged(joined, absent)


def _restrict(rows: DataFrame, column: str, keys: DataFrame | None) -> DataFrame:
    """`rows` whose `column` is among `keys`' (a one-column frame); all of them without. No
    broadcast hint: a big day's keys would not fit the driver, and Spark broadcasts a small
    (cached, measured) set by itself."""
    if keys is None:
        return rows
    wanted = keys.select(F.col(keys.columns[0]).alias(column))
    return rows.join(wanted, column, "left_semi")


def _side_sums(
    side: SideSpec,
    default_table: str,
    key: str,
    alias: str,
    read: Reader,
    keys: DataFrame | None = None,
) -> DataFrame:
    rows = read(side.table or default_table)
    if side.where:
        rows = rows.where(F.expr(side.where))
    source_key = side.key or key
    rows = _restrict(rows, source_key, keys)
    return rows.groupBy(F.col(source_key).alias(key)).agg(F.sum(F.expr(side.value)).alias(alias))


def reconciles(
    table: str, spec: ReconcilesSpec, read: Reader, *, keys: DataFrame | None = None
) -> tuple[DataFrame, float]:
    """Keys whose left sum differs from the right sum (0 when absent) by more than the
    tolerance: `key`, `left_total`, `right_total`, `difference`; the fraction of keys within it.
    `keys` (one column): compare only these keys (a run's)."""
    left = _side_sums(spec.left, table, spec.key, "left_total", read, keys)
    right = _side_sums(spec.right, table, spec.key, "right_total", read, keys)
    joined = left.join(right, spec.key, "left").withColumn(
        "difference",
        F.abs(F.col("left_total") - F.coalesce(F.col("right_total"), F.lit(0))),
    )
    off = F.col("left_total").isNull() | (F.col("difference") > F.lit(spec.tolerance))
    return joined.where(off), _judged(joined, off)


def equals_aggregate(
    df: DataFrame,
    table: str,
    spec: EqualsAggregateSpec,
    read: Reader,
    *,
    keys: DataFrame | None = None,
) -> tuple[DataFrame, float]:
    """Keys where `df.column` differs from the source's sum rounded half-up (Spark's `round` on
    decimals is HALF_UP) or exists on one side only: `key`, `actual`, `expected`; the fraction of
    keys that match. `keys` (one column): compare only these keys (a run's rows in `df`)."""
    actual = df.select(F.col(spec.key), F.col(spec.column).alias("actual"))
    expected = _side_sums(spec.source, table, spec.key, "_sum", read, keys).select(
        spec.key, F.round(F.col("_sum"), spec.decimals).alias("expected")
    )
    joined = actual.join(expected, spec.key, "full_outer")
    matches = F.coalesce(F.col("actual") == F.coalesce(F.col("expected"), F.lit(0)), F.lit(False))
    return joined.where(~matches), _judged(joined, ~matches)


def _judged(joined: DataFrame, bad: Column) -> float:
    """The fraction of `joined`'s rows not `bad` (1.0 for no rows), in one aggregation (two
    counts, of the rows and of the bad ones, ran the join twice)."""
    row = joined.agg(F.count(F.lit(1)).alias("total"), F.sum(bad.cast("long")).alias("bad")).first()
    assert row is not None
    total, failed = int(row["total"]), int(row["bad"] or 0)
    return 1.0 if total == 0 else (total - failed) / total
