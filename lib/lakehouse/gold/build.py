"""Build the gold layer from silver: read silver (snapshots and Change Data Feed), run the pure
transforms of `star.py` and `kpis.py`, write gold Delta tables, remember what was consumed.

- `full`: every gold table is recomputed from the silver snapshots and overwritten.
- `incremental` (default): silver's Change Data Feed since the versions the last run consumed
  (`gold._consumed_versions`) says which keys are affected (`incremental.py`);
  only those are recomputed from current silver and written over the old rows of those keys in
  one `replaceWhere` commit per table (a key that no longer produces rows loses its old ones).
  No state yet, or a gold table missing, means a full build. No new silver version means nothing
  is written at all.

Silver is read at the versions pinned when the run starts, so a run is consistent even while
silver is being written, and the next run starts exactly where this one stopped.

The gold tables are the specs of `conf/gold/*.yaml` (`lh.gold`): a spec's `inputs` are the silver
tables gold reads (their union, `silver_inputs`, is what a run pins and records), its `scope` the
column an incremental run replaces by (none: rebuilt whole). Each table's rows are the method of
the same name of `_Sources`, which feeds the pure transforms of `star.py` and `kpis.py`.

Staging and publishing: `stage_gold` computes every write once and keeps its rows in Spark's
cache (memory, spilling to disk) without touching gold; `StagedGold.candidates()` are the tables
gold would become (for a scoped replace: the published rows outside the scope plus the staged
rows), which the gold quality suites check; `publish_gold` then writes the staged rows into gold
(one commit per table: the rows are written once) and records the consumed silver versions. A
cached block that is lost is recomputed from silver at the pinned versions, so it is the same
rows. A run stopped between the two leaves gold and its state exactly as they were, so the next
run recomputes the same changes. Once every table is written, the publish records their versions
in `gold._published`, the set readers pin to (`lakehouse.gold.published`): a run stopped in the
middle of publishing leaves readers on the previous set. `build_gold` is stage + publish without
checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, Literal

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from lakehouse.core import progress
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.core.delta_io import commit_metrics, current_version
from lakehouse.core.spark import BATCH_STORAGE
from lakehouse.core.sql import sql_literal
from lakehouse.gold import behaviour
from lakehouse.gold import incremental as inc
from lakehouse.gold.kpis import (
    customer_retention,
    daily_kpis,
    daily_payments,
    first_order_dates,
    newest_month,
)
from lakehouse.gold.pricing import priced_orders, rate_calendar
from lakehouse.gold.published import published_versions, record_published
from lakehouse.gold.star import dim_customers, dim_date, dim_products, fact_orders, fact_payments
from lakehouse.silver.schema import live

Mode = Literal["incremental", "full"]

# The silver versions each gold run consumed (one row per run and silver input).
CONSUMED_TABLE = "gold._consumed_versions"
# Beyond this many affected keys a table is recomputed whole and overwritten: a predicate over a
# literal list that long is slower than a rewrite of a gold table.
MAX_SCOPE_KEYS = 10_000

STATE_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("table", StringType(), False),
        StructField("version", LongType(), False),
        StructField("mode", StringType(), False),
        StructField("consumed_at", TimestampType(), False),
    ]
)


class GoldBuildError(RuntimeError):
    """Gold cannot be built incrementally from the recorded state; the message says why."""


@dataclass(frozen=True)
class TableWrite:
    """What one run did to one gold table: `overwrite` (whole table), `replace` (the rows of the
    affected keys, one `replaceWhere` commit) or `unchanged`. `version` is the new Delta version
    (None when unchanged); `rows_written` the rows written (all rows for an overwrite);
    `rows_replaced` the rows the affected keys had before."""

    table: str
    action: Literal["overwrite", "replace", "unchanged"]
    version: int | None = None
    rows_written: int = 0
    rows_replaced: int = 0


@dataclass(frozen=True)
class GoldResult:
    """The outcome of `build_gold`: the mode actually run (an incremental call without state runs
    full), the silver versions consumed and what happened to each gold table."""

    run_id: str
    mode: Mode
    consumed_versions: dict[str, int]
    tables: dict[str, TableWrite]

    @property
    def written(self) -> tuple[str, ...]:
        """Names of the gold tables that got a new version."""
        return tuple(n for n, w in self.tables.items() if w.action != "unchanged")

    @property
    def versions(self) -> dict[str, int | None]:
        return {n: w.version for n, w in self.tables.items()}

    @property
    def rows_written(self) -> dict[str, int]:
        return {n: w.rows_written for n, w in self.tables.items()}


def gold_tables(lh: Lakehouse) -> tuple[str, ...]:
    """The gold table names (`conf/gold/*.yaml`, without `gold.`), in the specs' order."""
    return tuple(lh.gold)


