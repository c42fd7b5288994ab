"""Erasure of a customer (`lakehouse erase --customer ID`): their personal data leaves bronze,
quarantine, silver, gold and the quality results; their orders stay, pseudonymised.
See docs/MAINTENANCE.md for the reasoning.

Which data is personal comes from the table specs (`conf/tables/*.yaml`, `pii`, read through
`lakehouse.core.pii`): the fields hashed or dropped on the way to silver (`email`, `phone`,
`first_name`, `last_name`, `ip`), the column naming whose record it is (`subject: customer_id`)
and the columns tying other records to the same person (`linked_by: [session_id]`: the anonymous
events of a session the customer signed in to). A request:

1. refuses to run while silver has not applied every bronze record of those sources (an
   unapplied record would be re-read from bronze's Change Data Feed, which still holds the
   original text until VACUUM, and bring the data back);
2. finds the customer's records: bronze records whose subject is the customer, or whose email or
   phone (strong identifiers; names are not, they are shared) is one of theirs, or whose session
   is one of theirs; quarantined records likewise, and any unparseable quarantined text holding
   one of their emails or phones, or, for a source with personal data, their id or session;
3. rewrites them in place (one MERGE per table, keyed by record id): the personal fields of a
   JSON record become null, an unparseable text becomes `[erased]`, the CSV `fields` map loses
   its personal values. Record ids, files, lines and dates stay, so the ledger's conservation
   still adds up and a re-delivery of the same record is still recognised as a duplicate;
4. in every silver and gold table holding the customer's hashed identity (`email_hash`,
   `phone_hash`): a hash of a required field (`email`) becomes `ERASED_HASH` (64 zeros: silver
   promises a complete, well-formed `email_hash`), one of an optional field (`phone`) null;
5. drops the quality results' failing-row examples that name the customer;
6. appends one row to the audit table `audit.erasures` (`AUDIT_TABLE`): request id,
   customer id, the tables changed with their versions and rows, the landing files holding the
   customer's records (the landing zone is outside the lakehouse; see the docs), and from when
   the old versions are gone for good: `unrecoverable_after`, the first `lakehouse maintain` run
   after `requested_at + maintenance.vacuum_retention_hours`. Never the personal data.

Every commit carries `erasure:<request id>` as its Delta `userMetadata`. A second request for the
same customer finds nothing to change, writes no table but the audit (status `nothing_left`).
Silver reads only inserts from bronze's Change Data Feed, so the rewrite (an update) is never
applied to silver as a new customer version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DateType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.bronze.ingestion import ERASED_SCHEMA, erased_path
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.core.delta_io import (
    commit_metadata,
    current_version,
    ensure_table,
    is_delta_table,
    with_conflict_retries,
)
from lakehouse.core.errors import UserError
from lakehouse.core.pii import HashedIdentity, hashed_identities, personal_sources
from lakehouse.core.specs import TableSpec
from lakehouse.gold.published import advance, latest_versions
from lakehouse.state.ledger import new_run_id, read_ledger, utcnow
from lakehouse.state.lock import run_lock
from lakehouse.state.quarantine import QUARANTINE_TABLE

AUDIT_TABLE = "audit.erasures"
QUALITY_RESULTS_TABLE = "quality.results"
ERASED_HASH = "0" * 64
ERASED_TEXT = "[erased]"
STATUS_ERASED = "erased"
STATUS_NOTHING_LEFT = "nothing_left"

AUDIT_SCHEMA = StructType(
    [
        StructField("request_id", StringType(), False),
        StructField("customer_id", StringType(), False),
        StructField("status", StringType(), False),
        StructField("reason", StringType(), True),
        StructField("requested_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
        StructField("unrecoverable_after", TimestampType(), False),
        StructField(
            "tables",
            ArrayType(
                StructType(
                    [
                        StructField("table", StringType(), True),
                        StructField("rows_changed", LongType(), True),
                        StructField("version_before", LongType(), True),
                        StructField("version_after", LongType(), True),
                    ]
                )
            ),
            False,
        ),
        StructField("landing_files", ArrayType(StringType()), False),
    ]
)

_RECORD_SCHEMA = StructType(
    [
        StructField("_record_id", StringType(), False),
        StructField("ingest_date", DateType(), True),
        StructField("raw", StringType(), True),
        StructField("fields", MapType(StringType(), StringType()), True),
    ]
)
_QUARANTINE_KEY_SCHEMA = StructType(
    [
        StructField("layer", StringType(), False),
        StructField("source", StringType(), False),
        StructField("record_id", StringType(), False),
        StructField("raw", StringType(), True),
        StructField("reason", StringType(), True),
    ]
)


class ErasureError(UserError):
    """An erasure that cannot run safely now; the message says what to do first."""


@dataclass(frozen=True)
class TableChange:
    """What one erasure did to one table (`layer.table`)."""

    table: str
    rows_changed: int
    version_before: int | None
    version_after: int | None


@dataclass(frozen=True)
class ErasureResult:
    """The outcome of `erase`, as recorded in `audit.erasures`."""

    request_id: str
    customer_id: str
    status: str
    reason: str | None
    requested_at: datetime
    finished_at: datetime
    unrecoverable_after: datetime
    tables: tuple[TableChange, ...]
    landing_files: tuple[str, ...]


@dataclass
class _Subject:
    """What identifies the customer's records: the id, strong identifiers (values of hashed
    fields: email, phone) and linking values (sessions)."""

    customer_id: str
    strong: set[str]
    links: dict[str, set[str]]

    def needles(self) -> set[str]:
        """Substrings that any text of the customer's records contains at least one of."""
        out = {self.customer_id, *self.strong}
        for values in self.links.values():
            out |= values
        return {v for v in out if v}


