"""The same silver MERGE done by two engines: Delta Lake on Spark (as
`lakehouse.silver.merge.upsert_versions` does it) and delta-rs (the `deltalake` package), on
copies of the same table with the same source.

The source of each table is the day's deduplicated batch as silver merged it (saved as Parquet by
the history measurement). Both engines get the same condition (the batch's partition values as
literals, then the keys) and the same clauses: a newer delete becomes a tombstone, a newer version
updates every column, a new key is inserted. Timed per table: reading the source, computing the
partition literals, the MERGE and its commit. Not timed: validation, deduplication, the ledger
(the rest of `lakehouse.silver.engine.apply`), which is the same Python/Spark code whichever
engine writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import Column, SparkSession

from lakehouse.core.specs import TableSpec
from lakehouse.silver.merge import key_condition, merge_partition_filter
from lakehouse.silver.schema import META_FIELDS


def _condition(spec: TableSpec, partition_values: list[dict[str, object]]) -> str:
    """The condition silver's MERGE plan builds (`lakehouse.silver.merge.MergePlan`): the
    batch's partitions as literals, then key equality."""
    keys = key_condition(spec.keys)
    if not spec.partition_by:
        return keys
    return f"{merge_partition_filter(spec.partition_by, partition_values)} AND {keys}"


def spark_merges(
    spark: SparkSession,
    specs: Mapping[str, TableSpec],
    paths: Mapping[str, str],
    sources: Mapping[str, Path],
) -> dict[str, float]:
    """Seconds per table for Delta Lake's MERGE on Spark."""
    from delta.tables import DeltaTable

    times = {}
    for name, spec in specs.items():
        start = time.perf_counter()
        source = spark.read.parquet(str(sources[name]))
        values = [r.asDict() for r in source.select(*spec.partition_by).distinct().collect()]
        tombstone: dict[str, str | Column] = {f.name: f"s.{f.name}" for f in META_FIELDS}
        (
            DeltaTable.forPath(spark, paths[name])
            .alias("t")
            .merge(source.alias("s"), _condition(spec, values))
            .whenMatchedUpdate(condition="s._seq > t._seq AND s._is_deleted", set=tombstone)
            .whenMatchedUpdateAll(condition="s._seq > t._seq")
            .whenNotMatchedInsertAll()
            .execute()
        )
        times[name] = time.perf_counter() - start
    return times


def deltars_merges(
    specs: Mapping[str, TableSpec], paths: Mapping[str, str], sources: Mapping[str, Path]
) -> tuple[dict[str, float], list[str]]:
    """Seconds per table for delta-rs's MERGE, and notes on what it had to be given."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    times = {}
    notes: list[str] = []
    for name, spec in specs.items():
        start = time.perf_counter()
        table = DeltaTable(paths[name])
        target_schema = table.schema().to_pyarrow()
        files = sorted(str(p) for p in sources[name].glob("*.parquet"))
        source = pq.read_table(files) if files else ds.dataset(str(sources[name])).to_table()
        source = source.select(target_schema.names).cast(target_schema)
        values = []
        if spec.partition_by:
            distinct = (
                source.select(list(spec.partition_by))
                .group_by(list(spec.partition_by))
                .aggregate([])
            )
            values = distinct.to_pylist()
        tombstone = {f.name: f"s.{f.name}" for f in META_FIELDS}
        (
            table.merge(
                source,
                predicate=_condition(spec, values),
                source_alias="s",
                target_alias="t",
            )
            .when_matched_update(updates=tombstone, predicate="s._seq > t._seq AND s._is_deleted")
            .when_matched_update_all(predicate="s._seq > t._seq")
            .when_not_matched_insert_all()
            .execute()
        )
        times[name] = time.perf_counter() - start
    protocol = DeltaTable(next(iter(paths.values()))).protocol()
    notes.append(
        "delta-rs wrote the tables as they are (protocol reader "
        f"{protocol.min_reader_version}, writer {protocol.min_writer_version}, Change Data Feed "
        "on): no feature had to be turned off for it"
    )
    return times, notes
