"""Which versions of the gold tables belong together: the record gold's readers pin to.

Delta commits one table at a time, so a run stopped while it publishes gold (after
`fact_orders`, before `daily_kpis`) leaves the newest versions of the gold tables a mix of two
runs until the next run publishes again. Readers therefore do not read the newest versions: they
read the versions of the newest *published set*, `gold._published`, one row per gold table,
appended in one commit after every table of a run has been written (`publish_gold`), so a set
is there whole or not at all.

- `read_gold(spark, lh, table)` reads a gold table at its published version (the newest version
  when nothing has been recorded yet: a lakehouse from before this record, until its next run).
  The dashboard, the terminal summary and the notebooks read gold through it.
- A run records the newest version of every gold table, those it did not write included: a
  table a run leaves unchanged holds the same rows as at the previous publish, or the rows a
  stopped run wrote, which are the same rows (a stopped run's changes are a subset of the
  rerun's, which writes every table the stopped run wrote; see docs/RELIABILITY.md).
- Operations that rewrite gold without changing what it means (maintenance's compaction,
  erasure) move a table's published version to their own new version only when the table was
  at its published version before (`advance`): on top of a stopped run's unpublished write they
  leave the record alone, and the next run publishes.
- A rollback restores `gold/_published` with the tables it restores (a run's commits include
  its publish record), so readers return to the previous set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import current_version

PUBLISHED_TABLE = "gold._published"
PUBLISHED_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("table", StringType(), False),
        StructField("version", LongType(), False),
        StructField("published_at", TimestampType(), False),
    ]
)


def published_versions(spark: SparkSession, lh: Lakehouse) -> dict[str, int]:
    """Gold table name (without `gold.`) -> the Delta version of the newest published set; empty
    when no set has been recorded."""
    path = lh.path(PUBLISHED_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return {}
    records = spark.read.format("delta").load(path)
    newest = records.agg(F.max("published_at")).first()
    if newest is None or newest[0] is None:
        return {}
    rows = records.where(F.col("published_at") == F.lit(newest[0])).collect()
    return {r["table"].removeprefix("gold."): int(r["version"]) for r in rows}


def latest_versions(
    spark: SparkSession, lh: Lakehouse, tables: Iterable[str] | None = None
) -> dict[str, int]:
    """Gold table name -> its newest Delta version, for the gold tables that exist."""
    out: dict[str, int] = {}
    for table in tables if tables is not None else lh.gold:
        path = lh.path(f"gold.{table}")
        if DeltaTable.isDeltaTable(spark, path):
            out[table] = current_version(spark, path)
    return out


def record_published(
    spark: SparkSession, lh: Lakehouse, run_id: str, versions: dict[str, int]
) -> None:
    """Append one published set (every table of `versions`) in one commit."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [(run_id, f"gold.{t}", int(v), now) for t, v in sorted(versions.items())]
    (
        spark.createDataFrame(rows, PUBLISHED_SCHEMA)
        .write.format("delta")
        .mode("append")
        .save(lh.path(PUBLISHED_TABLE))
    )


def advance(spark: SparkSession, lh: Lakehouse, run_id: str, before: dict[str, int]) -> None:
    """After an operation that rewrote gold tables without changing what they mean
    (compaction, erasure): each table whose version before it (`before`) was its published one
    is published at its newest version; the others keep theirs. Nothing is recorded when no
    set was recorded before or nothing moved."""
    published = published_versions(spark, lh)
    if not published:
        return
    now = latest_versions(spark, lh, published)
    moved = {
        t: now[t] for t, v in published.items() if t in now and before.get(t) == v and now[t] != v
    }
    if moved:
        record_published(spark, lh, run_id, {**published, **moved})


def read_gold(
    spark: SparkSession, lh: Lakehouse, table: str, versions: dict[str, int] | None = None
) -> DataFrame:
    """`gold.<table>` as the newest published set has it (its newest version when no set has
    been recorded, or the table is not in it). `versions`: the set, when the caller read it
    already (`published_versions`) for several tables."""
    reader = spark.read.format("delta")
    if versions is None:
        versions = published_versions(spark, lh)
    version = versions.get(table)
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(lh.path(f"gold.{table}"))