# --- pure helpers: one record at a time ---------------------------------------------------------


def record_images(spec: TableSpec, record: Any) -> list[dict[str, Any]]:
    """The row images of a parsed JSON record: `before` and `after` of a CDC event, the object
    itself otherwise."""
    if not isinstance(record, dict):
        return []
    if spec.kind == "cdc":
        return [img for img in (record.get("before"), record.get("after")) if isinstance(img, dict)]
    return [record]


def belongs_to(spec: TableSpec, images: Sequence[Mapping[str, Any]], subject: _Subject) -> bool:
    """Whether a record with these images holds the subject's personal data: its subject column
    names them, one of its hashed fields (email, phone) is theirs, or a linking column (session)
    is one of theirs."""
    for img in images:
        if spec.pii.subject and img.get(spec.pii.subject) == subject.customer_id:
            return True
        if any(_text(img.get(f)) in subject.strong for f in spec.pii.hash):
            return True
        for col in spec.pii.linked_by:
            if _text(img.get(col)) in subject.links.get(col, set()):
                return True
    return False


def redact_json(spec: TableSpec, raw: str) -> str | None:
    """The record text with every personal field of `spec` set to null; None when the text is
    not a JSON object or holds no personal value (nothing to change)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    changed = False
    for img in record_images(spec, record):
        for f in spec.pii.fields:
            if img.get(f) is not None:
                img[f] = None
                changed = True
    if not changed:
        return None
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def redact_fields(spec: TableSpec, fields: Mapping[str, str | None] | None) -> dict | None:
    """A CSV record's field map with its personal values set to null (None if nothing to do)."""
    if not fields or not any(fields.get(f) is not None for f in spec.pii.fields):
        return None
    return {k: (None if k in spec.pii.fields else v) for k, v in fields.items()}


def scrub_text(text: str | None, needles: Iterable[str]) -> str | None:
    """`text` with every occurrence of a needle replaced by `[erased]` (None if none occurs)."""
    if text is None:
        return None
    out = text
    for needle in sorted({n for n in needles if n}, key=len, reverse=True):
        out = out.replace(needle, ERASED_TEXT)
    return None if out == text else out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_forms(values: Iterable[str]) -> set[str]:
    """Each value as written in JSON text too (escaped non-ASCII characters), for text search."""
    out = set()
    for v in values:
        out.add(v)
        out.add(json.dumps(v)[1:-1])
    return out


# --- the request ---------------------------------------------------------------------------------


def erase(
    spark: SparkSession,
    lh: Lakehouse,
    customer_id: str,
    request_id: str | None = None,
    reason: str | None = None,
) -> ErasureResult:
    """Erase one customer's personal data from every layer (see the module docstring) and record
    the request in `audit.erasures`. Raises `ErasureError` while silver has not applied every
    bronze record of a source holding personal data."""
    if not customer_id or not customer_id.strip():
        raise ErasureError("erase: a customer id is required")
    request_id = request_id or f"erase-{new_run_id()}"
    # One writer at a time: a run between the check below and the rewrite could bring the
    # customer's records back into silver unerased.
    with run_lock(lh, request_id, f"erase {customer_id}"):
        return _erase(spark, lh, customer_id, request_id, reason)


