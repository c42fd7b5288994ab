"""Silver's pure transforms: DataFrames in, DataFrames out, no reads, writes or actions.

The engine (`engine.py`) reads the batch and the current tables, chains these, and hands the
results to the writers (`merge.py`). What each one takes and returns:

- `classify_batch`: typed records -> `_rank` (1 = newest version of its key) and `_dup` (the same
  version again);
- `version_counts`: classified records -> one row: duplicates and older versions of the batch;
- `fill_partitions_from_batch`, `newest_versions`, `partitions_from_table`: the one row per key
  a MERGE applies, a delete given the partition values its key has elsewhere;
- `merge_outcomes`: that source against the table's current keys -> one row of counts
  (inserted, deleted, updated, duplicates, stale) before the MERGE;
- `attach_parent`, `adoptions`, `adoption_source`, `cascade_source`: a child table's columns and
  deletes from its parent (`parent` in the spec);
- `snapshot_timeline`, `snapshot_states`: a batch of snapshot days applied in order, in one pass;
- `scd2_source`: the SCD type 2 history rows of the batch's keys;
- `quarantine_rows`: records that break a rule, in the quarantine table's columns.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.core.specs import TableSpec
from lakehouse.silver.schema import (
    META_FIELDS,
    business_columns,
    history_business_columns,
    history_schema,
    silver_schema,
)

Transform = Callable[[DataFrame], DataFrame]


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


def version_counts(classified: DataFrame, partition_by: tuple[str, ...] = ()) -> DataFrame:
    """One row: `dups` (the same version of a key again) and `older` (older versions than the
    batch's newest of their key) among classified records, and `unplaced`: newest versions that
    are deletes without a value for some column of `partition_by` (after
    `fill_partitions_from_batch`), the only ones `partitions_from_table` must look up; with
    `partition_by`, `places`: the distinct partition values of the newest versions (structs), so
    the MERGE's partition literals need no query of their own."""
    unplaced = (
        reduce(lambda a, b: a | b, [F.col(p).isNull() for p in partition_by], F.lit(False))
        & (F.col("_rank") == 1)
        & (F.col("_op") == "d")
    )
    newest_places = (
        [F.collect_set(F.when(F.col("_rank") == 1, F.struct(*partition_by))).alias("places")]
        if partition_by
        else []
    )
    return classified.agg(
        F.sum(F.col("_dup").cast("long")).alias("dups"),
        F.sum(((F.col("_rank") > 1) & ~F.col("_dup")).cast("long")).alias("older"),
        F.sum(unplaced.cast("long")).alias("unplaced"),
        *newest_places,
    )


def stamp_run(run_id: str, now: datetime) -> Transform:
    """Adds the run's metadata: `_run_id`, `_updated_at` and `_ingest_date` (of the delivery)."""

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.withColumn("_run_id", F.lit(run_id))
            .withColumn("_updated_at", F.lit(now).cast("timestamp"))
            .withColumn("_ingest_date", F.col("ingest_date"))
        )

    return transform


def fill_partitions_from_batch(spec: TableSpec) -> Transform:
    """A delete carries only its key: give it the partition values of its key's newest version
    in the batch that has them."""

    def transform(classified: DataFrame) -> DataFrame:
        w = (
            Window.partitionBy(*spec.keys)
            .orderBy(F.col("_seq").desc())
            .rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
        )
        for p in spec.partition_by:
            classified = classified.withColumn(
                p, F.coalesce(F.col(p), F.first(p, ignorenulls=True).over(w))
            )
        return classified

    return transform


def newest_versions(spec: TableSpec) -> Transform:
    """Classified records -> the newest version of each key in the silver table's columns, with
    `_is_deleted` true for a delete."""

    def transform(classified: DataFrame) -> DataFrame:
        meta = [f.name for f in META_FIELDS if f.name != "_is_deleted"]
        return classified.where(F.col("_rank") == 1).select(
            *business_columns(spec), *meta, (F.col("_op") == "d").alias("_is_deleted")
        )

    return transform


