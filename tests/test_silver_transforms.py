"""Silver's pure transforms and MERGE plans, one behaviour each, on tiny inline DataFrames.

The scenario tests (`test_silver.py`) tell the same rules as stories through bronze and Delta;
these pin each transform down alone. Specs are small ones made here: a parent table `orders`
(partitioned by `order_date`) and its child `lines`, whose rows take the order's date and follow
its deletes; `items`, a snapshot table with SCD2 history.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.specs import ColumnSpec, LandingSpec, ParentSpec, PiiSpec, TableSpec
from lakehouse.silver import transforms as T
from lakehouse.silver.merge import (
    MergePlan,
    key_condition,
    merge_partition_filter,
    partition_literals,
    transaction,
)
from lakehouse.silver.schema import silver_schema
from lakehouse.silver.validate import lsn_seq, pseudonymise, typed_records

LINES = TableSpec(
    name="lines",
    source="lines",
    landing=LandingSpec("cdc"),
    kind="cdc",
    keys=("order_id", "line_no"),
    columns=(
        ColumnSpec("order_id", "string", required=True),
        ColumnSpec("line_no", "int", required=True),
        ColumnSpec("qty", "int"),
    ),
    partition_by=("order_date",),
    parent=ParentSpec("orders", "order_id", ("order_date",), on_delete="cascade"),
)
ITEMS = TableSpec(
    name="items",
    source="items",
    landing=LandingSpec("csv", snapshot=True, required_columns=("item_id", "price", "active")),
    kind="snapshot",
    keys=("item_id",),
    order_by="updated_at",
    history="scd2",
    columns=(
        ColumnSpec("item_id", "string", required=True),
        ColumnSpec("price", "int"),
        ColumnSpec("active", "boolean"),
        ColumnSpec("updated_at", "timestamp"),
    ),
)
D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)

# A batch of line versions: key, qty, partition, op, _seq, delivery (day, file, line).
BATCH_DDL = (
    "order_id string, line_no int, qty int, order_date date, _op string, _seq string, "
    "_ingest_date date, _source_file string, _line long"
)


def batch(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, BATCH_DDL)


def assert_rows(actual: DataFrame, ddl: str, rows: list[tuple]) -> None:
    expected = actual.sparkSession.createDataFrame(rows, ddl)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_cdc_lsn_sorts_as_its_number_negative_ones_included(spark: SparkSession) -> None:
    lsns = [-(2**63), -5, -1, 0, 7, 10, 2**63 - 1]
    df = spark.createDataFrame([(n,) for n in reversed(lsns)], "lsn long")

    seqs = [r["_seq"] for r in df.select(lsn_seq(F.col("lsn")).alias("_seq")).collect()]

    assert seqs == [
        "09223372036854775807",
        "00000000000000000010",
        "00000000000000000007",
        "00000000000000000000",
        "-9223372036854775807",
        "-9223372036854775803",
        "-0000000000000000000",
    ]
    assert sorted(seqs) == list(reversed(seqs))


def test_an_integer_given_as_a_json_string_types_as_the_number(spark: SparkSession) -> None:
    # Accepted, not quarantined (docs/DESIGN.md, "What bronze accepts"): silver reads every JSON
    # scalar as its text, so both lines are one version; bronze gives them two record ids, and
    # silver counts the second as the same version again.
    lines = [
        '{"op":"c","ts_ms":1704103200000,"lsn":12,"after":{"order_id":"O1","line_no":1,"qty":3}}',
        '{"op":"c","ts_ms":"1704103200000","lsn":"12",'
        '"after":{"order_id":"O1","line_no":"1","qty":"3"}}',
    ]
    bronze = spark.createDataFrame(
        [(f"r{i}", "f", i, D1, raw, None) for i, raw in enumerate(lines)],
        "_record_id string, _file string, _line long, ingest_date date, raw string, "
        "fields map<string,string>",
    )

    typed = (
        typed_records(LINES)(bronze)
        .orderBy("_line")
        .select("_op", "_lsn", "_seq", "_event_ts", "order_id", "line_no", "qty", F.size("_errors"))
    )

    first, second = (tuple(r) for r in typed.collect())
    assert first == second
    assert first[1:3] == (12, "00000000000000000012")


def test_the_newest_version_ranks_first_and_a_repeat_is_a_duplicate(spark: SparkSession) -> None:
    df = batch(
        spark,
        [
            ("O1", 1, 2, D1, "u", "010", D1, "a", 1),
            ("O1", 1, 3, D1, "u", "020", D1, "a", 2),
            ("O1", 1, 3, D1, "u", "020", D2, "b", 1),  # the same version, delivered again
            ("O2", 1, 1, D1, "u", "005", D1, "a", 3),
        ],
    )

    classified = T.classify_batch(df, LINES.keys)

    assert_rows(
        classified.select("order_id", "_seq", "_ingest_date", "_rank", "_dup"),
        "order_id string, _seq string, _ingest_date date, _rank int, _dup boolean",
        [
            ("O1", "020", D2, 1, False),
            ("O1", "020", D1, 2, True),
            ("O1", "010", D1, 3, False),
            ("O2", "005", D1, 1, False),
        ],
    )
    assert T.version_counts(classified).first().asDict() == {"dups": 1, "older": 1, "unplaced": 0}


def test_only_a_newest_delete_without_partition_values_is_unplaced(spark: SparkSession) -> None:
    df = batch(
        spark,
        [
            ("O1", 1, None, None, "d", "020", D2, "b", 1),  # newest, a delete with no date
            ("O1", 1, 3, D1, "u", "010", D1, "a", 1),
            ("O2", 1, None, None, "d", "010", D2, "b", 2),  # older than O2's update
            ("O2", 1, 4, None, "u", "020", D2, "b", 3),
            ("O3", 1, None, D1, "d", "030", D2, "b", 4),  # a delete that has its date
        ],
    )

    classified = T.classify_batch(df, LINES.keys)

    assert T.version_counts(classified, LINES.partition_by).first()["unplaced"] == 1
    assert T.version_counts(classified).first()["unplaced"] == 0


def test_the_newest_versions_partition_values_come_with_the_counts(spark: SparkSession) -> None:
    df = batch(
        spark,
        [
            ("O1", 1, 3, D1, "u", "010", D1, "a", 1),  # older: its date is not the MERGE's
            ("O1", 1, 3, D2, "u", "020", D2, "b", 1),
            ("O2", 1, None, None, "d", "030", D2, "b", 2),  # newest, no date: the null partition
            ("O3", 1, 4, D2, "u", "010", D2, "b", 3),
        ],
    )

    versions = T.version_counts(T.classify_batch(df, LINES.keys), LINES.partition_by).first()

    assert sorted((p["order_date"] for p in versions["places"]), key=str) == [D2, None]
    assert "places" not in T.version_counts(T.classify_batch(df, LINES.keys)).first().asDict()


def test_a_delete_takes_its_partition_from_its_keys_newer_version_in_the_batch(
    spark: SparkSession,
) -> None:
    df = batch(
        spark,
        [
            ("O1", 1, 2, D2, "u", "010", D1, "a", 1),
            ("O1", 1, None, None, "d", "020", D1, "a", 2),
        ],
    )

    source = (
        T.classify_batch(df, LINES.keys)
        .transform(T.fill_partitions_from_batch(LINES))
        .withColumn("_lsn", F.lit(None).cast("long"))
        .withColumn("_event_ts", F.lit(None).cast("timestamp"))
        .withColumn("_run_id", F.lit("r"))
        .withColumn("_updated_at", F.lit(None).cast("timestamp"))
        .transform(T.newest_versions(LINES))
    )

    assert_rows(
        source.select("order_id", "line_no", "order_date", "_seq", "_is_deleted"),
        "order_id string, line_no int, order_date date, _seq string, _is_deleted boolean",
        [("O1", 1, D2, "020", True)],
    )


def test_a_delete_still_without_a_partition_takes_the_one_its_row_has_in_the_table(
    spark: SparkSession,
) -> None:
    source = spark.createDataFrame(
        [("O1", 1, None, True), ("O2", 1, D1, False), ("O3", 1, None, True)],
        "order_id string, line_no int, order_date date, _is_deleted boolean",
    )
    current = spark.createDataFrame(
        [("O1", 1, D3)], "order_id string, line_no int, order_date date"
    )

    filled = source.transform(T.partitions_from_table(LINES, current))

    assert_rows(
        filled,
        "order_id string, line_no int, order_date date, _is_deleted boolean",
        [("O1", 1, D3, True), ("O2", 1, D1, False), ("O3", 1, None, True)],
    )


def test_merge_outcomes_count_what_the_merge_will_do(spark: SparkSession) -> None:
    source = spark.createDataFrame(
        [
            ("N1", "5", False),  # new
            ("N2", "5", True),  # new, arriving deleted
            ("U1", "5", False),  # newer than the table's
            ("D1", "5", True),  # newer, a delete
            ("S1", "5", False),  # the table's version again
            ("X1", "5", False),  # older than the table's
        ],
        "order_id string, _seq string, _is_deleted boolean",
    )
    current = spark.createDataFrame(
        [("U1", "4", False), ("D1", "4", False), ("S1", "5", False), ("X1", "6", False)],
        "order_id string, _seq string, _is_deleted boolean",
    )

    outcomes = T.merge_outcomes(source, current, ("order_id",)).first()

    assert outcomes.asDict() == {
        "ins": 1,
        "ins_del": 1,
        "upd": 1,
        "del": 1,
        "same": 1,
        "stale": 1,
    }


def test_a_line_takes_its_orders_date_and_dies_with_a_newer_order_delete(
    spark: SparkSession,
) -> None:
    lines = spark.createDataFrame(
        [("O1", 1, "u", "050"), ("O2", 1, "u", "050"), ("O3", 1, "u", "050")],
        "order_id string, line_no int, _op string, _seq string",
    )
    orders = spark.createDataFrame(
        [("O1", D1, "040", False), ("O2", D2, "090", True)],
        "order_id string, order_date date, _seq string, _is_deleted boolean",
    )

    attached = lines.transform(T.attach_parent(LINES, orders))

    assert_rows(
        attached,
        "order_id string, line_no int, _op string, _seq string, order_date date",
        [("O1", 1, "u", "050", D1), ("O2", 1, "d", "050", D2), ("O3", 1, "u", "050", None)],
    )


def test_waiting_lines_move_to_their_orders_partition_once_it_arrives(
    spark: SparkSession,
) -> None:
    meta = "_lsn long, _event_ts timestamp, _source_file string, _ingest_date date, "
    meta += "_run_id string, _updated_at timestamp"
    current = spark.createDataFrame(
        [
            ("O1", 1, 2, None, "050", None, None, None, None, None, None, False),
            ("O2", 1, 2, None, "050", None, None, None, None, None, None, False),
            ("O9", 1, 2, D1, "050", None, None, None, None, None, None, False),
        ],
        f"order_id string, line_no int, qty int, order_date date, _seq string, {meta}, "
        "_is_deleted boolean",
    )
    orders = spark.createDataFrame(
        [("O1", D2, "040", False), ("O2", D3, "090", True)],
        "order_id string, order_date date, _seq string, _is_deleted boolean",
    )

    found = T.adoptions(LINES, current, orders)
    moves = T.adoption_source(LINES, found)

    assert_rows(
        moves.select("order_id", "order_date", "_is_deleted", "_action"),
        "order_id string, order_date date, _is_deleted boolean, _action string",
        [
            ("O1", D2, False, "move"),
            ("O1", None, False, "delete"),
            ("O2", D3, True, "move"),  # its order was deleted after the line: moved as deleted
            ("O2", None, False, "delete"),
        ],
    )


def test_a_cascade_tombstones_only_deletes_the_parent_table_applied(spark: SparkSession) -> None:
    orders_batch = spark.createDataFrame(
        [("O1", "d", "100"), ("O2", "d", "100"), ("O3", "u", "100")],
        "order_id string, _op string, _seq string",
    )
    orders_table = spark.createDataFrame(
        [("O1", D1, "100", True), ("O2", D2, "200", True), ("O3", D3, "100", False)],
        "order_id string, order_date date, _seq string, _is_deleted boolean",
    )

    source = T.cascade_source(LINES, orders_batch, orders_table)

    # O2's delete lost to a newer version in the table; O3 is no delete.
    assert_rows(source, "order_id string, order_date date, _seq string", [("O1", D1, "100")])


def items_rows(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Rows of the `items` snapshot table: item_id, active, snapshot_date, _seq, _is_deleted (the
    other columns null)."""
    df = spark.createDataFrame(
        rows, "item_id string, active boolean, snapshot_date date, _seq string, _is_deleted boolean"
    )
    given = set(df.columns)
    return df.select(
        *[
            F.col(f.name) if f.name in given else F.lit(None).cast(f.dataType).alias(f.name)
            for f in silver_schema(ITEMS).fields
        ]
    )