def silver_inputs(lh: Lakehouse) -> tuple[str, ...]:
    """The silver tables gold reads (without `silver.`): the union of the gold specs' `inputs`,
    in order of first mention, which is the order their consumed versions are recorded."""
    return tuple(dict.fromkeys(t for spec in lh.gold.values() for t in spec.inputs))


@dataclass(frozen=True)
class StagedWrite:
    """One gold table's pending write: its `rows` (computed once, cached); `action`
    `overwrite` (the whole table) or `replace` (the rows whose `scope_col` is in `scope`)."""

    table: str
    action: Literal["overwrite", "replace"]
    rows: DataFrame
    scope_col: str | None = None
    scope: tuple[Any, ...] = ()

    def predicate(self) -> str:
        """The SQL predicate of the replaced rows (`replaceWhere`)."""
        values = ", ".join(sql_literal(v) for v in self.scope)
        return f"`{self.scope_col}` IN ({values})"


@dataclass(frozen=True)
class StagedGold:
    """A gold build computed but not published: see the module docstring."""

    spark: SparkSession
    lh: Lakehouse
    run_id: str
    mode: Mode
    consumed_versions: dict[str, int]
    writes: dict[str, StagedWrite]
    # False when silver had no new version since the last publish: nothing to publish or record.
    has_changes: bool = True

    def candidates(self) -> dict[str, DataFrame]:
        """`gold.<table>` -> the rows that table would hold once published (the published table
        itself when the run leaves it unchanged)."""
        out: dict[str, DataFrame] = {}
        for name in self.lh.gold:
            write = self.writes.get(name)
            published = self.lh.path(f"gold.{name}")
            if write is None:
                out[f"gold.{name}"] = self.spark.read.format("delta").load(published)
                continue
            staged = write.rows
            if write.action == "overwrite":
                out[f"gold.{name}"] = staged
            else:
                kept = (
                    self.spark.read.format("delta")
                    .load(published)
                    .where(F.expr(f"NOT coalesce({write.predicate()}, false)"))
                )
                # A column the run adds (a newer landing contract) reads null on the kept rows,
                # as it will in the table once published (`_replace_scope`'s mergeSchema).
                out[f"gold.{name}"] = kept.unionByName(staged, allowMissingColumns=True)
        return out

    def scopes(self) -> dict[str, DataFrame]:
        """`gold.<table>` -> the rows this run writes into it (none for a table it leaves
        unchanged): what the gold suites check row by row (`quality.scope`)."""
        out: dict[str, DataFrame] = {}
        for name in self.lh.gold:
            write = self.writes.get(name)
            if write is not None:
                out[f"gold.{name}"] = write.rows
            else:
                out[f"gold.{name}"] = (
                    self.spark.read.format("delta").load(self.lh.path(f"gold.{name}")).limit(0)
                )
        return out


def build_gold(
    spark: SparkSession, lh: Lakehouse, run_id: str, mode: Mode = "incremental"
) -> GoldResult:
    """Bring every gold table up to date with silver (stage, then publish without checks); see
    the module docstring for the modes.

    Both modes produce identical tables. An incremental run with no new silver version writes
    nothing, not even the state table.
    """
    return publish_gold(stage_gold(spark, lh, run_id, mode))


def stage_gold(
    spark: SparkSession, lh: Lakehouse, run_id: str, mode: Mode = "incremental"
) -> StagedGold:
    """Compute this run's gold writes and keep their rows cached; gold itself is not touched."""
    if mode not in ("incremental", "full"):
        raise ValueError(f"mode must be 'incremental' or 'full', not {mode!r}")
    inputs = silver_inputs(lh)
    silver = _Silver(spark, lh)
    consumed = consumed_versions(spark, lh)
    can_increment = (
        mode == "incremental"
        and all(t in consumed for t in inputs)
        and all(DeltaTable.isDeltaTable(spark, lh.path(f"gold.{t}")) for t in lh.gold)
    )
    if can_increment:
        for table in inputs:
            if silver.versions[table] < consumed[table]:
                raise GoldBuildError(
                    f"silver.{table} is at version {silver.versions[table]}, older than the "
                    f"version {consumed[table]} gold consumed: the table was recreated; run "
                    "build_gold(..., mode='full')"
                )
        if all(silver.versions[t] == consumed[t] for t in inputs):
            return StagedGold(
                spark,
                lh,
                run_id,
                "incremental",
                dict(silver.versions),
                {},
                has_changes=False,
            )
        writes = _build_incremental(spark, lh, silver, consumed)
        ran: Mode = "incremental"
    else:
        writes = _build_full(lh, silver)
        ran = "full"
    return StagedGold(spark, lh, run_id, ran, dict(silver.versions), writes)


