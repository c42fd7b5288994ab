"""The whole daily pipeline at any age of the lakehouse (issue #17: "the history figure becomes
the whole daily pipeline with 5, 50 and 365 days of history behind it").

A year of days cannot go through generate, bronze, silver and gold in the benchmark's time, so
the older days are copies of day 1, written straight into the tables the real pipeline made:

1. `life0/`: day 1 of the landing through the whole pipeline (bronze, silver, quality, gold).
2. `life<N>/`: `life0/` plus N - 1 copies of day 1, copy k moved k days back: every date and
   timestamp column k days earlier, and the ids of every event (`order_id`, `event_id`,
   `session_id`, `payment_id`, bronze's `_record_id`, the run ids) prefixed `h<k>-`, so each copy
   is a day of new orders, clicks and payments. Customers and products keep their ids: the
   copies are the same shop's returning customers buying the same products, so a customer or
   product that changes on the measured day reaches back into every day of history, as it
   would in a real lakehouse (gold's fact scope, silver's look-ups). Copied are the tables
   that grow by day: every bronze source (partitioned by `ingest_date`), the silver tables
   partitioned by a date (orders, order_items, payments, clickstream) or keyed by one
   (fx_rates: each copied day has its rates, so gold can price it), and the gold tables scoped
   by a date (fact_orders, fact_payments, daily_kpis, daily_payments). Not copied (they are
   per customer, product or month, and a year of them is a year of changes the generator did
   not make): customers, products, their histories, the dimensions, retention, the ledger,
   quarantine and quality results. `dim_date` is rebuilt by the measured run (its span
   moved), as it is every day a new date arrives.
3. The copies are appended with Delta's `dataChange=false` (the option for data that is
   already part of the table): the Change Data Feed, which silver reads from bronze and gold
   from silver, does not show them, so the measured day's batch is exactly day 2, whatever the
   history; the measured runs' ledger rows are compared across the histories to prove it.

The measured operation: day 2 through `run_pipeline` on a fresh copy of each template, with a
per-step record (`steps.StepRecorder`). Ratio = median(largest history) / median(smallest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, TimestampType

from lakehouse.core import progress
from lakehouse.core.context import Lakehouse
from lakehouse.pipeline import run_pipeline
from lakehouse_dev.bench.measure import copy_table_dir, log, timed
from lakehouse_dev.bench.scales import ALL_STEPS, DAY1, DAY2
from lakehouse_dev.bench.steps import StepRecorder

# Ids that stay: the copies are the same customers buying the same products.
KEPT_IDS = frozenset({"customer_id", "product_id"})
# The day columns a table grows by (fx_rates: a rate a day, keyed by its day).
DAY_COLUMNS = frozenset(
    {"ingest_date", "order_date", "event_date", "rate_date", "session_date", "date"}
)


def grown_tables(lh: Lakehouse) -> dict[str, str]:
    """The tables that grow by day, with the day column their copies are laid out by."""
    out = {f"bronze.{s}": "ingest_date" for s in lh.sources}
    for name, spec in lh.tables.items():
        days = [c for c in (*spec.partition_by, *spec.keys) if c in DAY_COLUMNS]
        if days:
            out[f"silver.{name}"] = days[0]
    for name, gold in lh.gold.items():
        if gold.scope in DAY_COLUMNS:
            out[f"gold.{name}"] = gold.scope
    return out


def shifted(df: DataFrame, k: Column) -> DataFrame:
    """`df` as it would be `k` days earlier, with its events' ids prefixed `h<k>-`."""
    cols = []
    for f in df.schema.fields:
        c = F.col(f"`{f.name}`")
        if isinstance(f.dataType, StringType) and f.name.endswith("_id") and f.name not in KEPT_IDS:
            c = F.concat(F.lit("h"), k.cast("string"), F.lit("-"), c)
        elif isinstance(f.dataType, DateType):
            c = F.date_sub(c, k)
        elif isinstance(f.dataType, TimestampType):
            c = c - F.make_dt_interval(days=k)
        cols.append(c.alias(f.name))
    return df.select(*cols)


