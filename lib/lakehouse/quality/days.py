"""Day-level anomaly checks (`day_anomaly` in a suite): a metric per day against its own history.

A whole-table size check cannot see a bad day: a silver table of two years grows by a fraction of
a percent whether a day came in full, half or not at all. So these checks aggregate the metric
per day (orders, revenue, records per source, a null rate) and compare each day the run touched
with the median of the days before it:

    low  = median * (1 - max_decrease) - slack
    high = median * (1 + max_increase) + slack

The median of the last `history_days` days (those that have rows) is robust to the odd bad day
in the history itself. A day with fewer than `min_history` earlier days is not judged (a young
lakehouse); a day or a group with no rows at all counts as 0 (`missing: zero`), so a source that
sent nothing is flagged, not skipped.

Cost: the rows of the checked days and the `history_days` before them, filtered by literal
dates (partition pruning and data skipping on the date column), then a few hundred numbers on
the driver: proportional to the window, not to the age of the lakehouse.

The days a run touched are the dates of its changed rows (the check's scope) and, for checks on
`ingest_date`, the run's days: the ingest dates it landed (`bronze._files`) and the dates it was
scheduled for (`--date`), so a day whose rows never came is still judged, even when nothing at
all landed. Without either (`lakehouse maintain`'s full scan), the newest `history_days` days
are.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.context import Lakehouse
from lakehouse.quality.suites import DayAnomalySpec

# The group of an ungrouped check.
ALL = ""
# The column a run's days (its landed and scheduled ingest dates) are days of.
INGEST_DATE = "ingest_date"
# Failing days named in a check's message (the examples hold up to MAX_EXAMPLES).
MESSAGE_DAYS = 3


@dataclass(frozen=True)
class DayPoint:
    """One day's value of the metric (per group), with the band its history gives it."""

    day: dt.date
    group: str
    value: float | None
    median: float | None = None
    low: float | None = None
    high: float | None = None
    history: int = 0
    checked: bool = False

    @property
    def judged(self) -> bool:
        return self.checked and self.value is not None and self.median is not None

    @property
    def anomalous(self) -> bool:
        """Judged and outside its band (an open side, None, bounds nothing)."""
        if not self.judged or self.value is None:
            return False
        return (self.low is not None and self.value < self.low) or (
            self.high is not None and self.value > self.high
        )

    def to_json(self) -> dict[str, object]:
        return {
            "day": self.day.isoformat(),
            "group": self.group,
            "value": self.value,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "history_days": self.history,
            "checked": self.checked,
        }


def judge(
    values: Iterable[tuple[dt.date, str, float | None]],
    days: Iterable[dt.date],
    spec: DayAnomalySpec,
) -> list[DayPoint]:
    """Every (day, group) of `values` and of the checked `days`, oldest first, each with the band
    its own earlier days give it; `checked` marks the days to judge. Pure: the Spark side only
    aggregates the window (`day_values`)."""
    by_group: dict[str, dict[dt.date, float | None]] = {}
    for day, group, value in values:
        # NaN or an infinity (a division by zero in a rate) is no value: not judged, not history.
        finite = value if value is None or math.isfinite(value) else None
        by_group.setdefault(group, {})[day] = finite
    checked = set(days)
    if not by_group and checked:
        by_group[ALL] = {}
    points: list[DayPoint] = []
    for group, series in sorted(by_group.items()):
        for day in sorted(set(series) | checked):
            value = series.get(day)
            if day not in series and spec.missing == "zero":
                value = 0.0
            history = [
                v
                for d, v in series.items()
                if v is not None and day - dt.timedelta(days=spec.history_days) <= d < day
            ]
            median = low = high = None
            if len(history) >= spec.min_history:
                median = float(statistics.median(history))
                # An open side of the band is None (JSON has no infinity).
                if spec.max_decrease is not None:
                    low = median * (1 - spec.max_decrease) - spec.slack
                if spec.max_increase is not None:
                    high = median * (1 + spec.max_increase) + spec.slack
            points.append(
                DayPoint(day, group, value, median, low, high, len(history), day in checked)
            )
    return sorted(points, key=lambda p: (p.day, p.group))


def day_values(
    df: DataFrame, specs: Sequence[DayAnomalySpec], first: dt.date, last: dt.date
) -> list[list[tuple[dt.date, str, float | None]]]:
    """Each spec's `value` per day (and group) of the rows of `df` dated `first`..`last`
    (literal bounds, so Delta skips the files and partitions outside them), in one aggregation:
    the specs share their date column, grouping and filter (`check_days`)."""
    spec = specs[0]
    day = F.to_date(F.col(spec.date_column))
    rows = df.where(day.between(F.lit(first), F.lit(last)))
    if spec.where:
        rows = rows.where(F.expr(spec.where))
    group = F.col(spec.group_by).cast("string") if spec.group_by else F.lit(ALL)
    out = (
        rows.groupBy(day.alias("_day"), group.alias("_group"))
        .agg(*[F.expr(s.value).cast("double").alias(f"_v{i}") for i, s in enumerate(specs)])
        .collect()
    )
    return [
        [(r["_day"], r["_group"] or ALL, r[f"_v{i}"]) for r in out if r["_day"] is not None]
        for i in range(len(specs))
    ]


