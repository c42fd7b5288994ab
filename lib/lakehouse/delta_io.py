"""Delta Lake I/O shared by every layer: creating tables, reading commit metrics, retrying
conflicting commits. Transforms never import this; jobs and layer writers do."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from delta.exceptions import (
    ConcurrentAppendException,
    ConcurrentDeleteDeleteException,
    ConcurrentDeleteReadException,
    ConcurrentTransactionException,
    MetadataChangedException,
    ProtocolChangedException,
)
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

T = TypeVar("T")

CONFLICTS = (
    ConcurrentAppendException,
    ConcurrentDeleteReadException,
    ConcurrentDeleteDeleteException,
    ConcurrentTransactionException,
    MetadataChangedException,
    ProtocolChangedException,
)


class CommitConflictError(RuntimeError):
    """A write kept conflicting with concurrent writers after every retry."""


def is_delta_table(spark: SparkSession, path: str) -> bool:
    return bool(DeltaTable.isDeltaTable(spark, path))


def ensure_table(
    spark: SparkSession,
    path: str,
    schema: StructType,
    partition_by: Sequence[str] = (),
    change_data_feed: bool = True,
) -> DeltaTable:
    """The Delta table at `path`, created empty with `schema` if it does not exist yet."""
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    if change_data_feed:
        builder = builder.property("delta.enableChangeDataFeed", "true")
    return with_conflict_retries(builder.execute, what=f"create {path}")


def current_version(spark: SparkSession, path: str) -> int:
    """The newest committed version of the table at `path`."""
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    assert row is not None
    return int(row["version"])


def commit_metrics(spark: SparkSession, path: str, version: int | None = None) -> dict[str, int]:
    """`operationMetrics` of a commit (the newest by default) as integers."""
    history = DeltaTable.forPath(spark, path).history()
    if version is not None:
        history = history.where(f"version = {int(version)}")
    row = history.orderBy("version", ascending=False).select("operationMetrics").first()
    metrics = (row["operationMetrics"] if row else None) or {}
    return {k: int(v) for k, v in metrics.items() if str(v).lstrip("-").isdigit()}


def rows_inserted_since(spark: SparkSession, path: str, version_before: int) -> int:
    """Rows a MERGE inserted, read from its commit; 0 when it committed nothing (an insert-only
    MERGE with nothing new writes no version, so the newest commit is someone else's)."""
    after = current_version(spark, path)
    if after == version_before:
        return 0
    return commit_metrics(spark, path, after).get("numTargetRowsInserted", 0)


def with_conflict_retries(
    action: Callable[[], T],
    what: str,
    attempts: int = 5,
    base_delay_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a Delta commit, retrying with jittered exponential backoff when a concurrent writer
    conflicts with it; after `attempts` conflicts, fail with a message that says so."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except CONFLICTS as exc:
            if attempt == attempts:
                raise CommitConflictError(
                    f"{what}: still conflicting with concurrent writers after {attempts} attempts "
                    f"({type(exc).__name__}). Another job is writing the same table; run it alone "
                    "or retry later."
                ) from exc
            sleep(base_delay_s * 2 ** (attempt - 1) * (1 + random.random()))
    raise AssertionError("unreachable")