def copy_history(spark: SparkSession, lh: Lakehouse, days: int) -> dict[str, int]:
    """Append `days - 1` copies of the lakehouse's day 1 to every table that grows by day (see
    the module's docstring); returns the rows of each table after."""
    sizes: dict[str, int] = {}
    for table, day_col in grown_tables(lh).items():
        path = lh.path(table)
        current = spark.read.format("delta").load(path)
        if days > 1:
            ks = spark.range(1, days).select(F.col("id").cast("int").alias("_k"))
            copies = shifted(current.crossJoin(ks), F.col("_k")).drop("_k")
            partitioned = bool(
                spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["partitionColumns"]  # type: ignore[index]
            )
            if partitioned:
                # One file per day, as a day's write leaves it.
                copies = copies.repartition(day_col)
            else:
                # Unpartitioned gold: files of about a month of days each, as maintenance
                # (Z-ordered by the day) leaves them.
                copies = copies.repartitionByRange(max(1, days // 30), day_col)
            (copies.write.format("delta").mode("append").option("dataChange", "false").save(path))
        sizes[table] = spark.read.format("delta").load(path).count()
    return sizes


def measure(bench: Any, lifetimes: Sequence[int]) -> None:
    """The figure: `lifetimes` (e.g. 5, 50, 365) days of history, the day after measured
    alternately `bench.reps` times (`bench` is the `runner.Bench` of the run)."""
    spark: SparkSession = bench.spark
    scale = bench.scale
    landing = "landing-life"
    if not bench.stage_done("life0"):
        bench.generate(landing, scale.lifetime_orders)
        log("lifetime: day 1 through the whole pipeline (life0)")
        with timed() as t:
            run_pipeline(
                spark,
                bench.lakehouse("life0", landing),
                bench.run_id("life-day1"),
                ALL_STEPS,
                [str(DAY1)],
            )
        bench.details.append(f"lifetime template: day 1 through the whole pipeline: {t[0]:.1f} s")
        bench.mark_done("life0")
    sizes: dict[int, dict[str, int]] = {}
    for days in lifetimes:
        name = f"life{days}"
        if bench.stage_done(name):
            continue
        log(f"lifetime: {days} days of history ({name})")
        copy_table_dir(bench.root / "life0", bench.root / name)
        with timed() as t:
            sizes[days] = copy_history(spark, bench.lakehouse(name, landing), days)
        bench.details.append(
            f"lifetime template of {days} days written in {t[0]:.1f} s: "
            + ", ".join(f"{k} {v:,}" for k, v in sizes[days].items())
        )
        bench.mark_done(name)
    samples: dict[int, list[float]] = {d: [] for d in lifetimes}
    steps: dict[int, list[dict[str, Any]]] = {}
    ledgers: dict[int, list[tuple[Any, ...]]] = {}
    for rep in range(bench.reps):
        order = list(lifetimes) if rep % 2 == 0 else list(reversed(lifetimes))
        for days in order:
            lh = bench.fresh(f"life{days}", "work-life", landing)
            run_id = bench.run_id(f"life{days}")
            log(f"lifetime rep {rep + 1}/{bench.reps}: day 2 with {days} days of history")
            recorder = StepRecorder(spark, bench.root / "work-life")
            with progress.listening(recorder), timed() as t:
                run_pipeline(spark, lh, run_id, ALL_STEPS, [str(DAY2)])
            samples[days].append(t[0])
            steps[days] = [r.as_dict() for r in recorder.rows(run_id)]
            ledgers[days] = _ledger(spark, lh, run_id)
            log(f"  {t[0]:.1f} s")
    first = ledgers[lifetimes[0]]
    same = all(ledgers[d] == first for d in lifetimes)
    bench.figures["lifetime"] = {
        "days": list(lifetimes),
        "orders_per_day": scale.lifetime_orders,
        "samples": {str(d): s for d, s in samples.items()},
        "steps": {str(d): s for d, s in steps.items()},
        "same_ledger": same,
        "ledger": [list(r) for r in first],
    }
    if not same:
        raise AssertionError(
            "the measured day's ledger differs between histories: the copies leaked into it"
        )


def _ledger(spark: SparkSession, lh: Lakehouse, run_id: str) -> list[tuple[Any, ...]]:
    """The run's ledger rows (what each layer read and wrote), without times and versions."""
    cols = ["layer", "table_name", "status", "files_read", "records_read", "records_written"]
    cols += ["inserted", "updated", "deleted", "duplicates", "stale_ignored", "quarantined"]
    rows = (
        spark.read.format("delta")
        .load(lh.path("ledger.runs"))
        .where(F.col("run_id") == run_id)
        .select(*cols)
        .collect()
    )
    return sorted(tuple(r) for r in rows)
