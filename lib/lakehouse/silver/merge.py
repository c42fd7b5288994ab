"""Silver's Delta writers: every MERGE into a silver table and its history, built in one place.

A `MergePlan` holds what every silver MERGE shares: the target, the condition (literal partition
predicates first, so Delta prunes files, then key equality) and the commit's transaction
identifiers (`transaction`). The writers below differ only in their clauses.

Idempotency: each commit carries Delta's `txnAppId`/`txnVersion`; a commit whose (app id,
version) the table's log already holds is skipped by Delta, so a batch re-run after a crash
before its ledger row changes nothing. `transaction` is the only place those numbers are made,
and they only grow with the bronze version a batch consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.delta_io import with_conflict_retries
from lakehouse.silver.schema import META_FIELDS

# A snapshot batch's transaction versions are `input_version * SNAPSHOT_STRIDE`: each day of a
# batch was once its own commit, numbered within the stride, and the numbers must keep growing
# in the tables written then.
SNAPSHOT_STRIDE = 10_000


@dataclass(frozen=True)
class Txn:
    """Delta's idempotent-write identifiers of one commit."""

    app_id: str
    version: int


def transaction(
    table: str,
    input_version: int,
    *,
    purpose: str = "",
    snapshot: bool = False,
    parent_version: int | None = None,
) -> Txn:
    """The transaction identifiers of a silver commit: the app id names the table (and the
    purpose of a commit beside the batch's own: `adopt`, `cascade`), the version grows with the
    bronze version consumed (`input_version`):

    - a batch's MERGE: `input_version`;
    - a snapshot table's batch (all its days in one commit) and its history:
      `input_version * SNAPSHOT_STRIDE`;
    - adopting waiting child rows: `parent_version * 1_000_000 + input_version`, growing with
      either table (a move waits for a new parent version whether or not new rows came)."""
    app_id = f"silver.{table}" + (f".{purpose}" if purpose else "")
    if parent_version is not None:
        return Txn(app_id, parent_version * 1_000_000 + input_version)
    if snapshot:
        return Txn(app_id, input_version * SNAPSHOT_STRIDE)
    return Txn(app_id, input_version)


