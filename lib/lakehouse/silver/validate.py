"""Typing and validating bronze records for a silver table: pure DataFrame transforms.

`typed_records(spec)` turns bronze rows into one row per record with the envelope
(`_op` u/d, `_seq`, `_lsn`, `_event_ts`), each declared column typed, and `_errors`: an array of
(column, reason) for every rule the record breaks. `split_valid` separates the records that
break nothing from the quarantine rows (first failing column, every reason joined).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.specs import DECIMAL_RE, ColumnSpec, TableSpec

Transform = Callable[[DataFrame], DataFrame]

INT_RE = r"^[+-]?[0-9]+$"
NUMBER_RE = r"^[+-]?[0-9]+(\.[0-9]+)?$"
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TS_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
CDC_OPS = ("c", "u", "d", "r")
ENVELOPE = (
    "op string, ts_ms string, lsn string, before map<string,string>, after map<string,string>"
)
SEQ_TS_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"


def _quote(value: Column) -> Column:
    return F.concat(F.lit("'"), value, F.lit("'"))


def _describe(c: ColumnSpec) -> str:
    match = DECIMAL_RE.match(c.type)
    if match:
        return f"a decimal number (at most {match.group(1)} digits)"
    return {
        "int": "an integer",
        "long": "an integer",
        "boolean": "true or false",
        "timestamp": "an ISO-8601 timestamp",
        "date": "a date YYYY-MM-DD",
    }.get(c.type, c.type)


def typed_value(c: ColumnSpec, raw: Column) -> Column:
    """The typed value of a string field, or null when it does not parse as `c.type`."""
    if c.type == "string":
        return raw
    if c.type in ("int", "long"):
        return F.when(raw.rlike(INT_RE), raw.cast(c.type))
    if c.type == "boolean":
        return F.when(F.lower(raw).isin("true", "false"), F.lower(raw) == "true")
    if c.type == "timestamp":
        return F.when(raw.rlike(TS_RE), raw.cast("timestamp"))
    if c.type == "date":
        return F.when(raw.rlike(DATE_RE), F.to_date(raw, "yyyy-MM-dd"))
    return F.when(F.trim(raw).rlike(NUMBER_RE), F.trim(raw).cast(c.type))


def column_errors(c: ColumnSpec, raw: Column, typed: Column) -> list[Column]:
    """(column, reason) structs, null where the rule holds."""

    def err(cond: Column, reason: Column) -> Column:
        return F.when(cond, F.struct(F.lit(c.name).alias("column"), reason.alias("reason")))

    name = F.lit(f"{c.name}: ")
    out = []
    if c.required:
        out.append(err(raw.isNull() | (F.trim(raw) == ""), F.lit(f"{c.name}: missing")))
    out.append(
        err(
            raw.isNotNull() & (F.trim(raw) != "") & typed.isNull(),
            F.concat(name, _quote(raw), F.lit(f" is not {_describe(c)}")),
        )
    )
    present = raw.isNotNull() & typed.isNotNull()
    if c.allowed is not None:
        out.append(
            err(
                present & ~typed.isin(*c.allowed),
                F.concat(name, _quote(raw), F.lit(" is not one of " + ", ".join(c.allowed))),
            )
        )
    if c.pattern is not None:
        out.append(
            err(
                present & ~typed.rlike(c.pattern),
                F.concat(name, _quote(raw), F.lit(f" does not match {c.pattern}")),
            )
        )
    bounds = (
        (c.min, lambda v: typed < F.lit(v), "is below the minimum"),
        (c.max, lambda v: typed > F.lit(v), "is above the maximum"),
        (c.min_exclusive, lambda v: typed <= F.lit(v), "must be greater than"),
        (c.max_exclusive, lambda v: typed >= F.lit(v), "must be less than"),
    )
    for bound, breaks, words in bounds:
        if bound is not None:
            shown = int(bound) if float(bound).is_integer() else bound
            out.append(
                err(present & breaks(bound), F.concat(name, raw, F.lit(f" {words} {shown}")))
            )
    if c.scale is not None:
        decimals = F.length(F.regexp_extract(F.trim(raw), r"\.([0-9]*)$", 1))
        out.append(
            err(
                present & (decimals > c.scale),
                F.concat(name, _quote(raw), F.lit(f" has more than {c.scale} decimals")),
            )
        )
    return out


# 2^63: shifts a negative long onto 0 .. 2^63 - 1 (19 digits at most).
_LONG_OFFSET = str(2**63)


def lsn_seq(lsn: Column) -> Column:
    """A CDC `lsn` (long) as a `_seq` string that sorts like the number: a non-negative one
    zero-padded to 20 digits (as silver has always stored it), a negative one as "-" and
    `lsn + 2^63` padded to 19 digits, which sorts below every non-negative one ("-" < "0") and
    keeps the order among negatives (a plain `lpad` put "-5" after "-1")."""
    offset = F.lit(_LONG_OFFSET).cast("decimal(20,0)")
    shifted = (lsn.cast("decimal(20,0)") + offset).cast("string")
    return F.when(lsn >= 0, F.lpad(lsn.cast("string"), 20, "0")).otherwise(
        F.concat(F.lit("-"), F.lpad(shifted, 19, "0"))
    )


def typed_records(spec: TableSpec) -> Transform:
    """Bronze rows (`_record_id, _file, _line, ingest_date, raw, fields`) → typed records.

    Adds: `_op` ('u' upsert or 'd' delete), `_seq` (a string that sorts like the source's order
    of versions), `_lsn` (CDC only), `_event_ts` (when the version happened: commit time, event
    time or snapshot day), one typed column per declared column, the derived columns, and
    `_errors` (array of struct<column, reason>, empty when the record is valid)."""

    def transform(bronze: DataFrame) -> DataFrame:
        df = bronze
        envelope_errors: list[Column] = []
        if spec.kind == "cdc":
            env = F.from_json("raw", ENVELOPE)
            df = df.withColumn("_env", env)
            op = F.col("_env.op")
            lsn_raw = F.col("_env.lsn")
            df = df.withColumn(
                "_f", F.when(op == "d", F.col("_env.before")).otherwise(F.col("_env.after"))
            )
            df = df.withColumn("_op", F.when(op == "d", "d").otherwise("u"))
            df = df.withColumn("_lsn", F.when(lsn_raw.rlike(INT_RE), lsn_raw.cast("long")))
            df = df.withColumn("_seq", lsn_seq(F.col("_lsn")))
            ts_ms = F.col("_env.ts_ms")
            df = df.withColumn(
                "_event_ts",
                F.when(ts_ms.rlike(INT_RE), F.timestamp_millis(ts_ms.cast("long"))),
            )
            envelope_errors = [
                F.when(
                    op.isNull() | ~op.isin(*CDC_OPS),
                    F.struct(
                        F.lit("op").alias("column"),
                        F.concat(
                            F.lit("op: "),
                            F.coalesce(_quote(op), F.lit("missing")),
                            F.lit(" is not one of c, u, d, r"),
                        ).alias("reason"),
                    ),
                ),
                F.when(
                    F.col("_lsn").isNull(),
                    F.struct(
                        F.lit("lsn").alias("column"),
                        F.concat(
                            F.lit("lsn: "),
                            F.coalesce(_quote(lsn_raw), F.lit("missing")),
                            F.lit(" is not an integer"),
                        ).alias("reason"),
                    ),
                ),
                F.when(
                    F.col("_event_ts").isNull(),
                    F.struct(
                        F.lit("ts_ms").alias("column"),
                        F.lit("ts_ms: missing or not epoch milliseconds").alias("reason"),
                    ),
                ),
                F.when(
                    F.col("_f").isNull(),
                    F.struct(
                        F.lit("after").alias("column"),
                        F.when(op == "d", F.lit("before: missing for a delete"))
                        .otherwise(F.lit("after: missing for a create or update"))
                        .alias("reason"),
                    ),
                ),
            ]
        elif spec.landing.format == "jsonl" or "fields" not in bronze.columns:
            df = df.withColumn("_f", F.from_json("raw", "map<string,string>"))
            df = df.withColumn("_op", F.lit("u"))
        else:
            df = df.withColumn("_f", F.col("fields")).withColumn("_op", F.lit("u"))
        if spec.kind != "cdc":
            df = df.withColumn("_lsn", F.lit(None).cast("long"))
        errors: list[Column] = list(envelope_errors)
        is_delete = F.col("_op") == "d"
        for c in spec.columns:
            raw = F.col("_f").getItem(c.name)
            typed = typed_value(c, raw)
            df = df.withColumn(c.name, typed)
            checks = column_errors(c, raw, F.col(c.name))
            if c.name not in spec.keys:
                # A delete carries only its key: the other columns are not checked.
                checks = [F.when(~is_delete, e) for e in checks]
            errors.extend(checks)
        df = df.withColumn("_errors", F.filter(F.array(*errors), lambda e: e.isNotNull()))
        for name, expression in spec.derived.items():
            df = df.withColumn(name, F.expr(expression))
        if spec.kind == "events":
            assert spec.order_by is not None
            df = df.withColumn("_event_ts", F.col(spec.order_by))
            df = df.withColumn("_seq", F.date_format(F.col(spec.order_by), SEQ_TS_FORMAT))
        elif spec.kind == "snapshot":
            assert spec.order_by is not None
            df = df.withColumn("_event_ts", F.col("ingest_date").cast("timestamp"))
            df = df.withColumn(
                "_seq",
                F.concat_ws(
                    "|",
                    F.date_format("ingest_date", "yyyy-MM-dd"),
                    F.date_format(spec.order_by, SEQ_TS_FORMAT),
                ),
            )
        elif spec.kind == "corrections":
            df = df.withColumn("_event_ts", F.col("ingest_date").cast("timestamp"))
            df = df.withColumn(
                "_seq",
                F.concat_ws(
                    "|",
                    F.date_format("ingest_date", "yyyy-MM-dd"),
                    F.col("_file"),
                    F.lpad(F.col("_line").cast("string"), 12, "0"),
                ),
            )
        return df.drop("_env")

    return transform


def split_valid(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid records, invalid records with `_q_column` (the first failing column) and
    `_q_reason` (every reason); named apart from any business column, a `reason` of returns say)."""
    valid = df.where(F.size("_errors") == 0)
    invalid = df.where(F.size("_errors") > 0).select(
        "*",
        F.col("_errors")[0]["column"].alias("_q_column"),
        F.array_join(F.transform("_errors", lambda e: e["reason"]), "; ").alias("_q_reason"),
    )
    return valid, invalid