def seq(day: date, at: str = "09") -> str:
    return f"{day}|{day}T{at}:00:00"


TIMELINE_DDL = (
    "item_id string, _day date, _event string, active boolean, snapshot_date date, "
    "inactive_from date, _seq string"
)


def test_snapshot_days_apply_in_order_in_one_pass(spark: SparkSession) -> None:
    D4 = date(2024, 1, 4)
    table = items_rows(
        spark,
        [
            ("I1", True, D1, seq(D1), False),
            ("I2", True, D1, seq(D1), False),
            ("I3", False, D1, seq(D1), False),  # listed inactive
            ("I4", True, D4, seq(D4), False),  # from a snapshot newer than the batch
            ("I6", True, D2, seq(D2), False),  # holds D2's version already
            ("I7", True, D1, seq(D1), True),  # deleted: never closed
        ],
    )
    listed = items_rows(
        spark,
        [
            ("I1", True, D2, seq(D2), False),
            ("I1", True, D3, seq(D3), False),
            ("I2", True, D3, seq(D3), False),  # absent on D2, back on D3
            ("I3", True, D3, seq(D3), False),
            ("I4", True, D2, seq(D2), False),  # older than the table's
            ("I5", True, D2, seq(D2), False),  # new, then absent on D3
            ("I6", True, D2, seq(D2), False),  # the same version again, then absent on D3
        ],
    )
    days = spark.createDataFrame([(D2,), (D3,)], "snapshot_date date")

    timeline = T.snapshot_timeline(ITEMS, listed, table, days)

    absent = lambda d: f"{d}|absent"  # noqa: E731
    assert_rows(
        timeline.select(*TIMELINE_DDL.replace(",", "").split()[::2]),
        TIMELINE_DDL,
        [
            ("I1", D2, "upd", True, D2, None, seq(D2)),
            ("I1", D3, "upd", True, D3, None, seq(D3)),
            ("I2", D2, "absent", False, D2, D2, absent(D2)),
            ("I2", D3, "upd", True, D3, None, seq(D3)),
            ("I3", D3, "upd", True, D3, None, seq(D3)),
            ("I4", D2, "stale", True, D2, None, seq(D2)),
            ("I5", D2, "ins", True, D2, None, seq(D2)),
            ("I5", D3, "absent", False, D3, D3, absent(D3)),
            ("I6", D2, "same", True, D2, None, seq(D2)),
            ("I6", D3, "absent", False, D3, D3, absent(D3)),
        ],
    )
    assert_rows(
        T.snapshot_states(ITEMS, timeline).select("item_id", "active", "inactive_from", "_seq"),
        "item_id string, active boolean, inactive_from date, _seq string",
        [
            ("I1", True, None, seq(D3)),
            ("I2", True, None, seq(D3)),
            ("I3", True, None, seq(D3)),
            ("I5", False, D3, absent(D3)),
            ("I6", False, D3, absent(D3)),
        ],
    )


