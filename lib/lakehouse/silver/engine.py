"""Silver: one clean, typed, current row per key, kept by idempotent MERGEs applied in order.

For each source table of the lakehouse (`lh.tables`, parents first), a run:

1. reads the bronze records not processed yet: bronze's Change Data Feed after the bronze version
   the last successful run consumed (the ledger's `input_version`) up to the current one;
2. types and validates them (`validate.py`); failures go to quarantine with a reason;
3. collapses the batch to the newest version per key (`_seq`); the same version again is a
   duplicate, an older one is stale (`transforms.py`);
4. MERGEs into the silver table with the batch's partition values as literals in the condition,
   updating only when the incoming `_seq` is newer, so an older version never overwrites a newer
   one; a delete becomes a tombstone (`_is_deleted`, with its `_seq`) that a late older event
   cannot undo. Readers use `live(df)` (`merge.py`);
5. commits with Delta's transaction identifiers (`merge.transaction`), so a retried batch whose
   commit already happened is skipped; conflicting concurrent writers are retried with backoff.

What differs per table is in its spec: the kind (`cdc`, `events`, `snapshot`, `corrections`),
a `parent` whose columns it takes and whose deletes cascade to it (`on_delete`), SCD type 2
history (`history: scd2`), personal data. Every silver table has Change Data Feed on, for gold.
This module reads and orchestrates; it holds no transform of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from functools import reduce

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core import progress
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.core.delta_io import current_version, ensure_table
from lakehouse.core.spark import BATCH_STORAGE
from lakehouse.core.specs import TableSpec
from lakehouse.silver import merge
from lakehouse.silver import transforms as T
from lakehouse.silver.merge import MergePlan, transaction
from lakehouse.silver.schema import history_schema, live, silver_schema, stats_properties
from lakehouse.silver.validate import pseudonymise, split_valid, typed_records
from lakehouse.state.ledger import SILVER_COLUMNS, LedgerEntry, last_input_versions, utcnow
from lakehouse.state.quarantine import write_quarantine

__all__ = ["SILVER_COLUMNS", "apply", "apply_table", "history_path", "live", "silver_path"]


# Columns of a typed bronze record that no valid record needs past validation.
PARSE_COLUMNS = ("raw", "fields", "_f", "_errors", "_record_id", "_file", "_source", "_ingested_at")


def silver_path(lh: Lakehouse, name: str) -> str:
    """Location of `silver.<name>`."""
    return lh.path(f"silver.{name}")


def history_path(lh: Lakehouse, name: str) -> str:
    """Location of `silver.<name>_history`, the SCD2 history of a table."""
    return lh.path(f"silver.{name}_history")


@dataclass(frozen=True)
class Counts:
    """What became of a table's records in one run (the ledger's silver outcomes)."""

    records_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    duplicates: int = 0
    stale_ignored: int = 0
    quarantined: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _n(value: object) -> int:
    return int(value or 0)  # type: ignore[call-overload]


def read_increment(
    spark: SparkSession, path: str, after_version: int | None
) -> tuple[DataFrame | None, int]:
    """Rows inserted into the bronze table at `path` after `after_version` (all of them when None),
    and the version read up to."""
    end = current_version(spark, path)
    start = 0 if after_version is None else after_version + 1
    if start > end:
        return None, end
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", start)
        .option("endingVersion", end)
        .load(path)
        .where(F.col("_change_type") == "insert")
        .drop("_change_type", "_commit_version", "_commit_timestamp")
    )
    return changes, end


def apply(
    spark: SparkSession, lh: Lakehouse, run_id: str, tables: list[str] | None = None
) -> list[LedgerEntry]:
    """Apply the new bronze records of every source table (or of `tables`, by name, in the
    lakehouse's order) to silver; one ledger entry per table.

    The records that break a rule are quarantined for all tables together, with one MERGE after
    the tables' own (a MERGE per table cost a look-up, version reads and a commit each); every
    entry's balance is checked once its quarantined count is known."""
    specs = [s for s in lh.tables.values() if tables is None or s.name in tables]
    key = lh.pii_hmac_key()
    return _apply_tables(spark, lh, run_id, specs, key)


def apply_table(spark: SparkSession, lh: Lakehouse, run_id: str, name: str) -> LedgerEntry:
    """One table's new bronze records into silver (`apply` for one table)."""
    return apply(spark, lh, run_id, [name])[0]


@dataclass(frozen=True)
class _Applied:
    """One table's run before its quarantine rows are written: its counts, its bad records
    (materialised until the one quarantine MERGE, or None) and the entry's other fields."""

    spec: TableSpec
    counts: Counts
    invalid: int
    bad_rows: DataFrame | None
    started_at: object
    table_version_before: int
    input_version: int
    table_version: int


def _apply_tables(
    spark: SparkSession, lh: Lakehouse, run_id: str, specs: list[TableSpec], key: bytes
) -> list[LedgerEntry]:
    applied: list[_Applied] = []
    consumed = last_input_versions(spark, lh, "silver")
    try:
        for spec in specs:
            clock = progress.Clock()
            done = _apply_table(spark, lh, run_id, spec, key, consumed.get(spec.name))
            applied.append(done)
            crash_point("silver.table_merged")
            c = done.counts
            progress.table(
                f"silver.{spec.name}",
                clock,
                "  silver.%s: %d records read, %d inserted, %d updated, %d deleted, %d invalid",
                spec.name,
                c.records_read,
                c.inserted,
                c.updated,
                c.deleted,
                done.invalid,
                rows_in=c.records_read,
                rows_written=c.inserted + c.updated + c.deleted + done.invalid,
            )
            if done.bad_rows is None:
                _entry(run_id, done).check_balance()  # stop at the first table out of balance
        waiting = [a.bad_rows for a in applied if a.bad_rows is not None]
        inserted = (
            write_quarantine(spark, lh, reduce(DataFrame.unionByName, waiting)) if waiting else {}
        )
    finally:
        for a in applied:
            if a.bad_rows is not None:
                a.bad_rows.unpersist()
    entries = []
    for a in applied:
        if a.bad_rows is not None:
            quarantined = inserted.get(a.spec.name, 0)
            # The same bad record quarantined by an earlier run (delivered again) is a duplicate.
            extra = Counts(quarantined=quarantined, duplicates=a.invalid - quarantined)
            a = dataclasses.replace(a, counts=a.counts + extra)
        entry = _entry(run_id, a)
        entry.check_balance()
        entries.append(entry)
    return entries


def _entry(run_id: str, a: _Applied) -> LedgerEntry:
    c = a.counts
    return LedgerEntry(
        run_id=run_id,
        layer="silver",
        table_name=a.spec.name,
        started_at=a.started_at,  # type: ignore[arg-type]
        records_read=c.records_read,
        inserted=c.inserted,
        updated=c.updated,
        deleted=c.deleted,
        unchanged=0,
        duplicates=c.duplicates,
        stale_ignored=c.stale_ignored,
        quarantined=c.quarantined,
        input_version=a.input_version,
        table_version_before=a.table_version_before,
        table_version=a.table_version,
        finished_at=utcnow(),
    )


def _apply_table(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    spec: TableSpec,
    key: bytes,
    consumed: int | None,
) -> _Applied:
    """One table's new bronze records into silver (those after the bronze version `consumed`);
    its records to quarantine are returned, materialised, for the caller to write."""
    started = utcnow()
    path = silver_path(lh, spec.name)
    target = ensure_table(
        spark, path, silver_schema(spec), spec.partition_by, properties=stats_properties(spec)
    )
    if spec.history == "scd2":
        ensure_table(
            spark,
            history_path(lh, spec.name),
            history_schema(spec),
            properties=stats_properties(spec, history=True),
        )
    before = current_version(spark, path)
    increment, end = read_increment(spark, lh.path(f"bronze.{spec.source}"), consumed)
    counts, invalid, bad_rows = Counts(), 0, None
    if increment is not None:
        typed = (
            increment.transform(typed_records(spec))
            .select("*", F.col("_file").alias("_source_file"))
            .persist(BATCH_STORAGE)
        )
        try:
            counts, invalid, bad_rows = _apply_batch(
                spark, lh, run_id, spec, key, typed, target, end
            )
        finally:
            typed.unpersist()
    if spec.parent is not None:
        # Runs even without new rows: the parent rows they wait for may have arrived now.
        _adopt_orphans(spark, lh, spec, target, end)
    return _Applied(
        spec, counts, invalid, bad_rows, started, before, end, current_version(spark, path)
    )


def _apply_batch(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    spec: TableSpec,
    key: bytes,
    typed: DataFrame,
    target: DeltaTable,
    input_version: int,
) -> tuple[Counts, int, DataFrame | None]:
    """The batch's valid records into the table (and its history and children); returns the
    counts, the number of invalid records and their quarantine rows (materialised)."""
    valid, invalid = split_valid(typed)
    now = utcnow()
    read = typed.agg(
        F.count(F.lit(1)).alias("read"), F.sum((F.size("_errors") > 0).cast("long")).alias("bad")
    ).first()
    assert read is not None
    n_read, n_invalid = _n(read["read"]), _n(read["bad"])
    bad_rows = None
    if n_invalid:
        # Kept past this table's batch (whose cache is dropped when it is done) for the one
        # quarantine MERGE.
        bad_rows = invalid.transform(T.quarantine_rows(spec, run_id, now)).persist(BATCH_STORAGE)
        bad_rows.count()
    counts = Counts(records_read=n_read)
    if n_read == n_invalid:
        return counts, n_invalid, bad_rows
    # The record's text and parse columns serve the quarantine only: the sorts and MERGEs below
    # carry the typed columns alone (with `raw` and `fields`, a 1.4M-click batch ran a 2g
    # driver out of sort memory).
    prepared = valid.drop(*PARSE_COLUMNS).transform(pseudonymise(spec, key))
    if spec.parent is not None:
        parent = DeltaTable.forPath(spark, silver_path(lh, spec.parent.table)).toDF()
        prepared = prepared.transform(T.attach_parent(spec, parent))
    prepared = prepared.transform(T.stamp_run(run_id, now))
    touched: list[dict[str, object]] | None = None  # partitions the batch's MERGE touched
    if spec.kind == "snapshot":
        counts += _apply_snapshots(spark, lh, spec, prepared, target, input_version)
    else:
        merged, touched = _merge_versions(
            spark, spec, prepared, target, transaction(spec.name, input_version)
        )
        counts += merged
    if spec.history == "scd2" and spec.kind != "snapshot":
        _update_history(
            spark, lh, spec, prepared, transaction(f"{spec.name}_history", input_version)
        )
    for child in lh.children(spec.name):
        _cascade_deletes(spark, lh, spec, child, prepared, input_version, touched)
    return counts, n_invalid, bad_rows


def _merge_versions(
    spark: SparkSession,
    spec: TableSpec,
    prepared: DataFrame,
    target: DeltaTable,
    txn: merge.Txn,
) -> tuple[Counts, list[dict[str, object]]]:
    """Collapse to the newest version per key and MERGE it in; returns the outcome counts and
    the partition values the MERGE touched (besides the null partition, always touched)."""
    ranked = (
        T.classify_batch(prepared, spec.keys)
        .transform(T.fill_partitions_from_batch(spec))
        .persist(BATCH_STORAGE)
    )
    try:
        versions = T.version_counts(ranked, spec.partition_by).first()
        assert versions is not None
        counts = Counts(duplicates=_n(versions["dups"]), stale_ignored=_n(versions["older"]))
        source = ranked.transform(T.newest_versions(spec))
        values: list[dict[str, object]] | None = (
            [p.asDict() for p in versions["places"]] if spec.partition_by else []
        )
        if _n(versions["unplaced"]):
            # Only deletes whose key has no partition values in the batch are looked up in the
            # table (a look-up of its keys across every partition); their values are then
            # the table's.
            source = source.transform(T.partitions_from_table(spec, target.toDF()))
            values = None
        merged, touched = _merge_source(spark, spec, source, target, txn, values)
        return counts + merged, touched
    finally:
        ranked.unpersist()


def _merge_source(
    spark: SparkSession,
    spec: TableSpec,
    source: DataFrame,
    target: DeltaTable,
    txn: merge.Txn,
    values: list[dict[str, object]] | None = None,
) -> tuple[Counts, list[dict[str, object]]]:
    """MERGE one row per key; the counts come from the source against the table's keys in the
    pruned partitions, taken before the MERGE. Also returns the batch's partition values
    (`values` when the caller knows them already, else read from `source`)."""
    source = source.persist(BATCH_STORAGE)
    try:
        if values is None:
            values = (
                [r.asDict() for r in source.select(*spec.partition_by).distinct().collect()]
                if spec.partition_by
                else []
            )
        plan = MergePlan.of(
            target,
            spec.keys,
            txn,
            f"MERGE into silver.{spec.name}",
            spec.partition_by,
            values,
        )
        summary = T.merge_outcomes(source, plan.current(), spec.keys).first()
        assert summary is not None
        counts = Counts(
            inserted=_n(summary["ins"]),
            deleted=_n(summary["ins_del"]) + _n(summary["del"]),
            updated=_n(summary["upd"]),
            duplicates=_n(summary["same"]),
            stale_ignored=_n(summary["stale"]),
        )
        if counts.inserted + counts.deleted + counts.updated:
            merge.upsert_versions(spark, plan, source)
        return counts, values
    finally:
        source.unpersist()


def _adopt_orphans(
    spark: SparkSession, lh: Lakehouse, spec: TableSpec, target: DeltaTable, input_version: int
) -> None:
    """Rows that arrived before their parent wait with null parent columns; once the parent is
    in silver they move (in one commit) to its partition, deleted if the parent was deleted
    later. The commit is keyed by the parent's silver version and this table's input: both only
    grow, and a move waits for a new parent version whether or not new rows came."""
    assert spec.parent is not None
    waiting = target.toDF().where(" AND ".join(f"{c} IS NULL" for c in spec.parent.columns))
    if waiting.isEmpty():
        # No row waits (the usual day): the parent table is not read at all. Parent columns
        # that partition the table make this a look at the null partition alone.
        return
    parent_path = silver_path(lh, spec.parent.table)
    txn = transaction(
        spec.name,
        input_version,
        purpose="adopt",
        parent_version=current_version(spark, parent_path),
    )
    parent = DeltaTable.forPath(spark, parent_path).toDF()
    found = T.adoptions(spec, target.toDF(), parent).persist(BATCH_STORAGE)
    try:
        pcols = spec.parent.columns
        values = [
            r.asDict()
            for r in found.select(*[F.col(f"_p_{c}").alias(c) for c in pcols]).distinct().collect()
        ]
        if not values:
            return
        plan = MergePlan.of(
            target,
            spec.keys,
            txn,
            f"move waiting rows into silver.{spec.name}",
            spec.partition_by,
            values,
            extra=" AND ".join(f"t.{c} <=> s.{c}" for c in spec.partition_by),
        )
        columns = [f.name for f in silver_schema(spec).fields]
        merge.move_adopted(spark, plan, T.adoption_source(spec, found), columns)
    finally:
        found.unpersist()


def _cascade_deletes(
    spark: SparkSession,
    lh: Lakehouse,
    parent: TableSpec,
    child: TableSpec,
    batch: DataFrame,
    input_version: int,
    touched: list[dict[str, object]] | None,
) -> None:
    """Tombstone the child rows of every parent row this batch deleted, whether or not their own
    delete events were delivered (`parent.on_delete: cascade`). The batch's tombstones are
    looked for in the partitions its MERGE `touched` (and the null one), when known."""
    assert child.parent is not None
    stored = DeltaTable.forPath(spark, silver_path(lh, parent.name)).toDF()
    if parent.partition_by and touched is not None:
        stored = stored.where(
            F.expr(merge.merge_partition_filter(parent.partition_by, touched, alias=""))
        )
    rows = T.cascade_source(child, batch, stored).collect()
    child_path = silver_path(lh, child.name)
    if not rows or not DeltaTable.isDeltaTable(spark, child_path):
        return
    pcols = [c for c in child.partition_by if c in child.parent.columns]
    source = spark.createDataFrame(
        [(r[child.parent.key], r["_seq"]) for r in rows], f"{child.parent.key} string, _seq string"
    )
    plan = MergePlan.of(
        DeltaTable.forPath(spark, child_path),
        (child.parent.key,),
        transaction(child.name, input_version, purpose="cascade"),
        f"cascade {parent.name} deletes to silver.{child.name}",
        pcols,
        [{c: r[c] for c in pcols} for r in rows],
    )
    merge.tombstone_children(spark, plan, source)


def _apply_snapshots(
    spark: SparkSession,
    lh: Lakehouse,
    spec: TableSpec,
    prepared: DataFrame,
    target: DeltaTable,
    input_version: int,
) -> Counts:
    """Apply the batch's snapshot days in order, in one pass (`transforms.snapshot_timeline`):
    each day's rows upsert (newest `_seq` wins) and a live, active row absent from a day's
    snapshot becomes inactive from that day. One MERGE for the table and one for its history,
    whatever the number of days; the history goes first, so that a retry after a crash between
    the two still computes the table's changes from the table as it was."""
    dated = prepared.withColumn("snapshot_date", F.col("ingest_date")).withColumn(
        "inactive_from", F.lit(None).cast("date")
    )
    ranked = T.classify_batch(dated, (*spec.keys, "snapshot_date")).persist(BATCH_STORAGE)
    timeline: DataFrame | None = None
    try:
        versions = T.version_counts(ranked).first()
        assert versions is not None
        newest = ranked.transform(T.newest_versions(spec))
        timeline = T.snapshot_timeline(
            spec, newest, target.toDF(), ranked.select("snapshot_date")
        ).persist(BATCH_STORAGE)
        events = {
            r["_event"]: r["n"]
            for r in timeline.groupBy("_event").count().withColumnRenamed("count", "n").collect()
        }
        if spec.history == "scd2":
            closed = timeline.where(F.col("_event") == "absent")
            _update_history(
                spark,
                lh,
                spec,
                prepared,
                transaction(f"{spec.name}_history", input_version, snapshot=True),
                current=closed,
                extra_keys=closed.select(*spec.keys),
            )
        if events.get("ins", 0) + events.get("upd", 0) + events.get("absent", 0):
            source = T.snapshot_states(spec, timeline)
            values = (
                [r.asDict() for r in source.select(*spec.partition_by).distinct().collect()]
                if spec.partition_by
                else []
            )
            plan = MergePlan.of(
                target,
                spec.keys,
                transaction(spec.name, input_version, snapshot=True),
                f"MERGE snapshot days into silver.{spec.name}",
                spec.partition_by,
                values,
            )
            merge.upsert_versions(spark, plan, source)
        return Counts(
            inserted=events.get("ins", 0),
            updated=events.get("upd", 0),
            duplicates=_n(versions["dups"]) + events.get("same", 0),
            stale_ignored=_n(versions["older"]) + events.get("stale", 0),
        )
    finally:
        if timeline is not None:
            timeline.unpersist()
        ranked.unpersist()


def _update_history(
    spark: SparkSession,
    lh: Lakehouse,
    spec: TableSpec,
    prepared: DataFrame,
    txn: merge.Txn,
    current: DataFrame | None = None,
    extra_keys: DataFrame | None = None,
) -> None:
    """Recompute SCD type 2 history for the keys in the batch (`transforms.scd2_source`), from
    the silver table's rows (`current`, by default the whole table as it is now)."""
    history = DeltaTable.forPath(spark, history_path(lh, spec.name))
    if current is None:
        current = DeltaTable.forPath(spark, silver_path(lh, spec.name)).toDF()
    source = T.scd2_source(spec, prepared, history.toDF(), current, extra_keys)
    plan = MergePlan.of(
        history, (*spec.keys, "_seq"), txn, f"MERGE into silver.{spec.name}_history"
    )
    merge.merge_history(spark, plan, source, T.history_columns(spec))