KEY_COLUMNS = ("_lh_ipad", "_lh_opad")


def key_pads(spark: SparkSession, key: bytes) -> DataFrame:
    """One row holding the inner and outer padded keys of HMAC-SHA-256 (RFC 2104) as columns
    `KEY_COLUMNS`. They are data of a scan, never literals of a plan: the Spark UI's SQL tab and
    the event log print a plan's literals, and a padded key gives the key back by XOR."""
    block = 64
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    ipad = bytearray(b ^ 0x36 for b in key)
    opad = bytearray(b ^ 0x5C for b in key)
    rows = spark.sparkContext.parallelize([(ipad, opad)], 1)
    return spark.createDataFrame(rows, f"{KEY_COLUMNS[0]} binary, {KEY_COLUMNS[1]} binary")


def hmac_sha256(value: Column) -> Column:
    """Keyed HMAC-SHA-256 of `value`, hex encoded, without a Python UDF: the two hashes run in the
    JVM over the padded keys of `key_pads`, which must be columns of the same DataFrame."""
    ipad, opad = (F.col(c) for c in KEY_COLUMNS)
    inner = F.unhex(F.sha2(F.concat(ipad, F.encode(value, "UTF-8")), 256))
    return F.when(value.isNotNull(), F.sha2(F.concat(opad, inner), 256))


def pseudonymise(spec: TableSpec, key: bytes) -> Transform:
    """Replace each personal-data column to hash with `<col>_hash` (HMAC of lower(trim(value)),
    so the same address written differently is the same person) and drop the columns to drop."""

    def transform(df: DataFrame) -> DataFrame:
        if spec.pii.hash:
            df = df.crossJoin(F.broadcast(key_pads(df.sparkSession, key)))
            for col in spec.pii.hash:
                df = df.withColumn(f"{col}_hash", hmac_sha256(F.lower(F.trim(F.col(col)))))
            df = df.drop(*spec.pii.hash, *KEY_COLUMNS)
        return df.drop(*spec.pii.drop)

    return transform