def publish_gold(staged: StagedGold) -> GoldResult:
    """Write the staged rows into gold (one commit per written table), record the consumed
    silver versions, release the staged rows."""
    spark, lh = staged.spark, staged.lh
    tables: dict[str, TableWrite] = {}
    for name in lh.gold:
        write = staged.writes.get(name)
        if write is None:
            tables[name] = TableWrite(name, "unchanged")
            continue
        clock = progress.Clock()
        rows = write.rows
        path = lh.path(f"gold.{name}")
        if write.action == "overwrite":
            tables[name] = _overwrite(spark, path, name, rows)
        else:
            tables[name] = _replace_scope(spark, path, name, rows, write.predicate())
        crash_point("gold.table_published")
        progress.table(
            f"gold.{name}",
            clock,
            "  gold.%s: %s, %d rows written",
            name,
            write.action,
            tables[name].rows_written,
            rows_in=tables[name].rows_written,
            rows_written=tables[name].rows_written,
        )
    crash_point("gold.tables_published")
    _record_published_set(staged, tables)
    if staged.has_changes:
        _record_consumed(spark, lh, staged.run_id, staged.consumed_versions, staged.mode)
    discard_staged(staged)
    return GoldResult(staged.run_id, staged.mode, dict(staged.consumed_versions), tables)


def _record_published_set(staged: StagedGold, tables: dict[str, TableWrite]) -> None:
    """Record the versions readers pin to (`gold.published`), once every table is written and
    before the consumed versions: a run stopped before this leaves readers on the previous set,
    and the next run recomputes and publishes the same changes. A table the run did not write
    keeps its published version (its newest one when no set was recorded yet). A run without
    changes records nothing, unless no set has been recorded yet."""
    spark, lh = staged.spark, staged.lh
    before = published_versions(spark, lh)
    if not staged.has_changes and before:
        return
    versions = {}
    for name, write in tables.items():
        if write.version is not None:
            versions[name] = write.version
        elif name in before:
            versions[name] = before[name]
        else:
            versions[name] = current_version(spark, lh.path(f"gold.{name}"))
    record_published(spark, lh, staged.run_id, versions)


def discard_staged(staged: StagedGold) -> None:
    """Release the staged rows of a run (published or refused)."""
    for write in staged.writes.values():
        write.rows.unpersist()


def compute_table(
    spark: SparkSession, lh: Lakehouse, table: str, silver_versions: dict[str, int]
) -> DataFrame:
    """Gold `table` (its name without `gold.`) as a full build computes it from silver read at
    `silver_versions` (every table of `silver_inputs(lh)`, by name without `silver.`): a past
    run's figures, reproduced from the versions it consumed. Columns: the gold table's."""
    missing = [t for t in silver_inputs(lh) if t not in silver_versions]
    if missing:
        raise GoldBuildError(f"no silver version given for {', '.join(missing)}")
    if table not in lh.gold:
        raise ValueError(f"unknown gold table {table!r} (known: {', '.join(lh.gold)})")
    sources = _Sources(_Silver(spark, lh, dict(silver_versions)))
    return sources.transform(table)(None)


# ---------------------------------------------------------------------------------------------
# Reading silver


class _Silver:
    """Silver tables pinned at their newest version when the run starts."""

    def __init__(
        self, spark: SparkSession, lh: Lakehouse, versions: dict[str, int] | None = None
    ) -> None:
        self.spark = spark
        self.lh = lh
        self.versions = versions or {
            t: _latest_version(spark, lh.path(f"silver.{t}")) for t in silver_inputs(lh)
        }

    def snapshot(self, table: str) -> DataFrame:
        if table not in self.versions:
            raise GoldBuildError(
                f"gold reads silver.{table}, which no spec of {self.lh.config.conf_dir}/gold "
                "lists among its inputs"
            )
        return (
            self.spark.read.format("delta")
            .option("versionAsOf", self.versions[table])
            .load(self.lh.path(f"silver.{table}"))
        )

    def changes(self, table: str, after_version: int) -> DataFrame:
        """Change Data Feed rows committed after `after_version`, up to the pinned version."""
        return (
            self.spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", after_version + 1)
            .option("endingVersion", self.versions[table])
            .load(self.lh.path(f"silver.{table}"))
        )


def _latest_version(spark: SparkSession, path: str) -> int:
    if not DeltaTable.isDeltaTable(spark, path):
        raise GoldBuildError(f"no Delta table at {path}: gold needs every silver table it reads")
    return current_version(spark, path)