def test_a_row_listed_inactive_is_not_closed_by_a_later_absence(spark: SparkSession) -> None:
    table = items_rows(spark, [])
    listed = items_rows(spark, [("I1", False, D1, seq(D1), False)])
    days = spark.createDataFrame([(D1,), (D2,)], "snapshot_date date")

    timeline = T.snapshot_timeline(ITEMS, listed, table, days)

    assert_rows(
        timeline.select(*TIMELINE_DDL.replace(",", "").split()[::2]),
        TIMELINE_DDL,
        [("I1", D1, "ins", False, D1, None, seq(D1))],
    )


def test_scd2_folds_repeated_versions_and_closes_each_at_the_next(spark: SparkSession) -> None:
    t = [datetime(2024, 1, d) for d in (1, 2, 3, 4)]
    history_ddl = (
        "item_id string, price int, active boolean, updated_at timestamp, "
        "valid_from timestamp, valid_to timestamp, is_current boolean, _seq string, _lsn long"
    )
    stored = spark.createDataFrame(
        [("I1", 10, True, t[0], t[0], None, True, "1", None)], history_ddl
    )
    batch_rows = spark.createDataFrame(
        [
            ("I1", 10, True, t[0], t[1], "2", None, "u"),  # same attributes: folded
            ("I1", 12, True, t[0], t[2], "3", None, "u"),
        ],
        "item_id string, price int, active boolean, updated_at timestamp, _event_ts timestamp, "
        "_seq string, _lsn long, _op string",
    )
    current = spark.createDataFrame(
        [("I1", 12, True, t[0], None, False, t[2], "3", None)],
        "item_id string, price int, active boolean, updated_at timestamp, inactive_from date, "
        "_is_deleted boolean, _event_ts timestamp, _seq string, _lsn long",
    )

    source = T.scd2_source(ITEMS, batch_rows, stored, current)

    assert_rows(
        source.select(
            "item_id", "price", "valid_from", "valid_to", "is_current", "_seq", "_action"
        ),
        "item_id string, price int, valid_from timestamp, valid_to timestamp, "
        "is_current boolean, _seq string, _action string",
        [
            ("I1", 10, t[0], t[2], False, "1", "upsert"),
            ("I1", 12, t[2], None, True, "3", "upsert"),
        ],
    )


