"""What a run's quality suites check: the rows the run wrote, not the whole history.

A daily run changes a day's worth of rows; checking every row of every table each day would
make the gate's cost grow with the lakehouse's age (issue #17). So the gate checks a *scope*:

- silver: the current live row of every key changed since the versions gold last consumed
  (`unpublished_rows`, from the tables' Change Data Feed): exactly what the next gold publish
  would read for the first time; for a table no gold table reads, since the version the last
  passed silver gate checked (`checked_versions`);
- gold: the rows the run staged (`gold.build.StagedGold.scopes`).

`lakehouse.quality.runner.run_quality(..., scopes=...)` then runs row-wise checks on the scope,
uniqueness on the scope's keys across the whole table (reading only the key columns), size and
size anomalies on the whole table (a count), and cross-table checks for the scope's keys only.
Full scans of every row run in `lakehouse maintain` (docs/QUALITY.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import current_version, ensure_table

CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


def latest_rows(changes: DataFrame, keys: Sequence[str]) -> DataFrame:
    """The newest post-image of every key in a Change Data Feed frame (`changes`: a table's
    columns plus `_change_type`, `_commit_version`, `_commit_timestamp`), without the feed's
    columns; a key whose newest change removed the row is left out, and so is a tombstone
    (`_is_deleted`, when the table has the column). Pure: no I/O."""
    current = changes.where(F.col("_change_type") != "update_preimage")
    # Within one commit a row can be removed and inserted again (a MERGE moving it between
    # partitions): the post-image wins over the removal.
    newest_first = Window.partitionBy(*keys).orderBy(
        F.col("_commit_version").desc(),
        F.when(F.col("_change_type") == "delete", 1).otherwise(0),
    )
    newest = (
        current.withColumn("_rank", F.row_number().over(newest_first))
        .where((F.col("_rank") == 1) & (F.col("_change_type") != "delete"))
        .drop("_rank", *CDF_COLUMNS)
    )
    if "_is_deleted" in newest.columns:
        newest = newest.where(~F.col("_is_deleted"))
    return newest


def unpublished_rows(
    spark: SparkSession, path: str, keys: Sequence[str], after_version: int
) -> DataFrame:
    """The live rows of the Delta table at `path` changed in a version after `after_version`
    (up to the newest), one per key: `latest_rows` of its Change Data Feed. No rows when the
    table has no newer version."""
    if current_version(spark, path) <= after_version:
        return spark.read.format("delta").load(path).limit(0)
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", after_version + 1)
        .load(path)
    )
    return latest_rows(changes, keys)


def keyed_rows(table: DataFrame, scope: DataFrame, columns: Sequence[str]) -> DataFrame:
    """The rows of `table` (only `columns`) whose `columns` match a row of `scope`: every copy
    of each key the scope holds, wherever it is in the table. Reads only `columns` of `table`."""
    keys = scope.select(*columns).distinct()
    return table.select(*columns).join(keys, list(columns), "left_semi")


# Silver tables no gold table reads have no consumed version: the versions their passed silver
# gates checked, one row per table per run (`unpublished_silver` in lakehouse.pipeline).
CHECKED_TABLE = "quality.checked_versions"
CHECKED_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("table_name", StringType(), False),
        StructField("version", LongType(), False),
        StructField("checked_at", TimestampType(), False),
    ]
)


def record_checked(
    spark: SparkSession, lh: Lakehouse, run_id: str, versions: Mapping[str, int]
) -> None:
    """Record that run `run_id`'s passed silver gate checked `silver.<table>` up to each
    version (one commit; nothing when there is nothing to record)."""
    if not versions:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [(run_id, name.split(".", 1)[1], int(v), now) for name, v in versions.items()]
    ensure_table(spark, lh.path(CHECKED_TABLE), CHECKED_SCHEMA, change_data_feed=False)
    spark.createDataFrame(rows, CHECKED_SCHEMA).write.format("delta").mode("append").save(
        lh.path(CHECKED_TABLE)
    )


def checked_versions(spark: SparkSession, lh: Lakehouse) -> dict[str, int]:
    """Table -> the newest version a passed silver gate checked it at."""
    path = lh.path(CHECKED_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return {}
    rows = (
        spark.read.format("delta")
        .load(path)
        .groupBy("table_name")
        .agg(F.max("version").alias("version"))
        .collect()
    )
    return {r["table_name"]: int(r["version"]) for r in rows}