def current_publisher(spark: SparkSession, lh: Lakehouse) -> str | None:
    """The run that published gold from the newest version of every silver input, when every
    gold table exists and gold has consumed every silver input at its newest version (an
    incremental run now would compute and publish nothing); None otherwise."""
    path = lh.path(CONSUMED_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    newest = {
        r["table"].removeprefix("silver."): r["newest"]
        for r in spark.read.format("delta")
        .load(path)
        .groupBy("table")
        .agg(F.max(F.struct("version", "consumed_at", "run_id")).alias("newest"))
        .collect()
    }
    inputs = silver_inputs(lh)
    if not all(t in newest for t in inputs) or len({newest[t]["run_id"] for t in inputs}) != 1:
        return None
    if not all(DeltaTable.isDeltaTable(spark, lh.path(f"gold.{t}")) for t in lh.gold):
        return None
    try:
        current = all(
            _latest_version(spark, lh.path(f"silver.{t}")) == newest[t]["version"] for t in inputs
        )
    except GoldBuildError:
        return None
    return str(newest[inputs[0]]["run_id"]) if current else None


def consumed_versions(
    spark: SparkSession, lh: Lakehouse, runs: Iterable[str] | None = None
) -> dict[str, int]:
    """The newest silver version each table was consumed at, by table name (no `silver.`);
    with `runs`, by those runs' publishes only."""
    path = lh.path(CONSUMED_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return {}
    consumed = spark.read.format("delta").load(path)
    if runs is not None:
        consumed = consumed.where(F.col("run_id").isin(list(runs)))
    rows = consumed.groupBy("table").agg(F.max("version")).collect()
    return {r[0].removeprefix("silver."): int(r[1]) for r in rows}


def _record_consumed(
    spark: SparkSession, lh: Lakehouse, run_id: str, versions: dict[str, int], mode: Mode
) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [(run_id, f"silver.{t}", versions[t], mode, now) for t in silver_inputs(lh)]
    (
        spark.createDataFrame(rows, STATE_SCHEMA)
        .write.format("delta")
        .mode("append")
        .save(lh.path(CONSUMED_TABLE))
    )


# ---------------------------------------------------------------------------------------------
# What each gold table is, given (optionally filtered) silver


class _Sources:
    """Live silver rows and the recompute of each gold table for a scope of keys (None = all).

    Each public method is the gold table of the same name: given the values of the table's
    scope column (`GoldSpec.scope`), or None, it returns that table's rows for those values, or
    all its rows."""

    def __init__(self, silver: _Silver) -> None:
        self.orders = live(silver.snapshot("orders"))
        self.items = live(silver.snapshot("order_items"))
        # Columns a later landing contract added to orders and their lines, carried into
        # fact_orders as they are (docs/CONTRACTS.md); only those silver has already gained.
        self.added = {
            name: [c for c in silver.lh.table(table).added_columns if c in frame.columns]
            for name, table, frame in (
                ("orders", "orders", self.orders),
                ("items", "order_items", self.items),
            )
        }
        self.fx = live(silver.snapshot("fx_rates"))
        self.payments = live(silver.snapshot("payments"))
        self.customers = silver.snapshot("customers")
        self.customers_history = silver.snapshot("customers_history")
        self.products_history = silver.snapshot("products_history")
        # Every live order, narrow: first order dates and cohorts need a customer's whole
        # history whatever the scope.
        self.order_heads = self.orders.select(
            "order_id", "customer_id", "order_date", "status", "currency"
        )
        # Clickstream, for the behaviour marts; absent when no spec reads it.
        self.clicks = (
            live(silver.snapshot("clickstream")) if "clickstream" in silver.versions else None
        )
        self.spark, self.lh = silver.spark, silver.lh
        # gold.sessions of a scope, computed once for it and daily_funnel (`sessions`).
        self._sessions: dict[tuple[Any, ...] | None, DataFrame] = {}
        # The newest month with data, once an incremental run has found it: a scoped retention
        # recompute counts every cohort's months up to it.
        self.newest_month: dt.date | None = None

    def transform(self, table: str) -> Callable[[Sequence[Any] | None], DataFrame]:
        """The recompute of gold `table`: the public method of the same name."""
        method = getattr(type(self), table, None)
        if table.startswith("_") or table == "transform" or not callable(method):
            raise GoldBuildError(
                f"gold.{table} has a spec but no transform: lakehouse.gold.build._Sources has no "
                f"method {table!r}"
            )
        compute: Callable[[Sequence[Any] | None], DataFrame] = getattr(self, table)
        return compute

    def dim_customers(self, ids: Sequence[Any] | None = None) -> DataFrame:
        history = _scoped(self.customers_history, "customer_id", ids)
        return dim_customers(history, self.customers)

    def dim_products(self, ids: Sequence[Any] | None = None) -> DataFrame:
        return dim_products(_scoped(self.products_history, "product_id", ids))

    def _dates(self) -> DataFrame:
        """Every order and payment date: the span of dim_date."""
        return self.orders.select(F.col("order_date").alias("date")).union(
            self.payments.select(F.col("event_date").alias("date"))
        )

    def dim_date(self, _: Sequence[Any] | None = None) -> DataFrame:
        return dim_date(self._dates())

    def _orders_on(self, dates: Sequence[Any] | None) -> tuple[DataFrame, DataFrame, DataFrame]:
        orders = _scoped(self.orders, "order_date", dates)
        items = _scoped(self.items, "order_date", dates)
        calendar = rate_calendar(self.fx, orders.select(F.col("order_date").alias("date")))
        return orders, items, calendar

    def fact_orders(self, dates: Sequence[Any] | None = None) -> DataFrame:
        orders, items, calendar = self._orders_on(dates)
        return fact_orders(
            orders,
            items,
            calendar,
            self.dim_customers(),
            self.dim_products(),
            carried_orders=self.added["orders"],
            carried_items=self.added["items"],
        )

    def daily_kpis(self, dates: Sequence[Any] | None = None) -> DataFrame:
        orders, items, calendar = self._orders_on(dates)
        customers = orders.select("customer_id").distinct()
        firsts = first_order_dates(self.order_heads.join(customers, "customer_id", "left_semi"))
        return daily_kpis(priced_orders(orders, items, calendar), firsts)

    def fact_payments(self, dates: Sequence[Any] | None = None) -> DataFrame:
        payments = _scoped(self.payments, "event_date", dates)
        calendar = rate_calendar(self.fx, payments.select(F.col("event_date").alias("date")))
        return fact_payments(payments, calendar)

    def daily_payments(self, dates: Sequence[Any] | None = None) -> DataFrame:
        return daily_payments(self.fact_payments(dates))

    def customer_retention(self, cohorts: Sequence[Any] | None = None) -> DataFrame:
        if cohorts is None:
            return customer_retention(self.order_heads)
        members = first_order_dates(self.order_heads).where(
            F.trunc("first_order_date", "month").isin(list(cohorts))
        )
        orders = self.order_heads.join(members.select("customer_id"), "customer_id", "left_semi")
        return customer_retention(orders, through_month=self.newest_month)

    def _clicks(self) -> DataFrame:
        if self.clicks is None:
            raise GoldBuildError("a behaviour mart needs silver.clickstream among its inputs")
        return self.clicks

    def _session_events(self, dates: Sequence[Any] | None) -> DataFrame:
        """Every event of the sessions that may start on `dates` (None: every event): the
        sessions with an event on one of them, but for those gold.sessions dates before the
        first of them (a session that started earlier and crosses into them: an incremental
        run that changes its start has its old date in `dates`, so its date in gold is right),
        read from the first date on (a session's events are never older than its start), so
        the partitions before are skipped."""
        clicks = self._clicks()
        if dates is None:
            return clicks
        first = F.lit(min(dates))
        ids = clicks.where(F.col("event_date").isin(list(dates))).select("session_id").distinct()
        published = self.lh.path("gold.sessions")
        if DeltaTable.isDeltaTable(self.spark, published):
            earlier = (
                self.spark.read.format("delta")
                .load(published)
                .where(F.col("session_date") < first)
                .select("session_id")
            )
            ids = ids.join(earlier, "session_id", "left_anti")
        return clicks.where(F.col("event_date") >= first).join(ids, "session_id", "left_semi")

    def sessions(self, dates: Sequence[Any] | None = None) -> DataFrame:
        """gold.sessions of the sessions starting on `dates` (None: all), one DataFrame per
        scope, so daily_funnel summarises the rows staged for gold.sessions (Spark's cache)
        rather than computing them again."""
        key = None if dates is None else tuple(dates)
        if key not in self._sessions:
            self._sessions[key] = self._compute_sessions(dates)
        return self._sessions[key]

    def _compute_sessions(self, dates: Sequence[Any] | None) -> DataFrame:
        clicks = self._session_events(dates)
        bought = (
            clicks.where(F.col("event_type") == "purchase")
            .select("order_id")
            .where(F.col("order_id").isNotNull())
            .distinct()
        )
        orders = self.orders.join(bought, "order_id", "left_semi")
        items = self.items.join(bought, "order_id", "left_semi")
        calendar = rate_calendar(self.fx, orders.select(F.col("order_date").alias("date")))
        return behaviour.sessions(
            clicks, priced_orders(orders, items, calendar), self.dim_customers(), dates
        )

    def daily_funnel(self, dates: Sequence[Any] | None = None) -> DataFrame:
        return behaviour.daily_funnel(self.sessions(dates).persist(BATCH_STORAGE))

    def product_engagement(self, dates: Sequence[Any] | None = None) -> DataFrame:
        return behaviour.product_engagement(
            _scoped(self._clicks(), "event_date", dates),
            _scoped(self.orders, "order_date", dates),
            _scoped(self.items, "order_date", dates),
        )


def _scoped(df: DataFrame, column: str, values: Sequence[Any] | None) -> DataFrame:
    return df if values is None else df.where(F.col(column).isin(list(values)))


def _build_full(lh: Lakehouse, silver: _Silver) -> dict[str, StagedWrite]:
    src = _Sources(silver)
    return {name: _stage(name, src.transform(name)(None)) for name in lh.gold}


def _build_incremental(
    spark: SparkSession,
    lh: Lakehouse,
    silver: _Silver,
    consumed: dict[str, int],
) -> dict[str, StagedWrite]:
    """Stage each gold table an incremental run changes: those `_affected` says are moved whole
    are recomputed whole; the others only for their affected scope values (whole beyond
    `MAX_SCOPE_KEYS` values), written over those values' old rows at publish."""
    changes = {
        t: silver.changes(t, consumed[t])
        for t in silver_inputs(lh)
        if silver.versions[t] > consumed[t]
    }
    src = _Sources(silver)
    src.order_heads = src.order_heads.persist(BATCH_STORAGE)
    try:
        found = _affected(spark, lh, src, changes)
        src.newest_month = found.newest_month
        writes: dict[str, StagedWrite] = {}
        for name, spec in lh.gold.items():
            compute = src.transform(name)
            scope = found.scopes.get(name, [])
            if name in found.whole:
                writes[name] = _stage(name, compute(None))
            elif not scope:
                continue
            elif spec.scope is None or len(scope) > MAX_SCOPE_KEYS:
                writes[name] = _stage(name, compute(None))
            else:
                writes[name] = _stage(name, compute(scope), spec.scope, scope)
    finally:
        src.order_heads.unpersist()
    return writes


@dataclass(frozen=True)
class _Affected:
    """What a batch of changes touches: the affected values of each table's scope column
    (`GoldSpec.scope`), the tables that must be recomputed whole (the span of order and payment
    dates moved: `dim_date`; the newest month with data moved: every retention cohort gains or
    loses a `months_since`), and the newest month with data now."""

    scopes: dict[str, list[Any]]
    whole: frozenset[str]
    newest_month: dt.date | None


def _affected(
    spark: SparkSession, lh: Lakehouse, src: _Sources, changes: dict[str, DataFrame]
) -> _Affected:
    """The affected keys of each table (see `incremental.py` for the reasoning), found in one
    Spark job."""
    parts: list[tuple[str, DataFrame]] = []
    orders_ch = changes.get("orders")
    ranges = inc.fx_change_ranges(changes["fx_rates"], src.fx) if "fx_rates" in changes else None
    if orders_ch is not None:
        parts.append(("order_change_dates", inc.changed_values(orders_ch, "order_date")))
        attributed = orders_ch.join(inc.attribution_changes(orders_ch), "order_id", "left_semi")
        parts.append(("attribution_dates", inc.changed_values(attributed, "order_date")))
        parts.append(("shift_dates", inc.first_order_shift_dates(orders_ch, src.order_heads)))
    if "order_items" in changes:
        parts.append(("item_dates", inc.changed_values(changes["order_items"], "order_date")))
    if "payments" in changes:
        parts.append(("payment_dates", inc.changed_values(changes["payments"], "event_date")))
    if ranges is not None:
        parts.append(("money_dates", inc.dates_in_ranges(src.order_heads, "order_date", ranges)))
        parts.append(("payment_dates", inc.dates_in_ranges(src.payments, "event_date", ranges)))
    for table in ("customers", "customers_history"):
        if table in changes:
            parts.append(("customer_ids", inc.changed_values(changes[table], "customer_id")))
    if "customers" in changes:
        gone = inc.deleted_or_restored(changes["customers"], "customer_id")
        parts.append(("fact_dates", inc.order_dates_of(src.order_heads, "customer_id", gone)))
        parts.append(("gone_customers", gone))
    if "customers_history" in changes:
        starts = inc.version_change_starts(changes["customers_history"], "customer_id")
        parts.append(("fact_dates", inc.order_dates_since(src.order_heads, "customer_id", starts)))
        parts.append(("customer_since", starts.select(F.to_date(F.min("since")))))
    if "clickstream" in changes:
        parts.append(("click_dates", inc.changed_values(changes["clickstream"], "event_date")))
    if "products_history" in changes:
        ids = inc.changed_values(changes["products_history"], "product_id")
        parts.append(("product_ids", ids))
        starts = inc.version_change_starts(changes["products_history"], "product_id")
        parts.append(("fact_dates", inc.order_dates_since(src.items, "product_id", starts)))
    if orders_ch is not None:
        before = spark.read.format("delta").load(lh.path("gold.customer_retention"))
        parts.append(("newest_month", newest_month(src.order_heads)))
        parts.append(
            (
                "newest_month_before",
                before.select(F.max(F.add_months("cohort_month", F.col("months_since")))),
            )
        )
    dates_may_move = orders_ch is not None or "payments" in changes
    if dates_may_move:
        dim = spark.read.format("delta").load(lh.path("gold.dim_date"))
        parts += [
            ("span_min", src._dates().select(F.min("date"))),
            ("span_max", src._dates().select(F.max("date"))),
            ("span_before_min", dim.select(F.min("date"))),
            ("span_before_max", dim.select(F.max("date"))),
        ]
    found = _collect_tagged(parts)

    def dates(*tags: str) -> set[dt.date]:
        return {dt.date.fromisoformat(v) for tag in tags for v in found.get(tag, ())}

    def one(tag: str) -> dt.date | None:
        return next(iter(dates(tag)), None)

    money = dates("order_change_dates", "item_dates", "money_dates")
    session_dates = _session_dates(spark, lh, src, changes, found) if src.clicks is not None else []
    cohorts = sorted({d.replace(day=1) for d in dates("order_change_dates", "shift_dates")})
    payment_dates = sorted(dates("payment_dates"))
    whole: set[str] = set()
    if dates_may_move and (one("span_min"), one("span_max")) != (
        one("span_before_min"),
        one("span_before_max"),
    ):
        whole.add("dim_date")
    if cohorts and one("newest_month") != one("newest_month_before"):
        whole.add("customer_retention")
    return _Affected(
        scopes={
            "dim_customers": sorted(found.get("customer_ids", ())),
            "dim_products": sorted(found.get("product_ids", ())),
            "fact_orders": sorted(money | dates("fact_dates")),
            "fact_payments": payment_dates,
            "daily_kpis": sorted(money | dates("shift_dates")),
            "daily_payments": payment_dates,
            "customer_retention": cohorts,
            "sessions": session_dates,
            "daily_funnel": session_dates,
            "product_engagement": sorted(dates("attribution_dates", "item_dates", "click_dates")),
        },
        whole=frozenset(whole),
        newest_month=one("newest_month"),
    )


def _session_dates(
    spark: SparkSession,
    lh: Lakehouse,
    src: _Sources,
    changes: dict[str, DataFrame],
    found: dict[str, set[str]],
) -> list[dt.date]:
    """The session dates a batch of changes touches (docs/CLICKSTREAM.md), in one Spark job:
    the sessions it touches are those with a changed event, those holding a `purchase` of an
    order whose attribution may have changed (an order that appeared, went or crossed
    `cancelled`, a changed line, an order on a day whose FX rate changed; its purchase event
    dated from the day before the earliest such order date on), those of a customer whose
    versions changed (from the day before the change on) and every session of a deleted or
    restored customer (its key). Their dates are the ones gold.sessions has for
    them now and their start dates now (a late event can move a start earlier, a deleted one
    later), found from the earliest affected date on."""

    def dates(*tags: str) -> set[dt.date]:
        return {dt.date.fromisoformat(v) for tag in tags for v in found.get(tag, ())}

    clicks = src._clicks()
    session = F.col("session_id")
    touched: list[DataFrame] = []
    bounds: list[dt.date] = []
    if "clickstream" in changes:
        touched.append(inc.changed_values(changes["clickstream"], "session_id"))
        bounds += dates("click_dates")
    # Orders whose attribution may have changed: one that appeared, went or crossed
    # `cancelled` (not a status change between counted ones), a changed line, an FX change.
    order_dates = dates("attribution_dates", "item_dates", "money_dates")
    if order_dates:
        since = min(order_dates) - dt.timedelta(days=1)
        orders = []
        if "orders" in changes:
            orders.append(inc.attribution_changes(changes["orders"]))
        if "order_items" in changes:
            orders.append(inc.changed_values(changes["order_items"], "order_id"))
        orders.append(
            src.order_heads.where(F.col("order_date").isin(sorted(order_dates))).select("order_id")
        )
        purchases = clicks.where(
            (F.col("event_type") == "purchase") & (F.col("event_date") >= F.lit(since))
        ).join(reduce(DataFrame.union, orders), "order_id", "left_semi")
        touched.append(purchases.select(session))
        bounds.append(since)
    if "customers_history" in changes and dates("customer_since"):
        # From the day before the change: a session tagged with a customer shortly before the
        # customer's first version takes that version (`star.point_in_time_key`).
        since = min(dates("customer_since")) - dt.timedelta(days=1)
        changed = inc.changed_values(changes["customers_history"], "customer_id")
        touched.append(
            clicks.where(F.col("event_date") >= F.lit(since))
            .join(changed, "customer_id", "left_semi")
            .select(session)
        )
        bounds.append(since)
    gone = sorted(found.get("gone_customers", ()))
    if gone:
        touched.append(clicks.where(F.col("customer_id").isin(gone)).select(session))
    if not touched:
        return []
    wanted = reduce(DataFrame.union, touched).distinct()
    before = spark.read.format("delta").load(lh.path("gold.sessions"))
    parts = [
        ("session_dates", before.join(wanted, "session_id", "left_semi").select("session_date"))
    ]
    if bounds:
        starts_now = (
            clicks.where(F.col("event_date") >= F.lit(min(bounds)))
            .join(wanted, "session_id", "left_semi")
            .groupBy(session)
            .agg(F.to_date(F.min("event_ts")).alias("session_date"))
        )
        parts.append(("session_dates", starts_now.select("session_date")))
    result = _collect_tagged(parts)
    return sorted(dt.date.fromisoformat(v) for v in result.get("session_dates", ()))


def _collect_tagged(parts: Iterable[tuple[str, DataFrame]]) -> dict[str, set[str]]:
    """Collect the distinct non-null values of single-column frames, as strings, by tag."""
    frames = [
        df.select(F.lit(tag).alias("tag"), F.col(df.columns[0]).cast("string").alias("value"))
        for tag, df in parts
    ]
    if not frames:
        return {}
    found: dict[str, set[str]] = {}
    for row in reduce(DataFrame.union, frames).where(F.col("value").isNotNull()).collect():
        found.setdefault(row["tag"], set()).add(row["value"])
    return found


# ---------------------------------------------------------------------------------------------
# Writing gold


def _stage(
    name: str,
    rows: DataFrame,
    scope_col: str | None = None,
    scope: Sequence[Any] = (),
) -> StagedWrite:
    """Compute `rows` once and keep them cached for the checks and the publish. With
    `scope_col`, the write replaces only the rows of those keys (`rows` hold only keys in
    `scope`; Delta checks it at publish)."""
    clock = progress.Clock()
    staged = rows.persist(BATCH_STORAGE)
    count = staged.count()
    progress.table(
        f"gold.{name} computed", clock, "  gold.%s: computed, %d rows", name, count, rows_in=count
    )
    if scope_col is None:
        return StagedWrite(name, "overwrite", staged)
    return StagedWrite(name, "replace", staged, scope_col, tuple(scope))


def _overwrite(spark: SparkSession, path: str, name: str, df: DataFrame) -> TableWrite:
    df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    version, metrics = _last_commit(spark, path)
    return TableWrite(name, "overwrite", version, int(metrics.get("numOutputRows", 0)))


def _replace_scope(
    spark: SparkSession, path: str, name: str, rows: DataFrame, predicate: str
) -> TableWrite:
    """Replace the rows of `path` matching `predicate` with `rows`, in one commit (Delta
    `replaceWhere`): a key that no longer produces rows loses its old ones."""
    # mergeSchema: a column a newer landing contract adds (docs/CONTRACTS.md) joins the table
    # here, the rows outside the scope reading it as null; nothing else may change its schema.
    (
        rows.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .option("mergeSchema", "true")
        .save(path)
    )
    version, metrics = _last_commit(spark, path)
    return TableWrite(
        name,
        "replace",
        version,
        int(metrics.get("numOutputRows", 0)) - int(metrics.get("numCopiedRows", 0)),
        int(metrics.get("numDeletedRows", 0)),
    )


def _last_commit(spark: SparkSession, path: str) -> tuple[int, dict[str, int]]:
    """The version and metrics of the write just made, from Delta's log (no Spark job: a
    `history(1)` DataFrame cost one per gold table)."""
    version = current_version(spark, path)
    return version, commit_metrics(spark, path, version)
