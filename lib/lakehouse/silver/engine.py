"""Silver: one clean, typed, current row per key, kept by idempotent MERGEs applied in order.

For each table of `conf/tables/*.yaml`, a run:

1. reads the bronze records not processed yet: bronze's Change Data Feed after the bronze version
   the last successful run consumed (the ledger's `input_version`) up to the current one;
2. types and validates them (`lakehouse.silver.validate`); failures go to quarantine with a reason;
3. collapses the batch to the newest version per key (`_seq`); the same version again is a
   duplicate, an older one is stale;
4. MERGEs into the silver table with the batch's partition values as literals in the condition,
   updating only when the incoming `_seq` is newer, so an older version never overwrites a newer
   one; a delete becomes a tombstone (`_is_deleted`, with its `_seq`) that a late older event
   cannot undo. Readers use `live(df)`;
5. commits with Delta's transaction identifiers (`txnAppId` = the table, `txnVersion` = the
   bronze version consumed), so a retried batch whose commit already happened is skipped;
   conflicting concurrent writers are retried with backoff.

Every silver table has Change Data Feed on, for gold to read increments. Per-kind rules (CDC
order deletes cascading to items, product snapshots, SCD2 history) are in this module too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from functools import partial, reduce

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.core.config import Config
from lakehouse.core.delta_io import (
    current_version,
    ensure_table,
    stats_columns_property,
    with_conflict_retries,
)
from lakehouse.core.specs import DECIMAL_RE, TableSpec, load_tables
from lakehouse.silver.validate import pseudonymise, split_valid, typed_records
from lakehouse.state.ledger import LedgerEntry, last_input_versions, utcnow
from lakehouse.state.quarantine import write_quarantine

LEDGER_COLUMNS = (
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

META_FIELDS = [
    StructField("_seq", StringType(), True),
    StructField("_lsn", LongType(), True),
    StructField("_event_ts", TimestampType(), True),
    StructField("_is_deleted", BooleanType(), False),
    StructField("_source_file", StringType(), True),
    StructField("_ingest_date", DateType(), True),
    StructField("_run_id", StringType(), True),
    StructField("_updated_at", TimestampType(), True),
]


def _spark_type(type_name: str) -> DataType:
    from pyspark.sql.types import BooleanType as B
    from pyspark.sql.types import DecimalType, IntegerType

    match = DECIMAL_RE.match(type_name)
    if match:
        return DecimalType(int(match.group(1)), int(match.group(2)))
    return {
        "string": StringType(),
        "int": IntegerType(),
        "long": LongType(),
        "boolean": B(),
        "timestamp": TimestampType(),
        "date": DateType(),
    }[type_name]


def silver_schema(spec: TableSpec) -> StructType:
    """Business columns (personal data hashed or dropped, derived and parent columns added)
    followed by the metadata columns."""
    fields = []
    for c in spec.columns:
        if c.name in spec.pii.drop:
            continue
        if c.name in spec.pii.hash:
            fields.append(StructField(f"{c.name}_hash", StringType(), True))
        else:
            fields.append(StructField(c.name, _spark_type(c.type), c.name not in spec.keys))
    for name in spec.derived:
        fields.append(StructField(name, DateType(), True))
    if spec.parent:
        for name in spec.parent.columns:
            if name not in {f.name for f in fields}:
                fields.append(StructField(name, DateType(), True))
    if spec.kind == "snapshot":
        fields.append(StructField("snapshot_date", DateType(), True))
        fields.append(StructField("inactive_from", DateType(), True))
    return StructType(fields + META_FIELDS)


def history_schema(spec: TableSpec) -> StructType:
    business = [
        f
        for f in silver_schema(spec).fields
        if not f.name.startswith("_") and f.name not in ("snapshot_date", "inactive_from")
    ]
    return StructType(
        [
            *business,
            StructField("valid_from", TimestampType(), False),
            StructField("valid_to", TimestampType(), True),
            StructField("is_current", BooleanType(), False),
            StructField("_seq", StringType(), False),
            StructField("_lsn", LongType(), True),
        ]
    )


def _stats_properties(spec: TableSpec, history: bool = False) -> dict[str, str]:
    """No per-file statistics of the hashed personal columns: the transaction log would keep
    their min/max values after an erasure and VACUUM (docs/MAINTENANCE.md)."""
    schema = history_schema(spec) if history else silver_schema(spec)
    partitions = () if history else spec.partition_by
    return stats_columns_property(schema, [f"{c}_hash" for c in spec.pii.hash], partitions)


def live(df: DataFrame) -> DataFrame:
    """Only the rows readers should see: tombstones left out."""
    return df.where(~F.col("_is_deleted"))


# --- pure transforms -------------------------------------------------------------------------


def rank_versions(keys: tuple[str, ...]) -> Column:
    """1 for the newest version of a key in the batch (highest `_seq`, then the latest delivery)."""
    w = Window.partitionBy(*keys).orderBy(
        F.col("_seq").desc(),
        F.col("_ingest_date").desc(),
        F.col("_source_file").desc(),
        F.col("_line").desc(),
    )
    return F.row_number().over(w)


def classify_batch(batch: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """Marks each valid record: `_rank` 1 for the newest version of its key; `_dup` true for a
    record with the same key and `_seq` as a higher-ranked one (the same version again)."""
    w_same = Window.partitionBy(*keys, "_seq").orderBy(
        F.col("_ingest_date").desc(), F.col("_source_file").desc(), F.col("_line").desc()
    )
    return batch.withColumn("_rank", rank_versions(keys)).withColumn(
        "_dup", F.row_number().over(w_same) > 1
    )


def partition_literals(spec: TableSpec, values: list[dict[str, object]]) -> str:
    """`t.col IN (...)` predicates on the target's partition columns for the values in a batch, so
    a MERGE touches only the partitions it changes (null partitions included when present)."""
    parts = []
    for col in spec.partition_by:
        seen = sorted({v[col] for v in values if v[col] is not None}, key=str)
        clause = []
        if seen:
            clause.append(
                f"t.{col} IN ("
                + ", ".join(f"DATE'{v}'" if isinstance(v, date) else repr(str(v)) for v in seen)
                + ")"
            )
        if any(v[col] is None for v in values):
            clause.append(f"t.{col} IS NULL")
        parts.append("(" + " OR ".join(clause or ["false"]) + ")")
    return " AND ".join(parts)


def merge_partition_filter(spec: TableSpec, values: list[dict[str, object]]) -> str:
    """The partition predicate of a silver MERGE: the batch's partitions and always the null
    partition, where a key can sit without partition values (the tombstone of a delete that came
    before any version of its row, a line waiting for its order). Without it, a late older
    version of such a key would miss the tombstone and be inserted beside it, live again."""
    return partition_literals(spec, [*values, dict.fromkeys(spec.partition_by)])


# --- the engine ------------------------------------------------------------------------------


def table_path(config: Config, name: str) -> str:
    return config.table_path("silver", name)


@contextmanager
def delta_txn(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Delta's idempotent-write identifiers for the commits inside: a commit with an
    (app id, version) already recorded in the table's log is skipped."""
    spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


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
    spark: SparkSession, config: Config, run_id: str, tables: dict[str, TableSpec] | None = None
) -> list[LedgerEntry]:
    """Apply every silver table's new bronze records; one ledger entry per table.

    The records that break a rule are quarantined for all tables together, with one MERGE after
    the tables' own (a MERGE per table cost a look-up, version reads and a commit each); every
    entry's balance is checked once its quarantined count is known."""
    tables = tables or load_tables()
    key = config.secret(config.secrets.pii_hmac_key_env).encode()
    return _apply_tables(spark, config, run_id, list(tables.values()), key)