def partitions_from_table(spec: TableSpec, current: DataFrame) -> Transform:
    """A delete still without partition values takes those its key has in `current` (the
    table), so the MERGE finds the row inside the pruned partitions."""
    parts = list(spec.partition_by)

    def transform(source: DataFrame) -> DataFrame:
        missing = F.col("_is_deleted") & reduce(
            lambda a, b: a | b, [F.col(p).isNull() for p in parts]
        )
        known = current.select(*spec.keys, *[F.col(p).alias(f"_t_{p}") for p in parts])
        deletes = source.where(missing).join(known, list(spec.keys), "left")
        for p in parts:
            deletes = deletes.withColumn(p, F.coalesce(F.col(p), F.col(f"_t_{p}"))).drop(f"_t_{p}")
        return source.where(~missing).unionByName(deletes)

    return transform


def merge_outcomes(source: DataFrame, current: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """One row of what a MERGE of `source` (one row per key) into `current` will do: `ins`
    (new keys), `ins_del` (new keys arriving deleted), `upd`, `del` (newer versions), `same`
    (the current version again) and `stale` (older than the current version)."""
    joined = source.alias("s").join(
        current.select(
            *keys, F.col("_seq").alias("_t_seq"), F.col("_is_deleted").alias("_t_deleted")
        ).alias("t"),
        list(keys),
        "left",
    )
    new, deleted = F.col("_t_seq").isNull(), F.col("_is_deleted")
    newer = F.col("_t_seq") < F.col("_seq")
    return joined.agg(
        F.sum((new & ~deleted).cast("long")).alias("ins"),
        F.sum((new & deleted).cast("long")).alias("ins_del"),
        F.sum((newer & ~deleted).cast("long")).alias("upd"),
        F.sum((newer & deleted).cast("long")).alias("del"),
        F.sum((F.col("_t_seq") == F.col("_seq")).cast("long")).alias("same"),
        F.sum((F.col("_t_seq") > F.col("_seq")).cast("long")).alias("stale"),
    )


def _parent_rows(spec: TableSpec, parent: DataFrame, prefix: str = "") -> DataFrame:
    assert spec.parent is not None
    return parent.select(
        F.col(spec.parent.key),
        *[F.col(c).alias(f"{prefix}{c}") for c in spec.parent.columns],
        F.col("_seq").alias("_p_seq"),
        F.col("_is_deleted").alias("_p_deleted"),
    )


def attach_parent(spec: TableSpec, parent: DataFrame) -> Transform:
    """Take the parent's columns (order_items: `order_date` of its order) from `parent` (the
    parent's silver rows), and turn a record whose parent is deleted with a newer `_seq` into a
    delete: a late line cannot outlive its order."""

    def transform(prepared: DataFrame) -> DataFrame:
        assert spec.parent is not None
        joined = prepared.join(_parent_rows(spec, parent), spec.parent.key, "left")
        killed = F.col("_p_deleted") & (F.col("_p_seq") > F.col("_seq"))
        return joined.withColumn("_op", F.when(killed, "d").otherwise(F.col("_op"))).drop(
            "_p_seq", "_p_deleted"
        )

    return transform


def adoptions(spec: TableSpec, current: DataFrame, parent: DataFrame) -> DataFrame:
    """Rows of `current` (the child table) waiting with null parent columns whose parent is now
    in `parent` with those columns: the row, plus the parent's values as `_p_<column>` and its
    `_p_seq`, `_p_deleted`."""
    assert spec.parent is not None
    pcols = list(spec.parent.columns)
    orphans = current.where(" AND ".join(f"{c} IS NULL" for c in pcols))
    found = _parent_rows(spec, parent, prefix="_p_").where(
        " AND ".join(f"_p_{c} IS NOT NULL" for c in pcols)
    )
    return orphans.join(found, spec.parent.key)


def adoption_source(spec: TableSpec, found: DataFrame) -> DataFrame:
    """The MERGE source that moves adopted rows (`adoptions`) into their parent's partition in
    one commit: each row twice, `_action` `move` (the row with the parent's values, deleted if
    the parent was deleted later) and `delete` (the waiting copy)."""
    assert spec.parent is not None
    columns = [f.name for f in silver_schema(spec).fields]
    killed = F.col("_p_deleted") & (F.col("_p_seq") > F.col("_seq"))
    moved = found
    for c in spec.parent.columns:
        moved = moved.withColumn(c, F.col(f"_p_{c}"))
    moved = moved.withColumn("_is_deleted", F.col("_is_deleted") | killed).select(
        *columns, F.lit("move").alias("_action")
    )
    leave = found.select(*columns, F.lit("delete").alias("_action"))
    return moved.unionByName(leave)


def cascade_source(child: TableSpec, batch: DataFrame, parent: DataFrame) -> DataFrame:
    """The parent keys a batch of the parent table deleted (its delete is the version now in
    `parent`, the parent's silver rows), with the partition values the parent row has and the
    delete's `_seq`: the child rows to tombstone (`parent.on_delete: cascade`)."""
    assert child.parent is not None
    key = child.parent.key
    pcols = [c for c in child.partition_by if c in child.parent.columns]
    deleted = batch.where(F.col("_op") == "d").select(key, "_seq")
    stored = parent.where(F.col("_is_deleted")).select(
        key, *[F.col(c).alias(f"_t_{c}") for c in pcols], F.col("_seq").alias("_t_seq")
    )
    return (
        deleted.join(stored, key)
        .where(F.col("_t_seq") == F.col("_seq"))
        .select(key, *[F.col(f"_t_{c}").alias(c) for c in pcols], "_seq")
    )


def snapshot_timeline(
    spec: TableSpec, newest: DataFrame, current: DataFrame, days: DataFrame
) -> DataFrame:
    """What applying a batch of snapshot days in order does to each key, computed in one pass.

    `newest` is the newest row of each key on each day of the batch (silver columns,
    `snapshot_date` the day), `current` the table before the batch, `days` the batch's days
    (column `snapshot_date`). Taken day by day: a key's row of the day wins when its `_seq` is
    newer than the key's state (which only a row from a later day than the table's can be); a
    live, active row that a day's snapshot no longer lists, from an earlier day, becomes
    inactive from that day (`active` false, `inactive_from` and `snapshot_date` the day, `_seq`
    `<day>|absent`), which a later day listing it again undoes.

    One row per event, in the table's columns (the state it leaves) plus `_day` and `_event`:
    `ins` (a new key's first winning row), `upd` (a later winning row), `same` (the version the
    table holds), `stale` (older than the table's), `absent` (the key became inactive)."""
    keys = list(spec.keys)
    schema = silver_schema(spec)
    state = F.struct(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])
    listed = newest.select(*keys, F.col("snapshot_date").alias("_day"), state.alias("_s"))
    table = current.select(*keys, state.alias("_t"))
    open_keys = current.where(~F.col("_is_deleted") & F.col("active")).select(*keys)
    grid = (
        listed.select(*keys)
        .unionByName(open_keys)
        .distinct()
        .crossJoin(days.select(F.col("snapshot_date").alias("_day")).distinct())
        .join(listed, [*keys, "_day"], "left")
        .join(table, keys, "left")
    )
    day, listed_today = F.col("_day"), F.col("_s").isNotNull()
    by_day = Window.partitionBy(*keys).orderBy("_day")
    whole = by_day.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    t_open = F.col("_t").isNotNull() & ~F.col("_t._is_deleted") & F.col("_t.active")
    grid = (
        grid.withColumn(
            "_wins", listed_today & (F.col("_t").isNull() | (F.col("_s._seq") > F.col("_t._seq")))
        )
        .withColumn("_first_win", F.min(F.when(F.col("_wins"), day)).over(whole))
        # The day before's winning row if it is active: the next day without the key closes it.
        .withColumn(
            "_open_before",
            F.lag(F.when(F.col("_wins") & F.col("_s.active"), F.col("_s"))).over(by_day),
        )
        # The table's row, if open, is closed by the first day after its own that lacks the key,
        # unless a winning row came first.
        .withColumn(
            "_closes_table",
            F.min(F.when(~listed_today & (F.col("_t.snapshot_date") < day), day)).over(whole),
        )
    )
    closes_win = ~listed_today & F.col("_open_before").isNotNull()
    closes_table = (
        ~listed_today
        & t_open
        & (day == F.col("_closes_table"))
        & (F.col("_first_win").isNull() | (day < F.col("_first_win")))
    )
    closed = (
        F.when(closes_win, F.col("_open_before"))
        .otherwise(F.col("_t"))
        .withField("active", F.lit(False))
        .withField("inactive_from", day)
        .withField("snapshot_date", day)
        .withField("_seq", F.concat_ws("|", F.date_format(day, "yyyy-MM-dd"), F.lit("absent")))
    )
    event = (
        F.when(closes_win | closes_table, "absent")
        .when(F.col("_wins") & F.col("_t").isNull() & (day == F.col("_first_win")), "ins")
        .when(F.col("_wins"), "upd")
        .when(listed_today & (F.col("_s._seq") == F.col("_t._seq")), "same")
        .when(listed_today, "stale")
    )
    return (
        grid.withColumn("_event", event)
        .where(F.col("_event").isNotNull())
        .select(
            F.when(F.col("_event") == "absent", closed).otherwise(F.col("_s")).alias("_state"),
            "_day",
            "_event",
        )
        .select("_state.*", "_day", "_event")
    )