def _erase(
    spark: SparkSession, lh: Lakehouse, customer_id: str, request_id: str, reason: str | None
) -> ErasureResult:
    requested_at = utcnow()
    personal = personal_sources(lh.tables)
    _check_silver_caught_up(spark, lh, personal)
    changes: list[TableChange] = []
    landing_files: set[str] = set()
    with commit_metadata(spark, f"erasure:{request_id}"):
        subject = _find_subject(spark, lh, customer_id, personal)
        changes.append(_erase_quarantine(spark, lh, personal, subject, landing_files))
        erased_ids: list[tuple[str, str]] = []
        for spec in personal.values():
            changes.append(_erase_bronze(spark, lh, spec, subject, landing_files, erased_ids))
        _record_erased_ids(spark, lh, erased_ids, request_id)
        crash_point("erase.bronze")
        gold_before = latest_versions(spark, lh)
        for layer in ("silver", "gold"):
            changes.extend(_erase_hashes(spark, lh, layer, customer_id))
        # Readers of the published gold set move to the erased versions (a table with a stopped
        # run's unpublished write on top moves at the next publish, which rewrites it).
        advance(spark, lh, f"erasure:{request_id}", gold_before)
        changes.append(_erase_quality_examples(spark, lh, customer_id))
        touched = tuple(c for c in changes if c.rows_changed > 0)
        finished_at = utcnow()
        result = ErasureResult(
            request_id=request_id,
            customer_id=customer_id,
            status=STATUS_ERASED if touched else STATUS_NOTHING_LEFT,
            reason=reason,
            requested_at=requested_at,
            finished_at=finished_at,
            unrecoverable_after=finished_at
            + timedelta(hours=lh.config.maintenance.vacuum_retention_hours),
            tables=touched,
            landing_files=tuple(sorted(landing_files)),
        )
        _record(spark, lh, result)
    return result


def read_audit(spark: SparkSession, lh: Lakehouse) -> DataFrame:
    """Every recorded erasure request (columns of AUDIT_SCHEMA)."""
    path = lh.path(AUDIT_TABLE)
    ensure_table(spark, path, AUDIT_SCHEMA, change_data_feed=False)
    return spark.read.format("delta").load(path)


def recoverable_erasures(spark: SparkSession, lh: Lakehouse, now: datetime | None = None) -> int:
    """How many erased customers' old data time travel may still reach: requests whose
    `unrecoverable_after` has not passed yet (a maintenance run after it removes the files)."""
    path = lh.path(AUDIT_TABLE)
    if not is_delta_table(spark, path):
        return 0
    moment = now or utcnow()
    return (
        spark.read.format("delta")
        .load(path)
        .where((F.col("status") == STATUS_ERASED) & (F.col("unrecoverable_after") > F.lit(moment)))
        .select("customer_id")
        .distinct()
        .count()
    )


def _check_silver_caught_up(
    spark: SparkSession, lh: Lakehouse, personal: Mapping[str, TableSpec]
) -> None:
    bronze = {
        name: path
        for name, spec in personal.items()
        if is_delta_table(spark, path := lh.path(f"bronze.{spec.source}"))
    }
    if not bronze:
        return
    ledger = (
        read_ledger(spark, lh)
        .where((F.col("layer") == "silver") & (F.col("status") == "ok"))
        .groupBy("table_name")
        .agg(F.max("input_version").alias("v"))
        .collect()
    )
    applied = {r["table_name"]: r["v"] for r in ledger if r["v"] is not None}
    for name, path in bronze.items():
        spec = personal[name]
        end = current_version(spark, path)
        consumed = applied.get(spec.name)
        start = 0 if consumed is None else consumed + 1
        if start > end:
            continue
        pending = (
            spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", start)
            .option("endingVersion", end)
            .load(path)
            .where(F.col("_change_type") == "insert")
            .count()
        )
        if pending:
            raise ErasureError(
                f"silver.{spec.name} has not applied {pending} records of bronze.{spec.source} "
                f"yet (bronze version {end}, silver consumed {consumed}): run `lakehouse silver` "
                "first, then erase; otherwise silver would re-read them with the personal data"
            )


def _contains_any(column: str, needles: Iterable[str]) -> Column:
    found = [F.instr(F.col(column), n) > 0 for n in sorted(needles) if n]
    return reduce(lambda a, b: a | b, found) if found else F.lit(False)