def apply_table(
    spark: SparkSession, config: Config, run_id: str, spec: TableSpec, key: bytes
) -> LedgerEntry:
    """One table's new bronze records into silver (`apply` for one table)."""
    return _apply_tables(spark, config, run_id, [spec], key)[0]


def _apply_tables(
    spark: SparkSession, config: Config, run_id: str, specs: list[TableSpec], key: bytes
) -> list[LedgerEntry]:
    entries = []
    pending: list[_Quarantined] = []
    consumed = last_input_versions(spark, config.storage.lakehouse_root, "silver")
    try:
        for spec in specs:
            waiting = len(pending)
            entry = _apply_table(spark, config, run_id, spec, key, pending, consumed.get(spec.name))
            entries.append(entry)
            if len(pending) == waiting:
                entry.check_balance()  # nothing waits: stop at the first table out of balance
        _write_quarantined(spark, config, pending)
    finally:
        for q in pending:
            q.rows.unpersist()
    return entries


@dataclass(frozen=True)
class _Quarantined:
    """A table's records to quarantine, kept (materialised) until the one quarantine MERGE."""

    entry: LedgerEntry
    invalid: int
    rows: DataFrame


def _write_quarantined(spark: SparkSession, config: Config, pending: list[_Quarantined]) -> None:
    """One MERGE for every table's waiting records; then each entry's quarantined count and
    balance."""
    if not pending:
        return
    inserted = write_quarantine(
        spark,
        config.storage.lakehouse_root,
        reduce(DataFrame.unionByName, [q.rows for q in pending]),
    )
    for q in pending:
        q.entry.quarantined = inserted.get(q.entry.table_name, 0)
        # The same bad record quarantined by an earlier run (delivered again) is a duplicate.
        q.entry.duplicates = (q.entry.duplicates or 0) + q.invalid - q.entry.quarantined
        q.entry.check_balance()