def test_partition_literals_prune_to_the_batch_and_always_the_null_partition() -> None:
    values = [{"order_date": D2}, {"order_date": D1}, {"order_date": D2}]

    assert partition_literals(("order_date",), values) == (
        "(t.order_date IN (DATE'2024-01-01', DATE'2024-01-02'))"
    )
    assert merge_partition_filter(("order_date",), values) == (
        "(t.order_date IN (DATE'2024-01-01', DATE'2024-01-02') OR t.order_date IS NULL)"
    )
    assert merge_partition_filter(("order_date",), []) == "(t.order_date IS NULL)"
    # The same on bare column names, to filter a table's DataFrame.
    assert merge_partition_filter(("order_date",), values, alias="") == (
        "(order_date IN (DATE'2024-01-01', DATE'2024-01-02') OR order_date IS NULL)"
    )


def test_a_merge_plan_puts_partition_literals_before_the_keys() -> None:
    plan = MergePlan.of(
        None,  # type: ignore[arg-type]  # the condition needs no table
        LINES.keys,
        transaction("lines", 7),
        "MERGE into silver.lines",
        LINES.partition_by,
        [{"order_date": D1}],
    )

    assert key_condition(LINES.keys) == "t.order_id = s.order_id AND t.line_no = s.line_no"
    assert plan.condition == (
        "(t.order_date IN (DATE'2024-01-01') OR t.order_date IS NULL) AND "
        "t.order_id = s.order_id AND t.line_no = s.line_no"
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ("silver.orders", 7)),
        ({"purpose": "cascade"}, ("silver.orders.cascade", 7)),
        ({"snapshot": True}, ("silver.orders", 70_000)),
        ({"purpose": "adopt", "parent_version": 12}, ("silver.orders.adopt", 12_000_007)),
    ],
)
def test_transaction_versions_grow_with_the_bronze_version_consumed(
    kwargs: dict, expected: tuple[str, int]
) -> None:
    txn = transaction("orders", 7, **kwargs)

    assert (txn.app_id, txn.version) == expected
    assert transaction("orders", 8, **kwargs).version > txn.version