def _find_subject(
    spark: SparkSession, lh: Lakehouse, customer_id: str, personal: Mapping[str, TableSpec]
) -> _Subject:
    """The customer's strong identifiers and linking values, from every record (bronze and
    quarantine) whose subject column names them."""
    subject = _Subject(customer_id, set(), {})
    needle = _json_forms([customer_id])
    for spec in personal.values():
        if spec.pii.subject is None:
            continue
        for raw, fields in _candidate_texts(spark, lh, spec, needle):
            images = _images_of(spec, raw, fields)
            if not any(img.get(spec.pii.subject) == customer_id for img in images):
                continue
            for img in images:
                subject.strong |= {v for f in spec.pii.hash if (v := _text(img.get(f)))}
                for col in spec.pii.linked_by:
                    if (v := _text(img.get(col))) is not None:
                        subject.links.setdefault(col, set()).add(v)
    return subject


def _candidate_texts(
    spark: SparkSession, lh: Lakehouse, spec: TableSpec, needles: Iterable[str]
) -> list[tuple[str, dict | None]]:
    """(raw, fields) of the bronze and quarantine records of `spec`'s source containing a
    needle."""
    out: list[tuple[str, dict | None]] = []
    bronze = lh.path(f"bronze.{spec.source}")
    if is_delta_table(spark, bronze):
        rows = (
            spark.read.format("delta")
            .load(bronze)
            .where(_contains_any("raw", needles))
            .select("raw", "fields")
            .collect()
        )
        out += [(r["raw"], r["fields"]) for r in rows]
    qpath = lh.path(QUARANTINE_TABLE)
    if is_delta_table(spark, qpath):
        rows = (
            spark.read.format("delta")
            .load(qpath)
            .where(F.col("source").isin(spec.source, spec.name))
            .where(_contains_any("raw", needles))
            .select("raw")
            .collect()
        )
        out += [(r["raw"], None) for r in rows]
    return out


def _images_of(spec: TableSpec, raw: str | None, fields: Mapping | None) -> list[dict[str, Any]]:
    if fields:
        return [dict(fields)]
    try:
        return record_images(spec, json.loads(raw or ""))
    except ValueError:
        return []


def _erase_bronze(
    spark: SparkSession,
    lh: Lakehouse,
    spec: TableSpec,
    subject: _Subject,
    landing_files: set[str],
    erased_ids: list[tuple[str, str]],
) -> TableChange:
    """Rewrite the bronze records of `spec`'s source that hold the subject's personal data; add
    `(source, record id)` of each to `erased_ids`."""
    name = f"bronze.{spec.source}"
    path = lh.path(name)
    if not is_delta_table(spark, path):
        return TableChange(name, 0, None, None)
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(_contains_any("raw", _json_forms(subject.needles())))
        .select("_record_id", "ingest_date", "_file", "raw", "fields")
        .collect()
    )
    updates: list[tuple[Any, ...]] = []
    for r in rows:
        fields = r["fields"]
        if not belongs_to(spec, _images_of(spec, r["raw"], fields), subject):
            continue
        landing_files.add(r["_file"])
        if fields:
            new_fields = redact_fields(spec, fields)
            if new_fields is not None:
                updates.append((r["_record_id"], r["ingest_date"], ERASED_TEXT, new_fields))
            continue
        new_raw = redact_json(spec, r["raw"])
        if new_raw is not None:
            updates.append((r["_record_id"], r["ingest_date"], new_raw, None))
    if not updates:
        return TableChange(name, 0, None, None)
    erased_ids.extend((spec.source, u[0]) for u in updates)
    source = spark.createDataFrame(updates, _RECORD_SCHEMA)
    dates = sorted({u[1] for u in updates})
    pruning = "t.ingest_date IN (" + ", ".join(f"DATE'{d}'" for d in dates) + ")"
    target = DeltaTable.forPath(spark, path)
    before = current_version(spark, path)

    def merge() -> None:
        (
            target.alias("t")
            .merge(source.alias("s"), f"{pruning} AND t._record_id = s._record_id")
            .whenMatchedUpdate(set={"raw": "s.raw", "fields": "s.fields"})
            .execute()
        )

    with_conflict_retries(merge, what=f"erase personal data from {name}")
    return _changed(spark, name, path, before, "numTargetRowsUpdated")


