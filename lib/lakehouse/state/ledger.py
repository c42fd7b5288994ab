"""The run ledger (`ledger.runs`): per run, layer and table, what was read and what became of it.

Conservation is checked by the run itself before anything is recorded as complete:
bronze `records_read = records_written + duplicates + quarantined`, silver
`records_read = inserted + updated + deleted + duplicates + stale_ignored + quarantined`
(`unchanged` counts re-applied versions that were already current).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import ensure_table, with_conflict_retries

LEDGER_TABLE = "ledger.runs"
# The run ids of the streaming ingestion's micro-batches start so (`lakehouse.bronze.stream`):
# one bronze row each. The run index leaves them out (a run there is a pipeline or operations run).
STREAM_RUN_PREFIX = "stream-"
# What can become of a record read, in the order the ledger and the CLI show them: exactly one
# of these per record (`LedgerEntry.check_balance`).
OUTCOMES = (
    "records_written",
    "inserted",
    "updated",
    "deleted",
    "unchanged",
    "duplicates",
    "stale_ignored",
    "quarantined",
)
# The columns the `lakehouse` command prints for each layer's entries.
BRONZE_COLUMNS = (
    "files_read",
    "files_skipped",
    "records_read",
    "records_written",
    "duplicates",
    "quarantined",
)
SILVER_COLUMNS = (
    "records_read",
    "inserted",
    "updated",
    "deleted",
    "unchanged",
    "duplicates",
    "stale_ignored",
    "quarantined",
    "table_version",
)

LEDGER_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("layer", StringType(), False),
        StructField("table_name", StringType(), False),
        StructField("status", StringType(), False),
        StructField("files_read", LongType(), True),
        StructField("files_skipped", LongType(), True),
        StructField("records_read", LongType(), False),
        StructField("records_written", LongType(), True),
        StructField("inserted", LongType(), True),
        StructField("updated", LongType(), True),
        StructField("deleted", LongType(), True),
        StructField("unchanged", LongType(), True),
        StructField("duplicates", LongType(), True),
        StructField("stale_ignored", LongType(), True),
        StructField("quarantined", LongType(), True),
        StructField("input_version", LongType(), True),
        StructField("table_version_before", LongType(), True),
        StructField("table_version", LongType(), True),
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
        StructField("message", StringType(), True),
    ]
)


class LedgerImbalanceError(RuntimeError):
    """Records went missing or appeared from nowhere: the run must not be published."""


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class LedgerEntry:
    """One ledger row; counts that do not apply to a layer stay None."""

    run_id: str
    layer: str
    table_name: str
    records_read: int = 0
    status: str = "ok"
    files_read: int | None = None
    files_skipped: int | None = None
    records_written: int | None = None
    inserted: int | None = None
    updated: int | None = None
    deleted: int | None = None
    unchanged: int | None = None
    duplicates: int | None = None
    stale_ignored: int | None = None
    quarantined: int | None = None
    input_version: int | None = None
    table_version_before: int | None = None
    table_version: int | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime = field(default_factory=utcnow)
    message: str | None = None

    def outcomes(self) -> int:
        return sum(getattr(self, name) or 0 for name in OUTCOMES)

    def check_balance(self) -> None:
        """Raise unless every record read has exactly one outcome."""
        if self.records_read != self.outcomes():
            raise LedgerImbalanceError(
                f"run {self.run_id}, {self.layer}.{self.table_name}: read {self.records_read} "
                f"records but accounted for {self.outcomes()} ({self._describe()}); "
                "nothing from this run is published as complete"
            )

    def _describe(self) -> str:
        return ", ".join(
            f"{n}={getattr(self, n)}" for n in OUTCOMES if getattr(self, n) is not None
        )


def record(spark: SparkSession, lh: Lakehouse, entries: list[LedgerEntry]) -> None:
    """Append ledger rows (one commit)."""
    if not entries:
        return
    path = lh.path(LEDGER_TABLE)
    ensure_table(spark, path, LEDGER_SCHEMA, change_data_feed=False)
    rows = [asdict(e) for e in entries]
    df = spark.createDataFrame(rows, LEDGER_SCHEMA)
    with_conflict_retries(
        lambda: df.write.format("delta").mode("append").save(path), what="append to the ledger"
    )


def read_ledger(spark: SparkSession, lh: Lakehouse) -> DataFrame:
    """All ledger rows (empty with the ledger schema if no run was recorded yet)."""
    path = lh.path(LEDGER_TABLE)
    ensure_table(spark, path, LEDGER_SCHEMA, change_data_feed=False)
    return spark.read.format("delta").load(path)


def last_input_versions(spark: SparkSession, lh: Lakehouse, layer: str) -> dict[str, int]:
    """The input version the newest successful run of each table of `layer` consumed (tables
    never run are absent). Rows of rolled-back runs do not count; a rollback's own row (status
    `rollback`) says where the table's input stands after it (`ops.time_travel.rollback`). One
    read of the ledger for all tables: a run reads it once, not once per table."""
    ledger = read_ledger(spark, lh)
    rolled_back = ledger.where(F.col("status") == "rolled_back").select("run_id")
    rows = (
        ledger.where(F.col("layer") == layer)
        .where(F.col("status").isin("ok", "rollback"))
        .join(rolled_back, "run_id", "left_anti")
        .groupBy("table_name")
        .agg(F.max("input_version").alias("v"))
        .collect()
    )
    return {r["table_name"]: int(r["v"]) for r in rows if r["v"] is not None}
