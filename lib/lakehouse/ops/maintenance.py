"""Table maintenance (`lakehouse maintain`): compaction, Z-ordering and VACUUM of every Delta
table under the lakehouse root, within the configured time-travel window. See
docs/MAINTENANCE.md.

Every table `catalog.table_locations` finds (bronze.*, silver.*, gold.*, quality.*, ledger.*,
quarantine.*, audit.*), in name order, gets:

1. its table properties: Delta's `deletedFileRetentionDuration` and `logRetentionDuration` equal
   to `maintenance.time_travel_window_hours`, and (`delta.dataSkippingStatsColumns`) no per-file
   statistics of the columns that may hold personal data (`lakehouse.core.pii.personal_columns`:
   bronze's `raw`/`fields`, quarantine's `raw`/`reason`, hashed identities). A table whose
   statistics setting had to change is rewritten once, without a data change, so no live file
   keeps the old statistics;
2. OPTIMIZE: Z-ordered by the table's configured columns, bin-packing otherwise; skipped when
   nothing was written since the table's last OPTIMIZE. A table with a spec sets them there
   (`maintenance.zorder_by` in conf/tables/<name>.yaml or conf/gold/<name>.yaml); a table
   without one (the SCD2 tables `silver.*_history`, bronze, ...) in `maintenance.tables` of
   conf/base.yaml; a table configured in both places is an error;
3. VACUUM with `maintenance.vacuum_retention_hours`. A retention below the window is refused
   (`RetentionBelowWindowError`) unless the caller passes `allow_below_window_for_tests=True`,
   which also turns Delta's own check off for that call only.

Files and bytes are counted before and after: in the table's snapshot (`DeltaTable.detail()`)
and on storage (every file under the table's folder except its `_delta_log`, so files of old
versions and Change Data Feed files too). Each run appends one row per table to
`ledger.maintenance` (`MAINTENANCE_TABLE`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import (
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.core.config import ConfigError
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.core.delta_io import (
    STATS_COLUMNS_PROPERTY,
    commit_metadata,
    ensure_table,
    stats_columns_property,
    with_conflict_retries,
)
from lakehouse.core.errors import UserError
from lakehouse.core.pii import personal_columns
from lakehouse.core.spark import session_conf
from lakehouse.state.ledger import new_run_id, utcnow

MAINTENANCE_TABLE = "ledger.maintenance"
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
# Tables are maintained this many at a time: most of a small table's maintenance is waiting on
# the driver (log replay, listing), which overlaps well.
PARALLEL_TABLES = 4
# Operations that write no data: a table whose newest commits are only these needs no OPTIMIZE.
_NO_DATA_OPERATIONS = ("VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "UNSET TBLPROPERTIES")

MAINTENANCE_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("table_name", StringType(), False),
        StructField("zorder_by", StringType(), True),
        StructField("properties_set", StringType(), True),
        StructField("optimized", StringType(), False),
        StructField("files_before", LongType(), False),
        StructField("bytes_before", LongType(), False),
        StructField("files_after", LongType(), False),
        StructField("bytes_after", LongType(), False),
        StructField("storage_files_before", LongType(), False),
        StructField("storage_bytes_before", LongType(), False),
        StructField("storage_files_after", LongType(), False),
        StructField("storage_bytes_after", LongType(), False),
        StructField("retention_hours", DoubleType(), False),
        StructField("version_before", LongType(), False),
        StructField("version_after", LongType(), False),
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
    ]
)


class RetentionBelowWindowError(UserError, ValueError):
    """A VACUUM retention below the configured time-travel window was asked for."""


class MaintenanceConfigError(ConfigError):
    """Per-table maintenance settings that do not fit the table (unknown or partition column)."""


@dataclass(frozen=True)
class TableReport:
    """What one maintenance run did to one table. `files_*`/`bytes_*` count the table's current
    snapshot; `storage_*` every file under its folder but the log. `optimized` is `zorder`,
    `compaction`, `rewrite` (statistics setting changed; compaction included) or `skipped`."""

    table_name: str
    zorder_by: tuple[str, ...]
    properties_set: tuple[str, ...]
    optimized: str
    files_before: int
    bytes_before: int
    files_after: int
    bytes_after: int
    storage_files_before: int
    storage_bytes_before: int
    storage_files_after: int
    storage_bytes_after: int
    retention_hours: float
    version_before: int
    version_after: int
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class MaintenanceRun:
    """One `maintain` call: its tables, and the configured Z-order entries matching no table."""

    run_id: str
    retention_hours: float
    tables: tuple[TableReport, ...]
    not_found: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Plan:
    name: str
    path: str
    zorder_by: tuple[str, ...]
    properties: dict[str, str]


def check_retention(
    lh: Lakehouse, retention_hours: float | None, allow_below_window_for_tests: bool = False
) -> float:
    """The retention to VACUUM with (the configured one by default). Below the time-travel window
    it is refused unless the test-only flag is set."""
    settings = lh.config.maintenance
    window = settings.time_travel_window_hours
    hours = float(settings.vacuum_retention_hours if retention_hours is None else retention_hours)
    if hours < 0:
        raise RetentionBelowWindowError(f"a VACUUM retention cannot be negative ({hours} hours)")
    if hours < window and not allow_below_window_for_tests:
        raise RetentionBelowWindowError(
            f"a VACUUM retention of {hours:g} hours is below the time-travel window of {window} "
            "hours (maintenance.time_travel_window_hours): versions inside the window would "
            "lose their files. Only tests may go below it, explicitly."
        )
    return hours


def zorder_settings(lh: Lakehouse) -> dict[str, tuple[str, ...]]:
    """`layer.table` -> Z-order columns: a source table's from its spec (conf/tables), a gold
    table's from its spec (conf/gold), any other table's from `maintenance.tables`. A table with
    a spec named in `maintenance.tables` too is an error (`ConfigError`), whether or not its spec
    sets Z-order columns: each table's settings have one home."""
    specs = [
        *(
            (f"silver.{name}", f"tables/{name}.yaml", s.maintenance)
            for name, s in lh.tables.items()
        ),
        *((f"gold.{name}", f"gold/{name}.yaml", s.maintenance) for name, s in lh.gold.items()),
    ]
    spec_files = {name: file for name, file, _ in specs}
    out = {name: m.zorder_by for name, _, m in specs if m.zorder_by}
    for name, table in lh.config.maintenance.tables.items():
        if name in spec_files:
            raise ConfigError(
                f"maintenance.tables.{name} (conf/base.yaml or conf/{lh.config.env}.yaml): "
                f"{name} is defined in {lh.config.conf_dir or 'conf'}/{spec_files[name]}; set "
                "its Z-order columns there (maintenance.zorder_by)"
            )
        if table.zorder_by:
            out[name] = table.zorder_by
    return out