def test_quarantine_rows_say_where_a_record_came_from_and_why(spark: SparkSession) -> None:
    invalid = spark.createDataFrame(
        [("r1", "lines/ingest_date=2024-01-01/a.jsonl", 4, D1, "{}", "qty", "qty: missing")],
        "_record_id string, _file string, _line long, ingest_date date, raw string, "
        "_q_column string, _q_reason string",
    )
    when = datetime(2024, 1, 2, 3, 4, 5)

    rows = invalid.transform(T.quarantine_rows(LINES, "run-1", when))

    assert_rows(
        rows,
        "layer string, source string, record_id string, file string, line long, "
        "ingest_date date, raw string, column_name string, reason string, run_id string, "
        "quarantined_at timestamp",
        [
            (
                "silver",
                "lines",
                "r1",
                "lines/ingest_date=2024-01-01/a.jsonl",
                4,
                D1,
                "{}",
                "qty",
                "qty: missing",
                "run-1",
                when,
            )
        ],
    )


def test_personal_fields_are_hmac_hashed_and_the_key_is_nowhere_in_the_plan(
    spark: SparkSession,
) -> None:
    # The plan is what the Spark UI's SQL tab and the event log show: a key written into it as
    # a literal (or its padded forms, which give it back by XOR) would be readable there.
    key = b"a-key-that-must-never-reach-the-plan"
    people = TableSpec(
        name="people",
        source="people",
        landing=LandingSpec("json"),
        kind="snapshot",
        keys=("person_id",),
        columns=(
            ColumnSpec("person_id", "string", required=True),
            ColumnSpec("email", "string"),
            ColumnSpec("name", "string"),
        ),
        pii=PiiSpec(hash=("email",), drop=("name",), subject="person_id"),
    )
    df = spark.createDataFrame(
        [("p1", " Ada@Example.COM ", "Ada"), ("p2", None, "Bob")],
        "person_id string, email string, name string",
    )

    hashed = df.transform(pseudonymise(people, key))

    expected = hmac.new(key, b"ada@example.com", hashlib.sha256).hexdigest()
    assert_rows(hashed, "person_id string, email_hash string", [("p1", expected), ("p2", None)])
    plans = hashed._jdf.queryExecution().toString().lower()
    padded = key.ljust(64, b"\0")
    for secret in (key, bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)):
        assert secret.hex() not in plans
        assert secret.decode("latin-1").lower() not in plans