def _record_erased_ids(
    spark: SparkSession, lh: Lakehouse, erased_ids: Sequence[tuple[str, str]], request_id: str
) -> None:
    """Append the erased bronze records' ids to `bronze._erased`, which bronze ingestion reads
    so that a copy of an erased record delivered again, however late, is a duplicate and not
    landed with its personal data (bronze's own look-up reaches back only
    `bronze.dedup_window_days`). Ids only: a hash of the record, never its content."""
    if not erased_ids:
        return
    now = utcnow()
    rows = [(source, rid, request_id, now) for source, rid in sorted(set(erased_ids))]
    path = erased_path(lh)
    ensure_table(spark, path, ERASED_SCHEMA, change_data_feed=False)
    with_conflict_retries(
        lambda: (
            spark.createDataFrame(rows, ERASED_SCHEMA)
            .write.format("delta")
            .mode("append")
            .save(path)
        ),
        what="record erased record ids",
    )


def _erase_quarantine(
    spark: SparkSession,
    lh: Lakehouse,
    personal: Mapping[str, TableSpec],
    subject: _Subject,
    landing_files: set[str],
) -> TableChange:
    """Rewrite quarantined records holding the subject's personal data: parseable ones lose
    their personal fields, unparseable texts that contain one of the subject's identifiers are
    replaced whole (a truncated line may hold part of a value)."""
    name = QUARANTINE_TABLE
    path = lh.path(name)
    if not is_delta_table(spark, path):
        return TableChange(name, 0, None, None)
    needles = _json_forms(subject.needles())
    by_source = {**{s.source: s for s in personal.values()}, **personal}
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(_contains_any("raw", needles) | _contains_any("reason", subject.strong))
        .select("layer", "source", "record_id", "file", "raw", "reason")
        .collect()
    )
    updates: list[tuple[Any, ...]] = []
    for r in rows:
        spec = by_source.get(r["source"])
        raw = r["raw"]
        new_raw = None
        try:
            json.loads(raw or "")
            parseable = True
        except ValueError:
            parseable = False
        if parseable:
            if spec is not None and belongs_to(spec, _images_of(spec, raw, None), subject):
                new_raw = redact_json(spec, raw)
                if r["file"]:
                    landing_files.add(r["file"])
        elif raw is not None and raw != ERASED_TEXT and _holds_subject_text(raw, spec, subject):
            new_raw = ERASED_TEXT
            if r["file"]:
                landing_files.add(r["file"])
        new_reason = scrub_text(r["reason"], _json_forms(subject.strong))
        if new_raw is None and new_reason is None:
            continue
        updates.append(
            (
                r["layer"],
                r["source"],
                r["record_id"],
                new_raw if new_raw is not None else raw,
                new_reason if new_reason is not None else r["reason"],
            )
        )
    if not updates:
        return TableChange(name, 0, None, None)
    source = spark.createDataFrame(updates, _QUARANTINE_KEY_SCHEMA)
    target = DeltaTable.forPath(spark, path)
    before = current_version(spark, path)
    keys = "t.layer = s.layer AND t.source = s.source AND t.record_id = s.record_id"

    def merge() -> None:
        (
            target.alias("t")
            .merge(source.alias("s"), keys)
            .whenMatchedUpdate(set={"raw": "s.raw", "reason": "s.reason"})
            .execute()
        )

    with_conflict_retries(merge, what=f"erase personal data from {name}")
    return _changed(spark, name, path, before, "numTargetRowsUpdated")


def _holds_subject_text(raw: str, spec: TableSpec | None, subject: _Subject) -> bool:
    """Whether an unparseable text may hold the subject's personal data: it contains one of
    their strong identifiers, or it is a record of a personal source naming them (an orders line
    naming the customer holds no personal data and is kept)."""
    if any(n in raw for n in _json_forms(subject.strong)):
        return True
    return spec is not None and any(n in raw for n in _json_forms(subject.needles()))


def _layer_tables(spark: SparkSession, lh: Lakehouse, layer: str) -> dict[str, str]:
    from lakehouse.state.catalog import table_locations

    return {n: p for n, p in table_locations(spark, lh).items() if n.startswith(f"{layer}.")}


