"""The shape of a silver table and its SCD2 history, from its spec; and what readers see (`live`).

Business columns come first (personal data hashed or dropped, derived and parent columns added,
`snapshot_date`/`inactive_from` for snapshot tables), then the metadata columns `META_FIELDS`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.core.delta_io import stats_columns_property
from lakehouse.core.pii import hashed_column
from lakehouse.core.specs import DECIMAL_RE, TableSpec

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
# Columns of the SCD2 history besides the business columns.
HISTORY_FIELDS = ("valid_from", "valid_to", "is_current", "_seq", "_lsn")
# Columns a snapshot table adds: the snapshot day of the row and since when it is inactive.
SNAPSHOT_FIELDS = ("snapshot_date", "inactive_from")


def spark_type(type_name: str) -> DataType:
    """The Spark type of a column type of the spec (`string`, `int`, `decimal(18,2)`, ...)."""
    match = DECIMAL_RE.match(type_name)
    if match:
        return DecimalType(int(match.group(1)), int(match.group(2)))
    return {
        "string": StringType(),
        "int": IntegerType(),
        "long": LongType(),
        "boolean": BooleanType(),
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
            fields.append(StructField(hashed_column(c.name), StringType(), True))
        else:
            fields.append(StructField(c.name, spark_type(c.type), c.name not in spec.keys))
    for name in spec.derived:
        fields.append(StructField(name, DateType(), True))
    if spec.parent:
        for name in spec.parent.columns:
            if name not in {f.name for f in fields}:
                fields.append(StructField(name, DateType(), True))
    if spec.kind == "snapshot":
        fields.extend(StructField(name, DateType(), True) for name in SNAPSHOT_FIELDS)
    return StructType(fields + META_FIELDS)


def history_schema(spec: TableSpec) -> StructType:
    """The SCD2 history of a table: its business columns, `valid_from`, `valid_to`,
    `is_current`, `_seq` and `_lsn`."""
    business = [
        f
        for f in silver_schema(spec).fields
        if not f.name.startswith("_") and f.name not in SNAPSHOT_FIELDS
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


def business_columns(spec: TableSpec) -> list[str]:
    """The silver table's columns without the metadata columns."""
    return [f.name for f in silver_schema(spec).fields if not f.name.startswith("_")]


def history_business_columns(spec: TableSpec) -> list[str]:
    """The history's columns without validity and ordering columns."""
    return [f.name for f in history_schema(spec).fields if f.name not in HISTORY_FIELDS]


def stats_properties(spec: TableSpec, history: bool = False) -> dict[str, str]:
    """No per-file statistics of the hashed personal columns: the transaction log would keep
    their min/max values after an erasure and VACUUM (docs/MAINTENANCE.md)."""
    schema = history_schema(spec) if history else silver_schema(spec)
    partitions = () if history else spec.partition_by
    return stats_columns_property(schema, [hashed_column(c) for c in spec.pii.hash], partitions)


def live(df: DataFrame) -> DataFrame:
    """Only the rows readers should see: tombstones left out."""
    return df.where(~F.col("_is_deleted"))