def snapshot_states(spec: TableSpec, timeline: DataFrame) -> DataFrame:
    """The state each changed key ends the batch in (its last `ins`, `upd` or `absent` event of
    `snapshot_timeline`), in the table's columns: the MERGE source."""
    changed = timeline.where(F.col("_event").isin("ins", "upd", "absent"))
    last = Window.partitionBy(*spec.keys).orderBy(F.col("_day").desc())
    return (
        changed.withColumn("_n", F.row_number().over(last))
        .where(F.col("_n") == 1)
        .select(*[f.name for f in silver_schema(spec).fields])
    )


def scd2_source(
    spec: TableSpec,
    batch: DataFrame,
    stored: DataFrame,
    current: DataFrame,
    extra_keys: DataFrame | None = None,
) -> DataFrame:
    """The SCD type 2 history of the batch's keys (and `extra_keys`), recomputed from `stored`
    (the history table), the batch's versions and `current` (the silver table): ordered by
    `_seq`, consecutive identical versions folded, `valid_to` the next version's `valid_from`,
    a delete (or a snapshot row's inactivity) closing the last version. Returns the MERGE
    source: rows with `_action` `upsert`, and `delete` for stored versions no longer in it."""
    keys = list(spec.keys)
    business = history_business_columns(spec)
    attrs = [c for c in business if c not in keys]
    versions_of_batch = batch.select(
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
    kept = stored.join(affected, keys, "left_semi").select(
        *business, "valid_from", "_seq", "_lsn", F.lit(False).alias("_end")
    )
    now = current.join(affected, keys, "left_semi")
    ends = now.where(F.col("_is_deleted")).select(
        *business, F.col("_event_ts").alias("valid_from"), "_seq", "_lsn", F.lit(True).alias("_end")
    )
    if spec.kind == "snapshot":
        ends = ends.unionByName(
            now.where(~F.col("_is_deleted") & F.col("inactive_from").isNotNull()).select(
                *business,
                F.col("inactive_from").cast("timestamp").alias("valid_from"),
                "_seq",
                "_lsn",
                F.lit(False).alias("_end"),
            )
        )
    versions = versions_of_batch.unionByName(kept).unionByName(ends).dropDuplicates([*keys, "_seq"])
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
    gone = kept.join(survivors.select(*keys, "_seq"), [*keys, "_seq"], "left_anti").select(
        *keys, "_seq"
    )
    return survivors.withColumn("_action", F.lit("upsert")).unionByName(
        gone.withColumn("_action", F.lit("delete")), allowMissingColumns=True
    )


def history_columns(spec: TableSpec) -> list[str]:
    """Every column of the SCD2 history table, in order."""
    return [f.name for f in history_schema(spec).fields]


def quarantine_rows(spec: TableSpec, run_id: str, now: datetime) -> Transform:
    """Invalid records (`split_valid`'s second frame) -> rows of the quarantine table."""

    def transform(invalid: DataFrame) -> DataFrame:
        return invalid.select(
            F.lit("silver").alias("layer"),
            F.lit(spec.name).alias("source"),
            F.col("_record_id").alias("record_id"),
            F.col("_file").alias("file"),
            F.col("_line").alias("line"),
            F.col("ingest_date"),
            F.col("raw"),
            F.col("_q_column").alias("column_name"),
            F.col("_q_reason").alias("reason"),
            F.lit(run_id).alias("run_id"),
            F.lit(now).cast("timestamp").alias("quarantined_at"),
        )

    return transform