def maintain(
    spark: SparkSession,
    lh: Lakehouse,
    retention_hours: float | None = None,
    allow_below_window_for_tests: bool = False,
    only: Sequence[str] | None = None,
    run_id: str | None = None,
) -> MaintenanceRun:
    """Compact, Z-order and VACUUM every table (or those named in `only`) and record the run in
    `ledger.maintenance`; see the module docstring. Every setting is checked against every
    table before anything is written. Holds the lakehouse's run lock (`lakehouse.state.lock`)."""
    from lakehouse.state.lock import run_lock

    hours = check_retention(lh, retention_hours, allow_below_window_for_tests)
    run_id = run_id or f"maintain-{new_run_id()}"
    with run_lock(lh, run_id, "maintain"):
        return _maintain(spark, lh, hours, only, run_id)


def _maintain(
    spark: SparkSession, lh: Lakehouse, hours: float, only: Sequence[str] | None, run_id: str
) -> MaintenanceRun:
    from lakehouse.gold.published import advance, latest_versions
    from lakehouse.state.catalog import table_locations

    zorders = zorder_settings(lh)
    locations = table_locations(spark, lh)
    if only:
        unknown = sorted(set(only) - set(locations))
        if unknown:
            raise UserError(
                f"no such table under {lh.root}: {', '.join(unknown)} "
                f"(tables: {', '.join(sorted(locations))})"
            )
        locations = {n: p for n, p in locations.items() if n in only}
    plans = [
        _plan(
            spark,
            lh,
            name,
            path,
            zorders.get(name, ()),
            personal_columns(lh.tables, name.partition(".")[0]),
        )
        for name, path in sorted(locations.items())
    ]
    gold_before = latest_versions(spark, lh)
    with (
        commit_metadata(spark, run_id),
        _retention_check(spark, hours, lh),
        ThreadPoolExecutor(PARALLEL_TABLES) as pool,
    ):
        reports = list(pool.map(lambda plan: _maintain_table(spark, plan, hours), plans))
        # Compaction keeps every row: readers pinned to a published version move to the
        # compacted one, whose old files VACUUM may remove once the window has passed.
        advance(spark, lh, run_id, gold_before)
    _record(spark, lh, run_id, reports)
    not_found = tuple(sorted(n for n in zorders if n not in locations and not only))
    return MaintenanceRun(run_id, hours, tuple(reports), not_found)


