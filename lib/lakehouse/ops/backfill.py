"""Backfill: reprocess the landing partitions of a date range through bronze, silver, quality and
gold, or preview what that would publish.

- A backfill re-reads every landing file of the range, ingested before or not. Bronze inserts
  only records it does not hold (record identity is content), so unchanged input changes no
  table; a corrected or late file in the range flows through silver and gold like a daily run.
- `dry_run=True` runs the very same pipeline on a scratch copy of the lakehouse
  (`<root>/_staging/<run_id>/lakehouse`, removed afterwards) and compares its gold with the
  published gold: rows added, removed and changed per table (by the key of its spec,
  conf/gold/<name>.yaml) and the change of every figure of the daily tables (`daily_tables`) per
  day. Nothing under the published root changes, not even the logs.

The scratch copy costs a copy of the lakehouse's current files (Hadoop `FileUtil.copy`, so
local folders and S3 alike); see docs/TIME_TRAVEL.md for its cost on a large lakehouse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.config import join_uri
from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import current_version, delete_path
from lakehouse.core.errors import UserError
from lakehouse.state.ledger import new_run_id
from lakehouse.state.lock import LOCK_DIR, run_lock

MAX_DAYS = 366


class BackfillError(UserError):
    """The backfill was asked for something it cannot do (a bad range, no landing data)."""


@dataclass(frozen=True)
class TableDiff:
    """Rows of one gold table added, removed and changed (same key, other values)."""

    table: str
    added: int
    removed: int
    changed: int

    @property
    def unchanged(self) -> bool:
        return self.added == self.removed == self.changed == 0


@dataclass(frozen=True)
class KpiDelta:
    """One figure of one day that differs (`before` None: a new day; `after` None: a gone day)."""

    table: str
    day: dt.date
    kpi: str
    before: Any
    after: Any

    @property
    def delta(self) -> Any:
        if isinstance(self.before, (int, Decimal)) and isinstance(self.after, (int, Decimal)):
            return self.after - self.before
        return None


@dataclass
class BackfillResult:
    run_id: str
    dates: list[str]
    dry_run: bool
    diffs: dict[str, TableDiff] = field(default_factory=dict)
    kpi_deltas: list[KpiDelta] = field(default_factory=list)
    # The quality gate's refusal, when the backfill's result fails an error check.
    refused: str | None = None


def date_range(start: str, end: str) -> list[str]:
    """The ISO dates from `start` to `end`, both included."""
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as exc:
        raise BackfillError(f"--from/--to must be dates like 2024-01-31: {exc}") from None
    if last < first:
        raise BackfillError(f"--to {end} is before --from {start}")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise BackfillError(f"{days} days asked; backfill at most {MAX_DAYS} days per call")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def daily_tables(lh: Lakehouse) -> dict[str, str]:
    """Gold tables of one row per day (their key is their scope column: `daily_kpis` by
    `order_date`, ...) -> that column: a backfill compares each of their figures day by day."""
    return {
        name: spec.scope
        for name, spec in lh.gold.items()
        if spec.scope is not None and spec.keys == (spec.scope,)
    }


def read_gold(spark: SparkSession, lh: Lakehouse) -> dict[str, DataFrame]:
    """The gold tables of `lh` (those that exist), by name (`daily_kpis`), each pinned at its
    current version so later writes do not change what the frames read."""
    from delta.tables import DeltaTable

    out = {}
    for t in lh.gold:
        path = lh.path(f"gold.{t}")
        if DeltaTable.isDeltaTable(spark, path):
            version = current_version(spark, path)
            out[t] = spark.read.format("delta").option("versionAsOf", version).load(path)
    return out


def diff_table(
    name: str, keys: Sequence[str], before: DataFrame | None, after: DataFrame | None
) -> TableDiff:
    """Rows added, removed and changed (same `keys`, other values in the columns both sides
    have) between two versions of gold table `name`; a missing side counts as empty."""
    if before is None and after is None:
        return TableDiff(name, 0, 0, 0)
    if before is None or after is None:
        present = after if after is not None else before
        assert present is not None
        n = present.count()
        return TableDiff(name, n if after is not None else 0, n if before is not None else 0, 0)
    columns = sorted(set(before.columns) & set(after.columns))
    key_columns = list(keys)

    def fingerprint(df: DataFrame) -> DataFrame:
        return df.select(
            *key_columns, F.sha2(F.to_json(F.struct(*sorted(columns))), 256).alias("_row")
        )

    old, new = fingerprint(before).alias("o"), fingerprint(after).alias("n")
    joined = old.join(new, key_columns, "full_outer")
    counts = joined.agg(
        F.sum(F.col("o._row").isNull().cast("long")).alias("added"),
        F.sum(F.col("n._row").isNull().cast("long")).alias("removed"),
        F.sum(
            (
                F.col("o._row").isNotNull()
                & F.col("n._row").isNotNull()
                & (F.col("o._row") != F.col("n._row"))
            ).cast("long")
        ).alias("changed"),
    ).first()
    assert counts is not None
    return TableDiff(
        name, int(counts["added"] or 0), int(counts["removed"] or 0), int(counts["changed"] or 0)
    )


def kpi_changes(
    name: str, day: str, before: DataFrame | None, after: DataFrame | None
) -> list[KpiDelta]:
    """Every figure of every day (column `day`) of daily table `name` whose value differs
    between two versions."""

    def rows(df: DataFrame | None) -> dict[dt.date, dict[str, Any]]:
        if df is None:
            return {}
        return {r[day]: r.asDict() for r in df.collect()}

    old, new = rows(before), rows(after)
    out = []
    for d in sorted(set(old) | set(new)):
        o, n = old.get(d, {}), new.get(d, {})
        for kpi in sorted((set(o) | set(n)) - {day}):
            if o.get(kpi) != n.get(kpi):
                out.append(KpiDelta(name, d, kpi, o.get(kpi), n.get(kpi)))
    return out


def compare_gold(
    lh: Lakehouse, before: dict[str, DataFrame], after: dict[str, DataFrame]
) -> tuple[dict[str, TableDiff], list[KpiDelta]]:
    """Per gold table of `lh` its `TableDiff`, and the figure changes of the daily tables."""
    diffs = {
        name: diff_table(name, spec.keys, before.get(name), after.get(name))
        for name, spec in lh.gold.items()
    }
    deltas = [
        d
        for name, day in daily_tables(lh).items()
        for d in kpi_changes(name, day, before.get(name), after.get(name))
    ]
    return diffs, deltas


def copy_lakehouse(spark: SparkSession, lh: Lakehouse, target: str) -> None:
    """Copy every folder of the lakehouse root (not `_staging`, nor the run lock `_lock`) to
    `target`."""
    jvm = spark._jvm
    assert jvm is not None
    conf = spark._jsc.hadoopConfiguration()
    src = jvm.org.apache.hadoop.fs.Path(lh.root)
    fs = src.getFileSystem(conf)
    dst = jvm.org.apache.hadoop.fs.Path(target)
    dst_fs = dst.getFileSystem(conf)
    dst_fs.mkdirs(dst)
    for status in fs.listStatus(src):
        name = status.getPath().getName()
        if name in ("_staging", LOCK_DIR):
            continue
        jvm.org.apache.hadoop.fs.FileUtil.copy(
            fs, status.getPath(), dst_fs, jvm.org.apache.hadoop.fs.Path(dst, name), False, conf
        )


def backfill(
    spark: SparkSession, lh: Lakehouse, start: str, end: str, dry_run: bool = False
) -> BackfillResult:
    """Reprocess the landing partitions `start`..`end` (ingest dates); with `dry_run`, compute
    the result on a scratch copy and report its difference from the published gold instead.

    A real backfill whose gold fails an error check raises `QualityGateError` (gold unchanged);
    a dry run reports the refusal in `BackfillResult.refused`."""
    from lakehouse.pipeline import run_pipeline

    dates = date_range(start, end)
    run_id = new_run_id()
    result = BackfillResult(run_id, dates, dry_run)
    # The whole backfill holds the lakehouse's lock (its pipeline run does not wait for it): no
    # run writes between the reads of gold before and after, and no other dry run is using
    # `_staging`, so what a dry run finds there was left by one that was stopped.
    with run_lock(lh, run_id, "backfill --dry-run" if dry_run else "backfill"):
        before = read_gold(spark, lh)
        if dry_run:
            delete_path(spark, join_uri(lh.root, "_staging"))
            return _dry_run(spark, lh, result, before)
        run_pipeline(spark, lh, run_id, dates=dates, reprocess=True)
        result.diffs, result.kpi_deltas = compare_gold(lh, before, read_gold(spark, lh))
        return result


def _dry_run(
    spark: SparkSession,
    lh: Lakehouse,
    result: BackfillResult,
    before: dict[str, DataFrame],
) -> BackfillResult:
    from lakehouse.pipeline import run_pipeline
    from lakehouse.quality import QualityGateError

    run_id, dates = result.run_id, result.dates
    staging = join_uri(lh.root, "_staging", run_id)
    scratch = join_uri(staging, "lakehouse")
    copy_lakehouse(spark, lh, scratch)
    try:
        copy = lh.with_config(
            storage=replace(
                lh.config.storage,
                lakehouse_root=scratch,
                reports_root=join_uri(scratch, "_reports"),
            )
        )
        try:
            run_pipeline(spark, copy, run_id, dates=dates, reprocess=True, register=False)
        except QualityGateError as exc:
            result.refused = str(exc)
        result.diffs, result.kpi_deltas = compare_gold(lh, before, read_gold(spark, copy))
    finally:
        delete_path(spark, staging)
    return result


def describe(result: BackfillResult) -> str:
    """The result as text for the terminal: per table rows added/removed/changed, then every KPI
    change per day."""
    what = "dry run (nothing published)" if result.dry_run else "published"
    lines = [f"backfill {result.dates[0]}..{result.dates[-1]}, run {result.run_id}: {what}"]
    if result.refused:
        lines.append(f"the quality gate would refuse it: {result.refused}")
    lines.append(f"{'table':<20}{'added':>8}{'removed':>9}{'changed':>9}")
    for d in result.diffs.values():
        lines.append(f"{d.table:<20}{d.added:>8}{d.removed:>9}{d.changed:>9}")
    if result.kpi_deltas:
        lines.append("")
        lines.append(f"{'table':<16}{'day':<12}{'kpi':<22}{'before':>16}{'after':>16}{'delta':>14}")
        for k in result.kpi_deltas:
            delta = "" if k.delta is None else str(k.delta)
            lines.append(
                f"{k.table:<16}{k.day!s:<12}{k.kpi:<22}{k.before!s:>16}{k.after!s:>16}{delta:>14}"
            )
    else:
        lines.append("no KPI changes")
    return "\n".join(lines)