def _apply_table(
    spark: SparkSession,
    config: Config,
    run_id: str,
    spec: TableSpec,
    key: bytes,
    pending: list[_Quarantined],
    consumed: int | None,
) -> LedgerEntry:
    """One table's new bronze records into silver (those after the bronze version `consumed`);
    its records to quarantine are added to `pending` for the caller to write, and the caller
    checks the entry's balance."""
    started = utcnow()
    path = table_path(config, spec.name)
    target = ensure_table(
        spark, path, silver_schema(spec), spec.partition_by, properties=_stats_properties(spec)
    )
    if spec.history == "scd2":
        ensure_table(
            spark,
            table_path(config, f"{spec.name}_history"),
            history_schema(spec),
            properties=_stats_properties(spec, history=True),
        )
    before = current_version(spark, path)
    entry = LedgerEntry(
        run_id=run_id,
        layer="silver",
        table_name=spec.name,
        started_at=started,
        inserted=0,
        updated=0,
        deleted=0,
        unchanged=0,
        duplicates=0,
        stale_ignored=0,
        quarantined=0,
        table_version_before=before,
    )
    bronze_path = config.table_path("bronze", spec.source)
    increment, end = read_increment(spark, bronze_path, consumed)
    entry.input_version = end
    if increment is not None:
        typed = (
            increment.transform(typed_records(spec))
            .select("*", F.col("_file").alias("_source_file"))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        try:
            _apply_batch(spark, config, run_id, spec, key, typed, target, entry, end, pending)
        finally:
            typed.unpersist()
    if spec.parent is not None:
        # Runs even without new lines: the parent rows they wait for may have arrived now.
        # Its commits are keyed by the parent's silver version and this table's input: both only
        # grow, and a move waits for a new parent version whether or not new lines came.
        parent_version = current_version(spark, table_path(config, spec.parent.table))
        _adopt_orphans(spark, config, spec, target, parent_version * 1_000_000 + end)
    entry.table_version = current_version(spark, path)
    entry.finished_at = utcnow()
    return entry


def _apply_batch(
    spark: SparkSession,
    config: Config,
    run_id: str,
    spec: TableSpec,
    key: bytes,
    typed: DataFrame,
    target: DeltaTable,
    entry: LedgerEntry,
    input_version: int,
    pending: list[_Quarantined],
) -> None:
    valid, invalid = split_valid(typed)
    now = utcnow()
    counts = typed.agg(
        F.count(F.lit(1)).alias("read"), F.sum((F.size("_errors") > 0).cast("long")).alias("bad")
    ).first()
    assert counts is not None
    entry.records_read = int(counts["read"])
    n_invalid = int(counts["bad"] or 0)
    if n_invalid:
        # Kept past this table's batch (whose cache is dropped when it is done) for the one
        # quarantine MERGE.
        rows = _quarantine_rows(spec, invalid, run_id, now).persist(StorageLevel.MEMORY_AND_DISK)
        rows.count()
        pending.append(_Quarantined(entry, n_invalid, rows))
    if entry.records_read == n_invalid:
        return
    prepared = valid.transform(pseudonymise(spec, key))
    if spec.parent is not None:
        prepared = _attach_parent(spark, config, spec, prepared)
    prepared = (
        prepared.withColumn("_run_id", F.lit(run_id))
        .withColumn("_updated_at", F.lit(now).cast("timestamp"))
        .withColumn("_ingest_date", F.col("ingest_date"))
    )
    if spec.kind == "snapshot":
        _apply_snapshots(spark, config, spec, prepared, target, entry, input_version)
    else:
        _merge_versions(spark, config, spec, prepared, target, entry, input_version)
    if spec.history == "scd2" and spec.kind != "snapshot":
        _update_history(spark, config, spec, prepared, input_version)
    if spec.name == "orders":
        _cascade_order_deletes(spark, config, prepared, input_version)


def _quarantine_rows(spec: TableSpec, invalid: DataFrame, run_id: str, now: object) -> DataFrame:
    return invalid.select(
        F.lit("silver").alias("layer"),
        F.lit(spec.name).alias("source"),
        F.col("_record_id").alias("record_id"),
        F.col("_file").alias("file"),
        F.col("_line").alias("line"),
        F.col("ingest_date"),
        F.col("raw"),
        F.col("column_name"),
        F.col("reason"),
        F.lit(run_id).alias("run_id"),
        F.lit(now).cast("timestamp").alias("quarantined_at"),
    )


def _business_columns(spec: TableSpec) -> list[str]:
    return [f.name for f in silver_schema(spec).fields if not f.name.startswith("_")]


def _merge_versions(
    spark: SparkSession,
    config: Config,
    spec: TableSpec,
    prepared: DataFrame,
    target: DeltaTable,
    entry: LedgerEntry,
    input_version: int,
    extra_source: DataFrame | None = None,
) -> None:
    """Collapse to the newest version per key and MERGE it in; fills the entry's outcome counts."""
    keys = spec.keys
    ranked = classify_batch(prepared, keys).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = ranked.agg(
            F.sum(F.col("_dup").cast("long")).alias("dups"),
            F.sum(((F.col("_rank") > 1) & ~F.col("_dup")).cast("long")).alias("older"),
        ).first()
        assert counts is not None
        entry.duplicates = (entry.duplicates or 0) + int(counts["dups"] or 0)
        entry.stale_ignored = (entry.stale_ignored or 0) + int(counts["older"] or 0)
        if spec.partition_by:
            # A delete carries only its key: take its partition values from the key's newest
            # version in the batch that has them (and below, from the table).
            w = (
                Window.partitionBy(*keys)
                .orderBy(F.col("_seq").desc())
                .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
            )
            for p in spec.partition_by:
                ranked = ranked.withColumn(
                    p, F.coalesce(F.col(p), F.first(p, ignorenulls=True).over(w))
                )
        newest = ranked.where(F.col("_rank") == 1)
        columns = _business_columns(spec)
        meta = [f.name for f in META_FIELDS if f.name != "_is_deleted"]
        source = newest.select(*columns, *meta, (F.col("_op") == "d").alias("_is_deleted"))
        if spec.partition_by:
            source = _partitions_of_deletes(spec, source, target)
        if extra_source is not None:
            source = source.unionByName(extra_source)
        _merge_source(spark, config, spec, source, target, entry, input_version)
    finally:
        ranked.unpersist()


def _partitions_of_deletes(spec: TableSpec, source: DataFrame, target: DeltaTable) -> DataFrame:
    """A delete carries only its key: give it the partition values its row has in the table, so
    the MERGE finds the row inside the pruned partitions."""
    parts = list(spec.partition_by)
    missing = F.col("_is_deleted") & reduce(lambda a, b: a | b, [F.col(p).isNull() for p in parts])
    known = target.toDF().select(*spec.keys, *[F.col(p).alias(f"_t_{p}") for p in parts])
    deletes = source.where(missing).join(known, list(spec.keys), "left")
    for p in parts:
        deletes = deletes.withColumn(p, F.coalesce(F.col(p), F.col(f"_t_{p}"))).drop(f"_t_{p}")
    return source.where(~missing).unionByName(deletes)


def _merge_source(
    spark: SparkSession,
    config: Config,
    spec: TableSpec,
    source: DataFrame,
    target: DeltaTable,
    entry: LedgerEntry,
    input_version: int,
) -> None:
    keys = spec.keys
    path = table_path(config, spec.name)
    source = source.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        partition_values = (
            [r.asDict() for r in source.select(*spec.partition_by).distinct().collect()]
            if spec.partition_by
            else []
        )
        condition = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        pruning = merge_partition_filter(spec, partition_values) if spec.partition_by else ""
        if pruning:
            condition = f"{pruning} AND {condition}"
        current = target.toDF()
        if pruning:
            current = current.where(F.expr(pruning.replace("t.", "")))
        joined = source.alias("s").join(
            current.select(
                *keys, F.col("_seq").alias("_t_seq"), F.col("_is_deleted").alias("_t_deleted")
            ).alias("t"),
            list(keys),
            "left",
        )
        summary = joined.agg(
            F.sum((F.col("_t_seq").isNull() & ~F.col("_is_deleted")).cast("long")).alias("ins"),
            F.sum((F.col("_t_seq").isNull() & F.col("_is_deleted")).cast("long")).alias("ins_del"),
            F.sum(((F.col("_t_seq") < F.col("_seq")) & ~F.col("_is_deleted")).cast("long")).alias(
                "upd"
            ),
            F.sum(((F.col("_t_seq") < F.col("_seq")) & F.col("_is_deleted")).cast("long")).alias(
                "del"
            ),
            F.sum((F.col("_t_seq") == F.col("_seq")).cast("long")).alias("same"),
            F.sum((F.col("_t_seq") > F.col("_seq")).cast("long")).alias("stale"),
        ).first()
        assert summary is not None
        entry.inserted = (entry.inserted or 0) + int(summary["ins"] or 0)
        entry.deleted = (
            (entry.deleted or 0) + int(summary["ins_del"] or 0) + int(summary["del"] or 0)
        )
        entry.updated = (entry.updated or 0) + int(summary["upd"] or 0)
        entry.duplicates = (entry.duplicates or 0) + int(summary["same"] or 0)
        entry.stale_ignored = (entry.stale_ignored or 0) + int(summary["stale"] or 0)
        changes = (
            int(summary["ins"] or 0)
            + int(summary["ins_del"] or 0)
            + int(summary["upd"] or 0)
            + int(summary["del"] or 0)
        )
        if changes == 0:
            return
        tombstone: dict[str, str | Column] = {f.name: f"s.{f.name}" for f in META_FIELDS}

        def merge() -> None:
            with delta_txn(spark, f"silver.{spec.name}", input_version):
                (
                    target.alias("t")
                    .merge(source.alias("s"), condition)
                    # A delete keeps the row's last values and marks it: a tombstone with its _seq.
                    .whenMatchedUpdate(condition="s._seq > t._seq AND s._is_deleted", set=tombstone)
                    .whenMatchedUpdateAll(condition="s._seq > t._seq")
                    .whenNotMatchedInsertAll()
                    .execute()
                )

        with_conflict_retries(merge, what=f"MERGE into silver.{spec.name} at {path}")
    finally:
        source.unpersist()


def _attach_parent(
    spark: SparkSession, config: Config, spec: TableSpec, prepared: DataFrame
) -> DataFrame:
    """Take the parent's columns (order_items: `order_date` of its order), and turn a line whose
    order is deleted with a newer `_seq` into a delete: a late line cannot outlive its order."""
    assert spec.parent is not None
    parent = (
        DeltaTable.forPath(spark, table_path(config, spec.parent.table))
        .toDF()
        .select(
            F.col(spec.parent.key),
            *spec.parent.columns,
            F.col("_seq").alias("_p_seq"),
            F.col("_is_deleted").alias("_p_deleted"),
        )
    )
    joined = prepared.join(parent, spec.parent.key, "left")
    killed = F.col("_p_deleted") & (F.col("_p_seq") > F.col("_seq"))
    return joined.withColumn("_op", F.when(killed, "d").otherwise(F.col("_op"))).drop(
        "_p_seq", "_p_deleted"
    )


def _adopt_orphans(
    spark: SparkSession, config: Config, spec: TableSpec, target: DeltaTable, input_version: int
) -> None:
    """Lines that arrived before their order wait with a null partition value; once the order is
    in silver they move (in one commit) to its partition, deleted if the order was deleted later."""
    assert spec.parent is not None
    pcols = list(spec.parent.columns)
    orphans = target.toDF().where(" AND ".join(f"{c} IS NULL" for c in pcols))
    parent = (
        DeltaTable.forPath(spark, table_path(config, spec.parent.table))
        .toDF()
        .select(
            spec.parent.key,
            *[F.col(c).alias(f"_p_{c}") for c in pcols],
            F.col("_seq").alias("_p_seq"),
            F.col("_is_deleted").alias("_p_deleted"),
        )
        .where(" AND ".join(f"_p_{c} IS NOT NULL" for c in pcols))
    )
    found = orphans.join(parent, spec.parent.key).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        values = [
            r.asDict()
            for r in found.select(*[F.col(f"_p_{c}").alias(c) for c in pcols]).distinct().collect()
        ]
        if not values:
            return
        columns = [f.name for f in silver_schema(spec).fields]
        killed = F.col("_p_deleted") & (F.col("_p_seq") > F.col("_seq"))
        moved = found
        for c in pcols:
            moved = moved.withColumn(c, F.col(f"_p_{c}"))
        moved = moved.withColumn("_is_deleted", F.col("_is_deleted") | killed).select(
            *columns, F.lit("move").alias("_action")
        )
        leave = found.select(*columns, F.lit("delete").alias("_action"))
        source = moved.unionByName(leave)
        where = merge_partition_filter(spec, values)
        keys = " AND ".join(f"t.{k} = s.{k}" for k in spec.keys)
        same_part = " AND ".join(f"t.{c} <=> s.{c}" for c in spec.partition_by)

        def merge() -> None:
            with delta_txn(spark, f"silver.{spec.name}.adopt", input_version):
                (
                    target.alias("t")
                    .merge(source.alias("s"), f"{where} AND {keys} AND {same_part}")
                    .whenMatchedDelete(condition="s._action = 'delete'")
                    .whenMatchedUpdateAll(condition="s._action = 'move' AND s._seq > t._seq")
                    .whenNotMatchedInsert(
                        condition="s._action = 'move'", values={c: f"s.{c}" for c in columns}
                    )
                    .execute()
                )

        with_conflict_retries(merge, what=f"move waiting lines into silver.{spec.name}")
    finally:
        found.unpersist()


def _cascade_order_deletes(
    spark: SparkSession, config: Config, orders: DataFrame, input_version: int
) -> None:
    """Tombstone the lines of every order deleted in this batch, whether or not their own delete
    events were delivered (landing contract)."""
    deleted = orders.where(F.col("_op") == "d").select("order_id", "order_date", "_seq")
    deleted = (
        deleted.join(
            DeltaTable.forPath(spark, table_path(config, "orders"))
            .toDF()
            .where(F.col("_is_deleted"))
            .select("order_id", F.col("order_date").alias("_od"), F.col("_seq").alias("_oseq")),
            "order_id",
        )
        .where(F.col("_oseq") == F.col("_seq"))
        .select("order_id", F.col("_od").alias("order_date"), "_seq")
    )
    rows = deleted.collect()
    items_path = table_path(config, "order_items")
    if not rows or not DeltaTable.isDeltaTable(spark, items_path):
        return
    items = DeltaTable.forPath(spark, items_path)
    dates = sorted({r["order_date"] for r in rows if r["order_date"] is not None})
    pruning = "(t.order_date IS NULL" + (
        " OR t.order_date IN (" + ", ".join(f"DATE'{d}'" for d in dates) + "))" if dates else ")"
    )
    source = spark.createDataFrame(
        [(r["order_id"], r["_seq"]) for r in rows], "order_id string, _seq string"
    )

    def merge() -> None:
        with delta_txn(spark, "silver.order_items.cascade", input_version):
            (
                items.alias("t")
                .merge(source.alias("s"), f"{pruning} AND t.order_id = s.order_id")
                .whenMatchedUpdate(
                    condition="NOT t._is_deleted",
                    set={"_is_deleted": "true", "_updated_at": "current_timestamp()"},
                )
                .execute()
            )

    with_conflict_retries(merge, what="cascade order deletes to silver.order_items")


def _apply_snapshots(
    spark: SparkSession,
    config: Config,
    spec: TableSpec,
    prepared: DataFrame,
    target: DeltaTable,
    entry: LedgerEntry,
    input_version: int,
) -> None:
    """Apply each snapshot day in order: its rows upsert (newest `_seq` wins) and a live, active
    product absent from that day's snapshot becomes inactive from that day."""
    days = [
        r["ingest_date"]
        for r in prepared.select("ingest_date").distinct().orderBy("ingest_date").collect()
    ]
    prepared = prepared.withColumn("snapshot_date", F.col("ingest_date")).withColumn(
        "inactive_from", F.lit(None).cast("date")
    )
    for i, day in enumerate(days):
        rows = prepared.where(F.col("ingest_date") == F.lit(day))
        _merge_versions(spark, config, spec, rows, target, entry, input_version * 10_000 + 2 * i)
        keys = rows.select(*spec.keys).distinct()
        absent = (
            target.toDF()
            .where(~F.col("_is_deleted") & F.col("active") & (F.col("snapshot_date") < F.lit(day)))
            .join(keys, list(spec.keys), "left_anti")
        )
        absent_keys = [tuple(r) for r in absent.select(*spec.keys).collect()]
        if spec.history == "scd2":
            # History per day, so an absence between two days of one batch is kept as a version.
            gone = spark.createDataFrame(absent_keys, ", ".join(f"{k} string" for k in spec.keys))
            history_after = partial(
                _update_history,
                spark,
                config,
                spec,
                rows,
                input_version * 10_000 + i,
                extra_keys=gone,
            )
        if not absent_keys:
            if spec.history == "scd2":
                history_after()
            continue

        def deactivate(absent: DataFrame = absent, day: date = day, i: int = i) -> None:
            source = absent.select(*spec.keys)
            condition = " AND ".join(f"t.{k} = s.{k}" for k in spec.keys)
            with delta_txn(spark, f"silver.{spec.name}", input_version * 10_000 + 2 * i + 1):
                (
                    target.alias("t")
                    .merge(source.alias("s"), condition)
                    .whenMatchedUpdate(
                        set={
                            "active": "false",
                            "inactive_from": f"DATE'{day}'",
                            "snapshot_date": f"DATE'{day}'",
                            "_seq": F.concat_ws("|", F.lit(str(day)), F.lit("absent")),
                        }
                    )
                    .execute()
                )

        with_conflict_retries(deactivate, what=f"deactivate products absent on {day}")
        if spec.history == "scd2":
            history_after()


def _update_history(
    spark: SparkSession,
    config: Config,
    spec: TableSpec,
    prepared: DataFrame,
    input_version: int,
    extra_keys: DataFrame | None = None,
) -> None:
    """Recompute SCD type 2 history for the keys in the batch from their stored versions plus the
    batch's: ordered by `_seq`, consecutive identical versions folded, `valid_to` the next
    version's `valid_from`, a delete (or a product's absence) closing the last version."""
    hpath = table_path(config, f"{spec.name}_history")
    history = DeltaTable.forPath(spark, hpath)
    keys = list(spec.keys)
    business = [
        f.name
        for f in history_schema(spec).fields
        if f.name not in ("valid_from", "valid_to", "is_current", "_seq", "_lsn")
    ]
    attrs = [c for c in business if c not in keys]
    batch = prepared.select(
        *business,
        F.col("_event_ts").alias("valid_from"),
        "_seq",
        "_lsn",
        (F.col("_op") == "d").alias("_end"),
    )
    affected = batch.select(*keys)
    if extra_keys is not None:
        affected = affected.unionByName(extra_keys)
    affected = affected.distinct()
    stored = (
        history.toDF()
        .join(affected, keys, "left_semi")
        .select(*business, "valid_from", "_seq", "_lsn", F.lit(False).alias("_end"))
    )
    current = (
        DeltaTable.forPath(spark, table_path(config, spec.name))
        .toDF()
        .join(affected, keys, "left_semi")
    )
    # A delete ends the key's history; a product absent from a snapshot gets an inactive version.
    ends = current.where(F.col("_is_deleted")).select(
        *business, F.col("_event_ts").alias("valid_from"), "_seq", "_lsn", F.lit(True).alias("_end")
    )
    if spec.kind == "snapshot":
        ends = ends.unionByName(
            current.where(~F.col("_is_deleted") & F.col("inactive_from").isNotNull()).select(
                *business,
                F.col("inactive_from").cast("timestamp").alias("valid_from"),
                "_seq",
                "_lsn",
                F.lit(False).alias("_end"),
            )
        )
    versions = batch.unionByName(stored).unionByName(ends).dropDuplicates([*keys, "_seq"])
    order = Window.partitionBy(*keys).orderBy("_seq")
    fingerprint = F.sha2(F.to_json(F.struct(*[F.col(a) for a in attrs], F.col("_end"))), 256)
    versions = (
        versions.withColumn("_fp", fingerprint)
        .withColumn("_prev_fp", F.lag("_fp").over(order))
        .where(F.col("_prev_fp").isNull() | (F.col("_fp") != F.col("_prev_fp")))
    )
    versions = versions.withColumn("valid_to", F.lead("valid_from").over(order)).where(
        ~F.col("_end")
    )
    survivors = versions.select(
        *business,
        "valid_from",
        "valid_to",
        F.col("valid_to").isNull().alias("is_current"),
        "_seq",
        "_lsn",
    )
    gone = stored.join(survivors.select(*keys, "_seq"), [*keys, "_seq"], "left_anti").select(
        *keys, "_seq"
    )
    source = survivors.withColumn("_action", F.lit("upsert")).unionByName(
        gone.withColumn("_action", F.lit("delete")), allowMissingColumns=True
    )
    condition = " AND ".join(f"t.{k} = s.{k}" for k in [*keys, "_seq"])
    updates: dict[str, str | Column] = {c: f"s.{c}" for c in ("valid_to", "is_current")}

    def merge() -> None:
        with delta_txn(spark, f"silver.{spec.name}_history", input_version):
            (
                history.alias("t")
                .merge(source.alias("s"), condition)
                .whenMatchedDelete(condition="s._action = 'delete'")
                .whenMatchedUpdate(
                    condition=(
                        "t.valid_to IS DISTINCT FROM s.valid_to OR t.is_current <> s.is_current"
                    ),
                    set=updates,
                )
                .whenNotMatchedInsert(
                    condition="s._action = 'upsert'",
                    values={f.name: f"s.{f.name}" for f in history_schema(spec).fields},
                )
                .execute()
            )

    with_conflict_retries(merge, what=f"MERGE into silver.{spec.name}_history")