def read_maintenance(spark: SparkSession, lh: Lakehouse) -> Any:
    """Every recorded maintenance row (columns of MAINTENANCE_SCHEMA)."""
    path = lh.path(MAINTENANCE_TABLE)
    ensure_table(spark, path, MAINTENANCE_SCHEMA, change_data_feed=False)
    return spark.read.format("delta").load(path)


@contextmanager
def _retention_check(spark: SparkSession, hours: float, lh: Lakehouse) -> Iterator[None]:
    """Delta's own retention check stays on, except for an explicitly allowed retention below
    the window, for this call only."""
    if hours >= lh.config.maintenance.time_travel_window_hours:
        yield
        return
    with session_conf(spark, {RETENTION_CHECK_CONF: "false"}):
        yield


def _plan(
    spark: SparkSession,
    lh: Lakehouse,
    name: str,
    path: str,
    zorder_by: tuple[str, ...],
    personal: frozenset[str],
) -> _Plan:
    detail = DeltaTable.forPath(spark, path).detail().first()
    assert detail is not None
    schema = spark.read.format("delta").load(path).schema
    partitions = tuple(detail["partitionColumns"] or ())
    current = dict(detail["properties"] or {})
    window = f"interval {lh.config.maintenance.time_travel_window_hours} hours"
    desired = {
        "delta.deletedFileRetentionDuration": window,
        "delta.logRetentionDuration": window,
        **stats_columns_property(schema, personal, partitions),
    }
    stats = desired.get(STATS_COLUMNS_PROPERTY, current.get(STATS_COLUMNS_PROPERTY))
    where = f"Z-order columns of {name} (its spec, or maintenance.tables)"
    names = [f.name for f in schema.fields]
    for col in zorder_by:
        if col not in names:
            raise MaintenanceConfigError(
                f"{where}: '{col}' is not a column of {name} (columns: {', '.join(names)})"
            )
        if col in partitions:
            raise MaintenanceConfigError(
                f"{where}: '{col}' is a partition column of {name}; Delta Z-orders files inside "
                "a partition, never by its partition columns"
            )
        if col in personal or (stats is not None and col not in stats.split(",")):
            raise MaintenanceConfigError(
                f"{where}: '{col}' keeps no statistics in {name} (personal data, or not in "
                f"{STATS_COLUMNS_PROPERTY}), so Z-ordering by it would skip nothing"
            )
    changes = {k: v for k, v in desired.items() if current.get(k) != v}
    return _Plan(name, path, zorder_by, changes)


