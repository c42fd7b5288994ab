"""The quarantine table (`quarantine.records`): bad input kept with where it came from and why.

One table for every layer: bronze puts records it cannot parse at all, silver records that parse
but break a rule of the contract. A record quarantined again (a re-delivery of the same bad
line, a re-run) is not added twice: rows are keyed by layer, source and record id.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType, TimestampType

from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import (
    current_version,
    ensure_table,
    rows_inserted_since,
    stats_columns_property,
    with_conflict_retries,
)
from lakehouse.core.pii import RECORD_COLUMNS

QUARANTINE_SCHEMA = StructType(
    [
        StructField("layer", StringType(), False),
        StructField("source", StringType(), False),
        StructField("record_id", StringType(), False),
        StructField("file", StringType(), True),
        StructField("line", LongType(), True),
        StructField("ingest_date", DateType(), True),
        StructField("raw", StringType(), True),
        StructField("column_name", StringType(), True),
        StructField("reason", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("quarantined_at", TimestampType(), False),
    ]
)

# No per-file statistics of the record text or the reason (which may quote a value): the
# transaction log would keep them after VACUUM (docs/MAINTENANCE.md).
QUARANTINE_PROPERTIES = stats_columns_property(QUARANTINE_SCHEMA, RECORD_COLUMNS["quarantine"])


QUARANTINE_TABLE = "quarantine.records"


def write_quarantine(spark: SparkSession, lh: Lakehouse, bad: DataFrame) -> dict[str, int]:
    """Insert the rows of `bad` (columns of QUARANTINE_SCHEMA) not already quarantined, in one
    MERGE whatever sources they come from; returns how many were inserted per source (a source
    with nothing new is absent).

    The new rows are counted per source before the MERGE and the count is checked against the
    rows the MERGE's commit reports inserted: a concurrent writer that quarantined some of them
    in between makes this fail rather than misreport (a re-run then counts them as duplicates).
    """
    path = lh.path(QUARANTINE_TABLE)
    target = ensure_table(
        spark, path, QUARANTINE_SCHEMA, change_data_feed=False, properties=QUARANTINE_PROPERTIES
    )
    source = bad.select(*[F.col(f.name).cast(f.dataType) for f in QUARANTINE_SCHEMA.fields])
    held = target.toDF().select("layer", "source", "record_id")
    expected = {
        r["source"]: int(r["count"])
        for r in source.join(held, ["layer", "source", "record_id"], "left_anti")
        .groupBy("source")
        .count()
        .collect()
    }
    if not expected:
        return {}  # all quarantined before (a backfill re-reading a file): no commit
    before = current_version(spark, path)
    keys = "t.layer = s.layer AND t.source = s.source AND t.record_id = s.record_id"

    def merge() -> None:
        target.alias("t").merge(source.alias("s"), keys).whenNotMatchedInsertAll().execute()

    with_conflict_retries(merge, what="quarantine insert")
    inserted = rows_inserted_since(spark, path, before)
    if inserted != sum(expected.values()):
        raise QuarantineCountError(
            f"{path}: {sum(expected.values())} new quarantine rows expected "
            f"({', '.join(f'{k} {v}' for k, v in sorted(expected.items()))}), the MERGE "
            f"inserted {inserted}: another writer quarantined some of them meanwhile; run again"
        )
    return expected


class QuarantineCountError(RuntimeError):
    """The quarantine MERGE inserted a different number of rows than were new before it."""


def read_quarantine(spark: SparkSession, lh: Lakehouse) -> DataFrame:
    """Every quarantined record (empty with the quarantine schema before the first)."""
    path = lh.path(QUARANTINE_TABLE)
    ensure_table(
        spark, path, QUARANTINE_SCHEMA, change_data_feed=False, properties=QUARANTINE_PROPERTIES
    )
    return DeltaTable.forPath(spark, path).toDF()
