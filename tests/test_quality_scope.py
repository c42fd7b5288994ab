"""What the daily gate checks (issue #17): the rows a run wrote, read from the Change Data Feed,
not every row of history. Pure transforms on tiny frames, then one real Delta table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.gold.build import CONSUMED_TABLE, STATE_SCHEMA
from lakehouse.pipeline import unpublished_silver
from lakehouse.quality import RESULTS_TABLE
from lakehouse.quality.runner import RESULT_SCHEMA
from lakehouse.quality.scope import keyed_rows, latest_rows, unpublished_rows
from lakehouses import local_lakehouse

CDF = "id string, v int, _is_deleted boolean, _change_type string, _commit_version long"


def ids_and_values(df) -> list[tuple]:
    return sorted((r["id"], r["v"]) for r in df.collect())


def test_the_newest_post_image_of_each_key_is_its_row_and_removed_rows_are_gone(
    spark: SparkSession,
) -> None:
    changes = spark.createDataFrame(
        [
            ("inserted", 1, False, "insert", 3),
            ("updated", 1, False, "insert", 2),
            ("updated", 1, False, "update_preimage", 3),
            ("updated", 2, False, "update_postimage", 3),
            ("deleted", 1, False, "insert", 2),
            ("deleted", 1, False, "delete", 4),
            ("tombstoned", 1, False, "update_preimage", 3),
            ("tombstoned", 1, True, "update_postimage", 3),
            # Removed and written again in one commit (moved between partitions): kept.
            ("moved", 1, False, "delete", 3),
            ("moved", 7, False, "insert", 3),
        ],
        CDF,
    )

    rows = latest_rows(changes, ["id"])

    assert rows.columns == ["id", "v", "_is_deleted"]
    assert ids_and_values(rows) == [("inserted", 1), ("moved", 7), ("updated", 2)]


def test_keyed_rows_are_every_copy_of_the_scopes_keys_in_the_table(spark: SparkSession) -> None:
    table = spark.createDataFrame(
        [("a", 1, "x"), ("a", 1, "y"), ("b", 1, "z"), ("c", 2, "w")], "k string, n int, v string"
    )
    scope = spark.createDataFrame([("a", 1, "x"), ("c", 2, "w")], "k string, n int, v string")

    rows = keyed_rows(table, scope, ["k", "n"])

    assert rows.columns == ["k", "n"]
    assert sorted(tuple(r) for r in rows.collect()) == [("a", 1), ("a", 1), ("c", 2)]


def test_unpublished_rows_are_the_live_rows_changed_after_a_version(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "t")
    spark.sql(
        f"CREATE TABLE delta.`{path}` (id string, v int, _is_deleted boolean) USING delta "
        "TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    spark.sql(f"INSERT INTO delta.`{path}` VALUES ('a', 1, false), ('b', 1, false)")  # v1
    spark.sql(f"UPDATE delta.`{path}` SET v = 2 WHERE id = 'a'")  # v2
    spark.sql(f"INSERT INTO delta.`{path}` VALUES ('c', 1, false)")  # v3
    spark.sql(f"UPDATE delta.`{path}` SET _is_deleted = true WHERE id = 'b'")  # v4

    assert ids_and_values(unpublished_rows(spark, path, ["id"], 1)) == [("a", 2), ("c", 1)]
    assert ids_and_values(unpublished_rows(spark, path, ["id"], 3)) == []
    assert ids_and_values(unpublished_rows(spark, path, ["id"], 0)) == [("a", 2), ("c", 1)]
    nothing_new = unpublished_rows(spark, path, ["id"], 4)
    assert nothing_new.columns == ["id", "v", "_is_deleted"] and nothing_new.count() == 0


def test_the_silver_gate_starts_after_the_newest_publish_that_passed_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A publish that did not check silver (`lakehouse gold`, `--no-checks`) does not count:
    the next gate checks the rows it sent on too; with no silver-gated publish, every row."""
    lh = local_lakehouse(tmp_path)
    path = lh.path("silver.orders")
    spark.sql(
        f"CREATE TABLE delta.`{path}` (order_id string, v int, _is_deleted boolean) USING delta "
        "TBLPROPERTIES (delta.enableChangeDataFeed = true)"
    )
    spark.sql(f"INSERT INTO delta.`{path}` VALUES ('o1', 1, false), ('o2', 1, false)")  # v1
    spark.sql(f"UPDATE delta.`{path}` SET v = 2 WHERE order_id = 'o1'")  # v2
    spark.sql(f"INSERT INTO delta.`{path}` VALUES ('o3', 1, false)")  # v3
    now = dt.datetime(2024, 1, 3)
    consumed = [("gated", "silver.orders", 1, "incremental", now),
                ("unchecked", "silver.orders", 2, "incremental", now)]  # fmt: skip
    spark.createDataFrame(consumed, STATE_SCHEMA).write.format("delta").save(
        lh.path(CONSUMED_TABLE)
    )

    def checked(run_id: str, status: str) -> None:
        row = (run_id, now, "silver", "orders", "c", "size", "error", status, None, None, 1.0, [],
               None)  # fmt: skip
        spark.createDataFrame([row], RESULT_SCHEMA).write.format("delta").mode("append").save(
            lh.path(RESULTS_TABLE)
        )

    assert unpublished_silver(spark, lh, ["silver.orders"]) == {}  # no gated publish yet
    checked("gated", "passed")
    checked("unchecked", "failed")  # a refused check does not count either
    (scope,) = unpublished_silver(spark, lh, ["silver.orders"]).values()
    assert sorted(r["order_id"] for r in scope.collect()) == ["o1", "o3"]  # after v1
