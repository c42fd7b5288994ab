"""Delta Lake I/O shared by every layer: creating tables, reading commit metrics, retrying
conflicting commits. Transforms never import this; jobs and layer writers do."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

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

from lakehouse.core.spark import session_conf

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
    properties: Mapping[str, str] | None = None,
) -> DeltaTable:
    """The Delta table at `path`, created empty with `schema` (and table `properties`) if it
    does not exist yet. An existing table is returned as it is, without Delta's create command
    (which compares schema and properties and cost about a second a table, on every run),
    except that the columns of `schema` it lacks are added (`add_missing_columns`)."""
    if DeltaTable.isDeltaTable(spark, path):
        table = DeltaTable.forPath(spark, path)
        if add_missing_columns(spark, table, path, schema):
            # A handle from before the change would fail the next write (the schema changed
            # since its DataFrame was analysed).
            return DeltaTable.forPath(spark, path)
        return table
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    if change_data_feed:
        builder = builder.property("delta.enableChangeDataFeed", "true")
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    return with_conflict_retries(builder.execute, what=f"create {path}")


def add_missing_columns(
    spark: SparkSession, table: DeltaTable, path: str, schema: StructType
) -> list[str]:
    """Delta schema evolution for a column a newer landing contract (or code) adds: the fields
    of `schema` the table lacks are added, nullable, at its end, in one metadata-only commit
    (`ALTER TABLE ... ADD COLUMNS`). No data file is rewritten: the rows written before read the
    new columns as null, and every earlier version keeps its schema for time travel. Returns the
    names added (none: nothing is committed)."""
    have = {f.name.lower() for f in table.toDF().schema.fields}
    missing = [f for f in schema.fields if f.name.lower() not in have]
    if not missing:
        return []
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
    with_conflict_retries(
        lambda: spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({columns})"),
        what=f"add the columns {columns} to {path}",
    )
    return [f.name for f in missing]


STATS_COLUMNS_PROPERTY = "delta.dataSkippingStatsColumns"
# Types Delta keeps min/max statistics for (a listed boolean, map or array column is an error).
_STATS_TYPES = (
    "string",
    "byte",
    "short",
    "integer",
    "long",
    "float",
    "double",
    "decimal",
    "date",
    "timestamp",
    "timestamp_ntz",
)


def stats_columns_property(
    schema: StructType, exclude: Iterable[str], partition_by: Sequence[str] = ()
) -> dict[str, str]:
    """Table properties that keep Delta from writing per-file statistics (min/max values, which
    the transaction log keeps even after VACUUM) of the `exclude` columns: every other column of
    `schema` Delta can keep statistics for is listed in `delta.dataSkippingStatsColumns`.
    Partition columns are left out (Delta refuses them). Empty when nothing is excluded."""
    excluded = set(exclude)
    if not excluded & {f.name for f in schema.fields}:
        return {}
    kept = [
        f.name
        for f in schema.fields
        if f.name not in excluded
        and f.name not in partition_by
        and f.dataType.typeName() in _STATS_TYPES
    ]
    return {STATS_COLUMNS_PROPERTY: ",".join(kept)}


USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@contextmanager
def commit_metadata(spark: SparkSession, value: str) -> Iterator[None]:
    """Every Delta commit inside carries `value` as `userMetadata` in its commit info (the
    table's history shows it); the previous setting is restored afterwards."""
    with session_conf(spark, {USER_METADATA_CONF: value}):
        yield


def delete_path(spark: SparkSession, uri: str) -> None:
    """Delete a folder (recursively) through Hadoop's file system, so local paths and s3a://
    URIs behave the same; a missing folder is no error."""
    jvm = spark._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(path, True)


def _delta_log(spark: SparkSession, path: str) -> Any:
    jvm = spark._jvm
    assert jvm is not None
    return jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)


def current_version(spark: SparkSession, path: str) -> int:
    """The newest committed version of the table at `path`.

    Asks Delta's log directly (`DeltaLog.update`, which lists the log for new commits): reading
    `history(1)` through a DataFrame cost a Spark job and 0.15 s, some 50 times a run."""
    jvm = spark._jvm
    assert jvm is not None
    none = jvm.scala.Option.empty()
    version = int(_delta_log(spark, path).update(False, none, none).version())
    if version < 0:
        raise ValueError(f"{path} is not a Delta table")
    return version


def commit_metrics(spark: SparkSession, path: str, version: int) -> dict[str, int]:
    """`operationMetrics` of the commit `version` as integers, read from the commit's own log
    file through Delta's log store (any file system): no Spark job, where `history()` through a
    DataFrame cost one and 0.2-0.3 s, about ten times a run. Meant for a commit just made (an
    old one's file may be gone with Delta's log clean-up)."""
    jvm = spark._jvm
    assert jvm is not None
    return _int_metrics(_commit_info(spark, path, version))


def _commit_info(spark: SparkSession, path: str, version: int) -> dict[str, Any]:
    """The `commitInfo` action of commit `version`, from its log file (see `commit_metrics`)."""
    jvm = spark._jvm
    assert jvm is not None
    log = _delta_log(spark, path)
    commit_file = jvm.org.apache.hadoop.fs.Path(log.logPath(), f"{version:020d}.json")
    lines = log.store().read(commit_file, log.newDeltaHadoopConf())
    info: dict[str, Any] = {}
    for line in jvm.scala.collection.JavaConverters.seqAsJavaList(lines):
        action = json.loads(line)
        if "commitInfo" in action:
            info = action["commitInfo"]
    return info


def _int_metrics(info: dict[str, Any]) -> dict[str, int]:
    metrics = info.get("operationMetrics") or {}
    return {k: int(v) for k, v in metrics.items() if str(v).lstrip("-").isdigit()}


def rows_inserted_since(spark: SparkSession, path: str, version_before: int) -> int:
    """Rows a MERGE inserted, read from its commit; 0 when it committed nothing (an insert-only
    MERGE with nothing new writes no version, so the newest commit is someone else's). Under
    `commit_metadata` (every run and stream micro-batch writes so) its commit is the newest one
    after `version_before` carrying this session's user metadata: another writer committing to
    the table meanwhile (the stream beside the daily run) is not mistaken for it."""
    after = current_version(spark, path)
    mine = spark.conf.get(USER_METADATA_CONF, None)
    for version in range(after, version_before, -1):
        info = _commit_info(spark, path, version)
        if mine is None or info.get("userMetadata") == mine:
            return _int_metrics(info).get("numTargetRowsInserted", 0)
    return 0


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