@contextmanager
def delta_txn(spark: SparkSession, txn: Txn) -> Iterator[None]:
    """Delta's idempotent-write identifiers for the commits inside: a commit with an
    (app id, version) already recorded in the table's log is skipped."""
    spark.conf.set("spark.databricks.delta.write.txnAppId", txn.app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(txn.version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


def _literal(value: object) -> str:
    return f"DATE'{value}'" if isinstance(value, date) else repr(str(value))


def partition_literals(
    partition_by: Sequence[str], values: Sequence[Mapping[str, object]], alias: str = "t"
) -> str:
    """`t.col IN (...)` predicates on the target's partition columns for the values in a batch, so
    a MERGE touches only the partitions it changes (null partitions included when present).
    `alias` names the table (empty: bare column names, for a filter on a DataFrame)."""
    parts = []
    for name in partition_by:
        col = f"{alias}.{name}" if alias else name
        seen = sorted({v[name] for v in values if v[name] is not None}, key=str)
        clause = []
        if seen:
            clause.append(f"{col} IN (" + ", ".join(_literal(v) for v in seen) + ")")
        if any(v[name] is None for v in values):
            clause.append(f"{col} IS NULL")
        parts.append("(" + " OR ".join(clause or ["false"]) + ")")
    return " AND ".join(parts)


def merge_partition_filter(
    partition_by: Sequence[str], values: Sequence[Mapping[str, object]], alias: str = "t"
) -> str:
    """The partition predicate of a silver MERGE: the batch's partitions and always the null
    partition, where a key can sit without partition values (the tombstone of a delete that came
    before any version of its row, a line waiting for its order). Without it, a late older
    version of such a key would miss the tombstone and be inserted beside it, live again."""
    return partition_literals(partition_by, [*values, dict.fromkeys(partition_by)], alias)


def key_condition(keys: Sequence[str]) -> str:
    """`t.k = s.k AND ...` for the keys."""
    return " AND ".join(f"t.{k} = s.{k}" for k in keys)


@dataclass(frozen=True)
class MergePlan:
    """One silver MERGE: target table, condition (partition literals, then key equality) and
    transaction identifiers. `pruning` is the partition predicate alone, on bare column names."""

    target: DeltaTable
    condition: str
    pruning: str
    txn: Txn
    what: str

    @classmethod
    def of(
        cls,
        target: DeltaTable,
        keys: Sequence[str],
        txn: Txn,
        what: str,
        partition_by: Sequence[str] = (),
        values: Sequence[Mapping[str, object]] = (),
        extra: str = "",
    ) -> MergePlan:
        """Key equality (plus `extra`), pruned to the partitions of `values` and the null one
        when the table is partitioned."""
        on_target = merge_partition_filter(partition_by, values) if partition_by else ""
        pruning = merge_partition_filter(partition_by, values, alias="") if partition_by else ""
        condition = " AND ".join(p for p in (on_target, key_condition(keys), extra) if p)
        return cls(target, condition, pruning, txn, what)

    def current(self) -> DataFrame:
        """The target's rows inside the plan's partitions."""
        rows = self.target.toDF()
        return rows.where(F.expr(self.pruning)) if self.pruning else rows

    def run(self, spark: SparkSession, clauses: Callable[[Any], Any], source: DataFrame) -> None:
        """MERGE `source` with the clauses `clauses(builder)` adds, in the plan's transaction,
        retrying conflicting concurrent commits."""

        def merge() -> None:
            with delta_txn(spark, self.txn):
                builder = self.target.alias("t").merge(source.alias("s"), self.condition)
                clauses(builder).execute()

        with_conflict_retries(merge, what=self.what)


def upsert_versions(spark: SparkSession, plan: MergePlan, source: DataFrame) -> None:
    """Newest version per key in: a newer `_seq` updates (a delete keeps the row's last values
    and marks it: a tombstone with its `_seq`), a new key is inserted, an older one ignored."""
    tombstone: dict[str, str | Column] = {f.name: f"s.{f.name}" for f in META_FIELDS}
    plan.run(
        spark,
        lambda b: (
            b.whenMatchedUpdate(condition="s._seq > t._seq AND s._is_deleted", set=tombstone)
            .whenMatchedUpdateAll(condition="s._seq > t._seq")
            .whenNotMatchedInsertAll()
        ),
        source,
    )


def move_adopted(
    spark: SparkSession, plan: MergePlan, source: DataFrame, columns: list[str]
) -> None:
    """Waiting rows into their parent's partition, in one commit (`adoption_source`)."""
    plan.run(
        spark,
        lambda b: (
            b.whenMatchedDelete(condition="s._action = 'delete'")
            .whenMatchedUpdateAll(condition="s._action = 'move' AND s._seq > t._seq")
            .whenNotMatchedInsert(
                condition="s._action = 'move'", values={c: f"s.{c}" for c in columns}
            )
        ),
        source,
    )


def tombstone_children(spark: SparkSession, plan: MergePlan, source: DataFrame) -> None:
    """Mark the matched rows deleted (a parent's delete cascading)."""
    plan.run(
        spark,
        lambda b: b.whenMatchedUpdate(
            condition="NOT t._is_deleted",
            set={"_is_deleted": "true", "_updated_at": "current_timestamp()"},
        ),
        source,
    )


def merge_history(
    spark: SparkSession, plan: MergePlan, source: DataFrame, columns: list[str]
) -> None:
    """The recomputed SCD2 versions of the batch's keys (`scd2_source`) into the history."""
    updates: dict[str, str | Column] = {c: f"s.{c}" for c in ("valid_to", "is_current")}
    plan.run(
        spark,
        lambda b: (
            b.whenMatchedDelete(condition="s._action = 'delete'")
            .whenMatchedUpdate(
                condition="t.valid_to IS DISTINCT FROM s.valid_to OR t.is_current <> s.is_current",
                set=updates,
            )
            .whenNotMatchedInsert(
                condition="s._action = 'upsert'", values={c: f"s.{c}" for c in columns}
            )
        ),
        source,
    )