def _maintain_table(spark: SparkSession, plan: _Plan, hours: float) -> TableReport:
    started = utcnow()
    table = DeltaTable.forPath(spark, plan.path)
    version_before = _version(table)
    files_before, bytes_before = _snapshot_usage(table)
    storage_before = _storage_usage(spark, plan.path)
    if plan.properties:
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(plan.properties.items()))
        with_conflict_retries(
            lambda: spark.sql(f"ALTER TABLE delta.`{plan.path}` SET TBLPROPERTIES ({assignments})"),
            what=f"set the maintenance properties of {plan.name}",
        )
    optimized = "skipped"
    if STATS_COLUMNS_PROPERTY in plan.properties and files_before:
        _rewrite(spark, plan)
        optimized = "rewrite"
    if files_before and _needs_optimize(table, plan.zorder_by):
        builder = table.optimize()
        if plan.zorder_by:
            with_conflict_retries(
                lambda: builder.executeZOrderBy(*plan.zorder_by), what=f"Z-order {plan.name}"
            )
            optimized = "zorder"
        else:
            with_conflict_retries(builder.executeCompaction, what=f"compact {plan.name}")
            optimized = "compaction" if optimized == "skipped" else optimized
    files_after, bytes_after = _snapshot_usage(table)
    crash_point("maintain.table")
    table.vacuum(hours)
    storage_after = _storage_usage(spark, plan.path)
    return TableReport(
        table_name=plan.name,
        zorder_by=plan.zorder_by,
        properties_set=tuple(sorted(plan.properties)),
        optimized=optimized,
        files_before=files_before,
        bytes_before=bytes_before,
        files_after=files_after,
        bytes_after=bytes_after,
        storage_files_before=storage_before[0],
        storage_bytes_before=storage_before[1],
        storage_files_after=storage_after[0],
        storage_bytes_after=storage_after[1],
        retention_hours=hours,
        version_before=version_before,
        version_after=_version(table),
        started_at=started,
        finished_at=utcnow(),
    )


def _rewrite(spark: SparkSession, plan: _Plan) -> None:
    """Rewrite every file of the table without a data change (no Change Data Feed rows, readers
    see the same rows), so live files carry statistics of the new setting only."""

    def write() -> None:
        current = spark.read.format("delta").load(plan.path)
        (
            current.write.format("delta")
            .mode("overwrite")
            .option("dataChange", "false")
            .save(plan.path)
        )

    with_conflict_retries(write, what=f"rewrite {plan.name} with its new statistics setting")


def _needs_optimize(table: DeltaTable, zorder_by: tuple[str, ...]) -> bool:
    """False when nothing but maintenance happened since the last OPTIMIZE with these
    settings."""
    import json

    for row in table.history(50).select("operation", "operationParameters").collect():
        op = row["operation"]
        if op in _NO_DATA_OPERATIONS:
            continue
        if op != "OPTIMIZE":
            return True
        params = row["operationParameters"] or {}
        done = tuple(json.loads(params.get("zOrderBy") or "[]"))
        return done != tuple(zorder_by)
    return True


def _version(table: DeltaTable) -> int:
    row = table.history(1).select("version").first()
    assert row is not None
    return int(row["version"])


def _snapshot_usage(table: DeltaTable) -> tuple[int, int]:
    row = table.detail().select("numFiles", "sizeInBytes").first()
    assert row is not None
    return int(row["numFiles"] or 0), int(row["sizeInBytes"] or 0)


def _storage_usage(spark: SparkSession, path: str) -> tuple[int, int]:
    """Files and bytes under the table's folder, its transaction log left out."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    root = jvm.org.apache.hadoop.fs.Path(path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    files = size = 0
    entries = fs.listFiles(root, True)
    while entries.hasNext():
        status = entries.next()
        if "/_delta_log/" in status.getPath().toString():
            continue
        files += 1
        size += int(status.getLen())
    return files, size


def _record(
    spark: SparkSession, lh: Lakehouse, run_id: str, reports: Sequence[TableReport]
) -> None:
    if not reports:
        return
    path = lh.path(MAINTENANCE_TABLE)
    ensure_table(spark, path, MAINTENANCE_SCHEMA, change_data_feed=False)
    rows = []
    for r in reports:
        row = asdict(r)
        row["zorder_by"] = ",".join(r.zorder_by) or None
        row["properties_set"] = ",".join(r.properties_set) or None
        rows.append({"run_id": run_id, **row})
    df = spark.createDataFrame(rows, MAINTENANCE_SCHEMA)
    with_conflict_retries(
        lambda: df.write.format("delta").mode("append").save(path),
        what="record the maintenance run",
    )