def _erase_hashes(
    spark: SparkSession, lh: Lakehouse, layer: str, customer_id: str
) -> list[TableChange]:
    """In every table of `layer` holding a hashed identity column next to its subject column:
    required hashes become ERASED_HASH, optional ones null, for the customer's rows."""
    hashed: dict[str, HashedIdentity] = {
        c: h for c, h in hashed_identities(lh.tables).items() if h.subject is not None
    }
    changes = []
    for name, path in sorted(_layer_tables(spark, lh, layer).items()):
        columns = set(spark.read.format("delta").load(path).columns)
        present = [h for c, h in hashed.items() if c in columns and h.subject in columns]
        if not present:
            continue
        by_subject: dict[str, dict[str, Column]] = {}
        for h in present:
            assert h.subject is not None
            by_subject.setdefault(h.subject, {})[h.column] = (
                F.lit(ERASED_HASH) if h.required else F.lit(None).cast("string")
            )
        before = current_version(spark, path)
        for subject_col, assignments in by_subject.items():
            pending = reduce(
                lambda a, b: a | b,
                [~F.col(c).eqNullSafe(value) for c, value in assignments.items()],
            )
            condition = (F.col(subject_col) == F.lit(customer_id)) & pending
            target = DeltaTable.forPath(spark, path)
            if target.toDF().where(condition).limit(1).count() == 0:
                continue
            with_conflict_retries(
                lambda t=target, c=condition, a=assignments: t.update(c, a),  # type: ignore[misc]
                what=f"erase hashed identity from {name}",
            )
        changes.append(_changed(spark, name, path, before, "numUpdatedRows", all_since=True))
    return changes


def _erase_quality_examples(spark: SparkSession, lh: Lakehouse, customer_id: str) -> TableChange:
    """Drop the failing-row examples (JSON rows of silver or gold) that name the customer."""
    name = QUALITY_RESULTS_TABLE
    path = lh.path(name)
    if not is_delta_table(spark, path):
        return TableChange(name, 0, None, None)
    df = spark.read.format("delta").load(path)
    if "examples" not in df.columns:
        return TableChange(name, 0, None, None)
    subjects = sorted({s.pii.subject for s in lh.tables.values() if s.pii.subject})
    patterns = [f"{json.dumps(c)}:{json.dumps(customer_id)}" for c in subjects]

    def names_customer(e: Column) -> Column:
        return reduce(lambda a, b: a | b, [F.instr(e, p) > 0 for p in patterns])

    condition = F.exists("examples", names_customer)
    if df.where(condition).limit(1).count() == 0:
        return TableChange(name, 0, None, None)
    before = current_version(spark, path)
    target = DeltaTable.forPath(spark, path)
    with_conflict_retries(
        lambda: target.update(
            condition, {"examples": F.filter("examples", lambda e: ~names_customer(e))}
        ),
        what=f"erase examples from {name}",
    )
    return _changed(spark, name, path, before, "numUpdatedRows")


def _changed(
    spark: SparkSession,
    name: str,
    path: str,
    before: int,
    metric: str,
    all_since: bool = False,
) -> TableChange:
    """Rows changed by the commits after `before` (read from their metrics); purges deletion
    vectors, which would keep the old rows in place, where a table has them enabled."""
    after = current_version(spark, path)
    if after == before:
        return TableChange(name, 0, before, before)
    commits = DeltaTable.forPath(spark, path).history().where(F.col("version") > before)
    rows = commits.select("operationMetrics").collect() if all_since else commits.limit(1).collect()
    changed = sum(int((r["operationMetrics"] or {}).get(metric, 0)) for r in rows)
    properties = DeltaTable.forPath(spark, path).detail().first()
    if (
        properties
        and (properties["properties"] or {}).get("delta.enableDeletionVectors", "false").lower()
        == "true"
    ):
        spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
        after = current_version(spark, path)
    return TableChange(name, changed, before, after)


def _record(spark: SparkSession, lh: Lakehouse, result: ErasureResult) -> None:
    path = lh.path(AUDIT_TABLE)
    ensure_table(spark, path, AUDIT_SCHEMA, change_data_feed=False)
    row = (
        result.request_id,
        result.customer_id,
        result.status,
        result.reason,
        result.requested_at,
        result.finished_at,
        result.unrecoverable_after,
        [(c.table, c.rows_changed, c.version_before, c.version_after) for c in result.tables],
        list(result.landing_files),
    )
    df = spark.createDataFrame([row], AUDIT_SCHEMA)
    with_conflict_retries(
        lambda: df.write.format("delta").mode("append").save(path), what="record the erasure"
    )


__all__ = [
    "AUDIT_SCHEMA",
    "AUDIT_TABLE",
    "ERASED_HASH",
    "ERASED_TEXT",
    "ErasureError",
    "ErasureResult",
    "TableChange",
    "erase",
    "read_audit",
    "recoverable_erasures",
]