def days_to_check(
    df: DataFrame,
    spec: DayAnomalySpec,  # of the checks sharing a date column, any: `history_days` aside
    scope: DataFrame | None,
    run_days: Sequence[dt.date] | None,
) -> set[dt.date]:
    """The days a run touched (see the module's doc). The run's days are ingest days: they are
    judged by checks on `ingest_date` only (an event's date is not its delivery's). Without a
    scope, and without run days that apply, the newest `history_days` days of the table (a full
    scan); an ingest-day check of a run that landed nothing and was given no date judges none."""
    ingest = spec.date_column == INGEST_DATE
    days = set(run_days or ()) if ingest else set()
    if scope is not None and spec.date_column in scope.columns:
        found = scope.select(F.to_date(F.col(spec.date_column)).alias("d")).distinct().collect()
        days |= {r["d"] for r in found if r["d"] is not None}
    if days or scope is not None or (ingest and run_days is not None):
        return days
    newest = df.select(F.max(F.to_date(F.col(spec.date_column))).alias("d")).first()
    if newest is None or newest["d"] is None:
        return set()
    end = newest["d"]
    return {end - dt.timedelta(days=i) for i in range(spec.history_days)}


def check_days(
    df: DataFrame,
    specs: Sequence[DayAnomalySpec],
    scope: DataFrame | None,
    run_days: Sequence[dt.date] | None,
) -> list[list[DayPoint]]:
    """The points of each `day_anomaly` check of a suite: the checked days and their history
    (`judge`). Checks on the same date column, grouping and filter share one aggregation."""
    out: dict[int, list[DayPoint]] = {}
    shared: dict[tuple[str, str | None, str | None], list[int]] = {}
    for i, spec in enumerate(specs):
        shared.setdefault((spec.date_column, spec.group_by, spec.where), []).append(i)
    for members in shared.values():
        group = [specs[i] for i in members]
        days = days_to_check(df, group[0], scope, run_days)
        if not days:
            out.update({i: [] for i in members})
            continue
        first = min(days) - dt.timedelta(days=max(s.history_days for s in group))
        values = day_values(df, group, first, max(days))
        for i, spec, found in zip(members, group, values, strict=True):
            out[i] = judge(found, days, spec)
    return [out[i] for i in range(len(specs))]


def describe(point: DayPoint, what: str) -> str:
    """`what` on a flagged day with its expected range, as the report and the message say it."""
    where = f" for {point.group}" if point.group != ALL else ""
    return (
        f"{what}{where} on {point.day}: {_number(point.value)}, expected "
        f"{_number(point.low)} to {_number(point.high)} "
        f"(median {_number(point.median)} of the {point.history} days before)"
    )


def _number(value: float | None) -> str:
    """Four significant digits under 1,000, whole numbers above; an open bound is "any"."""
    if value is None:
        return "any"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def run_days(spark: SparkSession, lh: Lakehouse, run_id: str) -> list[dt.date]:
    """The ingest dates of the files run `run_id` landed, and of the files any run landed since
    the landing checks last ran (the newest `bronze.catch_up_max_days + 1` of those): on EMR the
    bronze job that caught up a missed night is a run of its own, and the quality job after it
    judges the days it landed. From `bronze._files` and `quality.results`."""
    from delta.tables import DeltaTable

    from lakehouse.bronze.ingestion import files_path
    from lakehouse.quality.runner import RESULTS_TABLE

    path = files_path(lh)
    if not DeltaTable.isDeltaTable(spark, path):
        return []
    files = spark.read.format("delta").load(path)
    judged_at = None
    results = lh.path(RESULTS_TABLE)
    if DeltaTable.isDeltaTable(spark, results):
        row = (
            spark.read.format("delta")
            .load(results)
            .where(F.col("layer") == "bronze")
            .agg(F.max("run_ts").alias("at"))
            .first()
        )
        judged_at = None if row is None else row["at"]
    unjudged = F.lit(True) if judged_at is None else F.col("ingested_at") > F.lit(judged_at)
    rows = (
        files.where((F.col("run_id") == run_id) | unjudged)
        .select("ingest_date", (F.col("run_id") == run_id).alias("own"))
        .distinct()
        .collect()
    )
    own = {r["ingest_date"] for r in rows if r["own"] and r["ingest_date"] is not None}
    since = sorted({r["ingest_date"] for r in rows if r["ingest_date"] is not None} - own)
    return sorted(own | set(since[-(lh.config.bronze.catch_up_max_days + 1) :]))


def landing_view(spark: SparkSession, lh: Lakehouse) -> DataFrame:
    """`bronze.landing`: one row per source and ingest day with the `records` bronze kept and
    the records `quarantined` (any layer) from that day's files. Lazy, and built so that a
    check's date filter reaches every read: through the union to each bronze table's
    `ingest_date` partitions, and through the left join (Spark infers it for the right side) to
    the quarantine. A day whose every record was quarantined has no row (its records count as
    0, its rate is not judged)."""
    from delta.tables import DeltaTable

    from lakehouse.bronze.ingestion import bronze_path
    from lakehouse.state.quarantine import QUARANTINE_TABLE

    keys = ["source", "ingest_date"]
    parts = []
    for source in lh.sources:
        path = bronze_path(lh, source)
        if DeltaTable.isDeltaTable(spark, path):
            parts.append(
                spark.read.format("delta")
                .load(path)
                .groupBy(F.lit(source).alias("source"), "ingest_date")
                .agg(F.count(F.lit(1)).alias("records"))
            )
    if not parts:
        return spark.createDataFrame(
            [], "source string, ingest_date date, records long, quarantined long"
        )
    view = parts[0]
    for part in parts[1:]:
        view = view.unionByName(part)
    quarantine = lh.path(QUARANTINE_TABLE)
    if not DeltaTable.isDeltaTable(spark, quarantine):
        return view.withColumn("quarantined", F.lit(0).cast("long"))
    bad = (
        spark.read.format("delta")
        .load(quarantine)
        .groupBy("source", "ingest_date")
        .agg(F.count(F.lit(1)).alias("quarantined"))
    )
    return view.join(bad, keys, "left").select(
        *keys, "records", F.coalesce("quarantined", F.lit(0)).cast("long").alias("quarantined")
    )
