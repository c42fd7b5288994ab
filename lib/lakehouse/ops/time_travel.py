"""Time travel over the lakehouse: the tables and their commit history (Delta's `DESCRIBE
HISTORY`, the only sense of "history" here), a table as of a version or time, a past run's KPIs
reproduced from the silver versions it consumed, and the rollback of a run.

Tables are named `layer.folder` as `Lakehouse.path` takes them (`silver.orders`, `bronze._files`,
`gold._consumed_versions`).

Every commit a pipeline run makes carries the run id as Delta `userMetadata`
(`pipeline.run_pipeline`), so a table's commit history says which run wrote each version. A rollback
restores each table the run wrote to the version before the run's first commit in it; the ledger
(`ledger.runs`) and the quality results are logs and are never rolled back: the rollback appends
to the ledger what it did and marks the run's rows rolled back, and silver's bronze pointer is
set so the next run re-reads exactly what the rollback took away (docs/TIME_TRAVEL.md).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import commit_metadata, current_version
from lakehouse.core.errors import UserError
from lakehouse.ops.erasure import AUDIT_TABLE
from lakehouse.ops.maintenance import MAINTENANCE_TABLE
from lakehouse.state.ledger import (
    LEDGER_TABLE,
    LedgerEntry,
    new_run_id,
    read_ledger,
    record,
    utcnow,
)

# Append-only logs: never rolled back (a rollback is recorded in them instead).
# `quality.checked_versions` (lakehouse.quality.scope) holds versions a passed silver gate
# checked: a restore makes a newer version, whose changes the next gate reads from there.
LOG_TABLES = (
    LEDGER_TABLE,
    MAINTENANCE_TABLE,
    "quality.results",
    "quality.checked_versions",
    AUDIT_TABLE,
)
# userMetadata of commits that are not pipeline runs and must never be undone by a cascade.
NOT_RUNS = ("erasure:",)
MAINTENANCE_PREFIX = "maintain-"
# Commits that change no row: a rollback steps over them.
CONTENT_PRESERVING = ("OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES")
ROLLBACK_PREFIX = "rollback of "


class RollbackRefused(UserError):
    """The rollback cannot be done as asked; the message says why and what would allow it."""


class TableNotFound(UserError):
    """No Delta table of that name under the lakehouse root."""


def list_tables(spark: SparkSession, lh: Lakehouse) -> dict[str, str]:
    """Every Delta table under the lakehouse root, by name `<layer>.<folder>` (for example
    `silver.orders`, `bronze._files`, `gold._consumed_versions`, `ledger.runs`), to its location
    (`lh.path(name)`). Staging folders (`_staging`) are not tables of the lakehouse."""
    jvm = spark._jvm
    assert jvm is not None
    base = jvm.org.apache.hadoop.fs.Path(lh.root)
    fs = base.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(base):
        return {}
    found: dict[str, str] = {}
    for layer in fs.listStatus(base):
        layer_name = layer.getPath().getName()
        if not layer.isDirectory() or layer_name.startswith("_") or layer_name.startswith("."):
            continue
        for table in fs.listStatus(layer.getPath()):
            if table.isDirectory() and fs.exists(
                jvm.org.apache.hadoop.fs.Path(table.getPath(), "_delta_log")
            ):
                name = f"{layer_name}.{table.getPath().getName()}"
                found[name] = lh.path(name)
    return dict(sorted(found.items()))


def table_location(spark: SparkSession, lh: Lakehouse, name: str) -> str:
    """The location of table `name` (`layer.folder`); `TableNotFound` names the tables there
    are when it does not exist."""
    tables = list_tables(spark, lh)
    if name not in tables:
        raise TableNotFound(
            f"no table {name!r} under {lh.root} (tables: {', '.join(tables) or 'none yet'})"
        )
    return tables[name]


def show(
    spark: SparkSession, lh: Lakehouse, name: str, as_of: str | int | None = None
) -> DataFrame:
    """Table `name` now, or as of a version (an int, or digits) or a timestamp (ISO text)."""
    reader = spark.read.format("delta")
    if as_of is not None:
        text = str(as_of).strip()
        if re.fullmatch(r"\d+", text):
            reader = reader.option("versionAsOf", int(text))
        else:
            reader = reader.option("timestampAsOf", text)
    return reader.load(table_location(spark, lh, name))


def commit_history(spark: SparkSession, lh: Lakehouse, name: str) -> DataFrame:
    """The Delta commit history of `name` (`DESCRIBE HISTORY`), newest first: `version`,
    `timestamp`, `operation`, `run_id` (the writing run's id from the commit's userMetadata),
    `rows_out` (rows written, where the operation reports them), `operationParameters`,
    `operationMetrics`."""
    rows = DeltaTable.forPath(spark, table_location(spark, lh, name)).history()
    metrics = F.col("operationMetrics")
    return rows.select(
        "version",
        "timestamp",
        "operation",
        F.col("userMetadata").alias("run_id"),
        F.coalesce(metrics.getItem("numOutputRows"), metrics.getItem("numTargetRowsInserted"))
        .cast("long")
        .alias("rows_out"),
        "operationParameters",
        "operationMetrics",
    ).orderBy(F.col("version").desc())


def run_kpis(
    spark: SparkSession, lh: Lakehouse, run_id: str, table: str = "daily_kpis"
) -> DataFrame:
    """Gold `table` recomputed from silver read at the versions run `run_id` consumed (recorded
    in `gold._consumed_versions`): the figures that run published, reproduced. Columns: those
    of the gold table."""
    from lakehouse.gold.build import CONSUMED_TABLE, compute_table

    path = lh.path(CONSUMED_TABLE)
    # The state as that run left it: a later rollback may have restored the table to before it.
    written = (
        DeltaTable.forPath(spark, path)
        .history()
        .where(F.col("userMetadata") == run_id)
        .agg(F.max("version"))
        .first()
    )
    reader = spark.read.format("delta")
    if written is not None and written[0] is not None:
        reader = reader.option("versionAsOf", int(written[0]))
    state = reader.load(path)
    rows = state.where(F.col("run_id") == run_id).select("table", "version").collect()
    if not rows:
        raise UserError(f"run {run_id} published no gold (no consumed silver versions recorded)")
    versions = {r["table"].removeprefix("silver."): int(r["version"]) for r in rows}
    return compute_table(spark, lh, table, versions)


# ---------------------------------------------------------------------------------------------
# Rollback


@dataclass(frozen=True)
class Commit:
    table: str
    version: int
    operation: str
    run_id: str | None


@dataclass
class RollbackResult:
    """What `rollback` did: the runs rolled back, each table's version before and the version it
    was restored to (`-1`: the table did not exist before and was emptied), and the new versions."""

    rollback_id: str
    runs: list[str]
    restored_to: dict[str, int] = field(default_factory=dict)
    new_versions: dict[str, int] = field(default_factory=dict)


def _commits(spark: SparkSession, tables: dict[str, str]) -> list[Commit]:
    out = []
    for name, path in tables.items():
        if name in LOG_TABLES:
            continue
        for r in (
            DeltaTable.forPath(spark, path)
            .history()
            .select("version", "operation", "userMetadata")
            .collect()
        ):
            out.append(Commit(name, int(r["version"]), r["operation"], r["userMetadata"]))
    return out


def _rolled_back_runs(spark: SparkSession, lh: Lakehouse) -> set[str]:
    path = lh.path(LEDGER_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return set()
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(F.col("status") == "rolled_back")
        .select("run_id")
        .distinct()
        .collect()
    )
    return {r[0] for r in rows}


def rollback(
    spark: SparkSession, lh: Lakehouse, run_id: str, cascade: bool = False
) -> RollbackResult:
    """Restore every table run `run_id` wrote to its version before the run, and record it.

    Refuses (`RollbackRefused`) when a later run wrote one of those tables since, naming the
    runs, unless `cascade` (then those runs are rolled back too); and always when a later commit
    was not made by a pipeline run (an erasure, a manual write): rolling back past it could
    undo it, which for an erasure would bring personal data back. Holds the lakehouse's run
    lock (`lakehouse.state.lock`): no run writes while the commits are read and restored."""
    from lakehouse.state.lock import run_lock

    with run_lock(lh, f"rollback-of-{run_id}", f"rollback {run_id}"):
        return _rollback(spark, lh, run_id, cascade)


def _rollback(spark: SparkSession, lh: Lakehouse, run_id: str, cascade: bool) -> RollbackResult:
    tables = list_tables(spark, lh)
    commits = _commits(spark, tables)
    already = _rolled_back_runs(spark, lh)
    if run_id in already:
        raise RollbackRefused(f"run {run_id} is already rolled back")
    if not any(c.run_id == run_id for c in commits):
        raise RollbackRefused(f"run {run_id} wrote no table under {lh.root} (or it is unknown)")
    # Commits of runs rolled back before are undone already: they neither block nor cascade.
    # Maintenance rewrites (`maintain-<id>`: compaction, statistics) change no row either.
    commits = [
        c
        for c in commits
        if c.run_id not in already and not (c.run_id or "").startswith(MAINTENANCE_PREFIX)
    ]
    runs = _runs_to_roll_back(commits, run_id, cascade)
    first: dict[str, int] = {}
    for c in commits:
        if c.run_id in runs:
            first[c.table] = min(first.get(c.table, c.version), c.version)
    # Restores by earlier rollbacks (of later runs, or an interrupted attempt at this one) are
    # no obstacle: restoring to before this run's first commit subsumes them.
    blockers = [
        c
        for c in commits
        if c.table in first
        and c.version > first[c.table]
        and c.run_id not in runs
        and c.operation not in CONTENT_PRESERVING
        and not (c.run_id or "").startswith(ROLLBACK_PREFIX)
    ]
    if blockers:
        b = blockers[0]
        raise RollbackRefused(
            f"{b.table} version {b.version} ({b.operation}) was not written by a pipeline run "
            f"(userMetadata {b.run_id!r}) after run {run_id}; rolling back past it could undo "
            "it (an erasure, a manual fix): restore by hand if that is really meant"
        )
    rollback_id = f"rollback-{new_run_id()}"
    result = RollbackResult(rollback_id, sorted(runs))
    before = {t: current_version(spark, tables[t]) for t in first}
    with commit_metadata(spark, f"{ROLLBACK_PREFIX}{','.join(sorted(runs))} by {rollback_id}"):
        for table, version in sorted(first.items()):
            target = version - 1
            path = tables[table]
            if target < 0:
                # Created by the run: as it was before, it held nothing.
                DeltaTable.forPath(spark, path).delete()
            else:
                DeltaTable.forPath(spark, path).restoreToVersion(target)
            result.restored_to[table] = target
            result.new_versions[table] = current_version(spark, path)
    _record_rollback(spark, lh, result, before)
    return result


def _runs_to_roll_back(commits: list[Commit], run_id: str, cascade: bool) -> set[str]:
    """`{run_id}`, plus with `cascade` every pipeline run that wrote a table after one of the set
    did; without it, such a run is a refusal."""

    def is_run(c: Commit) -> bool:
        return (
            c.run_id is not None
            and not c.run_id.startswith(ROLLBACK_PREFIX)
            and not c.run_id.startswith(NOT_RUNS)
            and c.operation not in CONTENT_PRESERVING
        )

    runs = {run_id}
    while True:
        first: dict[str, int] = {}
        for c in commits:
            if c.run_id in runs:
                first[c.table] = min(first.get(c.table, c.version), c.version)
        later = sorted(
            {
                c.run_id
                for c in commits
                if c.run_id is not None
                and c.table in first
                and c.version > first[c.table]
                and is_run(c)
                and c.run_id not in runs
            }
        )
        if not later:
            return runs
        if not cascade:
            raise RollbackRefused(
                f"run {run_id} cannot be rolled back alone: later run(s) {', '.join(later)} "
                "wrote the same tables since; roll those back first, or pass --cascade to roll "
                "them back together"
            )
        runs.update(later)


def _record_rollback(
    spark: SparkSession, lh: Lakehouse, result: RollbackResult, before: dict[str, int]
) -> None:
    """Ledger rows: each rolled-back run's rows marked `rolled_back`; one `rollback` row per
    restored table; and, for silver tables, the bronze version silver has now consumed."""
    now = utcnow()
    ledger = read_ledger(spark, lh)
    entries: list[LedgerEntry] = []
    marked = ledger.where(F.col("run_id").isin(result.runs) & (F.col("status") == "ok"))
    for r in marked.select("run_id", "layer", "table_name").distinct().collect():
        entries.append(
            LedgerEntry(
                run_id=r["run_id"],
                layer=r["layer"],
                table_name=r["table_name"],
                status="rolled_back",
                started_at=now,
                finished_at=now,
                message=f"rolled back by {result.rollback_id}",
            )
        )
    for table, target in result.restored_to.items():
        layer, _, name = table.partition(".")
        entries.append(
            LedgerEntry(
                run_id=result.rollback_id,
                layer=layer,
                table_name=name,
                status="rollback",
                table_version_before=before[table],
                table_version=result.new_versions[table],
                started_at=now,
                finished_at=now,
                message=f"restored to version {target} (runs {', '.join(result.runs)})",
            )
        )
    # Silver reads bronze's Change Data Feed after the version the ledger says it consumed.
    excluded = set(result.runs) | _rolled_back_runs(spark, lh)
    for spec in lh.tables.values():
        bronze = f"bronze.{spec.source}"
        if bronze not in result.restored_to and f"silver.{spec.name}" not in result.restored_to:
            continue
        pointer = _pointer_before(ledger, spec.name, excluded)
        if bronze in result.restored_to:
            restored_to = result.restored_to[bronze]
            if pointer is not None and pointer < restored_to:
                raise RollbackRefused(
                    f"silver.{spec.name} had consumed bronze.{spec.source} only up to version "
                    f"{pointer}, before version {restored_to} the rollback restored it to; run "
                    "silver once, then roll back"
                )
            pointer = result.new_versions[bronze]
        if pointer is None:
            continue
        entries.append(
            LedgerEntry(
                run_id=result.rollback_id,
                layer="silver",
                table_name=spec.name,
                status="rollback",
                input_version=pointer,
                started_at=now,
                finished_at=now,
                message=f"consumed bronze.{spec.source} up to version {pointer} after the rollback",
            )
        )
    record(spark, lh, entries)


def _pointer_before(ledger: DataFrame, table: str, excluded: Iterable[str]) -> int | None:
    row = (
        ledger.where(
            (F.col("layer") == "silver")
            & (F.col("table_name") == table)
            & F.col("status").isin("ok", "rollback")
            & ~F.col("run_id").isin(list(excluded))
        )
        .agg(F.max("input_version"))
        .first()
    )
    return None if row is None or row[0] is None else int(row[0])


def parse_as_of(text: str) -> str | int:
    """A version (digits) or a timestamp/date (ISO), as `show` takes it; a clear error else."""
    value = text.strip()
    if re.fullmatch(r"\d+", value):
        return int(value)
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"--as-of {text!r}: expected a version number or an ISO timestamp "
            "(2024-01-02 or 2024-01-02T10:00:00)"
        ) from None
    return value
