"""Bronze ingestion: every landed record as delivered, with where and when it came from.

One Delta table per source at `<lakehouse_root>/bronze/<source>`, partitioned by `ingest_date`,
Change Data Feed on (silver reads its increments). Columns:

    _record_id  SHA-256 of the record's canonical content (see `lakehouse.bronze.landing`)
    _source, _file (path relative to the landing root), _line (1-based line in the file)
    ingest_date (from the landing path), raw (the record's text), fields (CSV: header -> value,
    extra columns included; null for JSON sources), _ingested_at, _run_id

Idempotency, in two layers: a file already ingested (by its relative path, recorded in
`bronze/_files`) is skipped without being read; a record bronze already holds (a re-delivered file,
a repeated event, a retry after a crash between the two commits) is not inserted again, because the
write is an insert-only MERGE on `_record_id`.

The record layer is bounded so that a day costs the same at any age of the lakehouse: a record
is compared with the records of the `ingest_date` partitions within `bronze.dedup_window_days` of
its own (literal partition predicates, so Delta reads only those partitions) and with the ids of
erased records (`bronze/_erased`, written by erasure, so an erased record delivered again never
brings personal data back). A copy delivered later than the window is landed again; silver keeps
one row per key and version and counts it as a duplicate, so the ledger still balances and no
silver row is added (docs/DESIGN.md, "Bronze at any age").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import reduce
from urllib.parse import unquote

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.bronze.landing import (
    SUMMARY_HEAD_BYTES,
    LandedRecord,
    file_summary,
    misplaced_reason,
    parse_landed_file,
    parse_landed_lines,
    parse_landed_path,
)
from lakehouse.core import progress
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.core.delta_io import (
    current_version,
    ensure_table,
    is_delta_table,
    rows_inserted_since,
    stats_columns_property,
    with_conflict_retries,
)
from lakehouse.core.errors import UserError
from lakehouse.core.pii import RECORD_COLUMNS
from lakehouse.core.spark import BATCH_STORAGE, session_conf
from lakehouse.core.specs import LandingSpec
from lakehouse.state.ledger import (
    LEDGER_TABLE,
    STREAM_RUN_PREFIX,
    LedgerEntry,
    LedgerImbalanceError,
    read_ledger,
    utcnow,
)
from lakehouse.state.quarantine import read_quarantine, write_quarantine

# The pieces Spark reads a plain landed file in (Spark's `maxPartitionBytes` for that read).
LANDED_SPLIT_BYTES = 16 * 1024 * 1024

PARSED_SCHEMA = StructType(
    [
        StructField("_source", StringType(), False),
        StructField("_file", StringType(), False),
        StructField("_line", LongType(), False),
        StructField("ingest_date", StringType(), True),
        StructField("raw", StringType(), True),
        StructField("fields", MapType(StringType(), StringType()), True),
        StructField("_record_id", StringType(), False),
        StructField("reason", StringType(), True),
    ]
)

BRONZE_SCHEMA = StructType(
    [
        StructField("_record_id", StringType(), False),
        StructField("_source", StringType(), False),
        StructField("_file", StringType(), False),
        StructField("_line", LongType(), False),
        StructField("ingest_date", DateType(), False),
        StructField("raw", StringType(), False),
        StructField("fields", MapType(StringType(), StringType()), True),
        StructField("_ingested_at", TimestampType(), False),
        StructField("_run_id", StringType(), False),
    ]
)

# Per-file statistics of the record text would copy prefixes of raw records (emails, names) into
# the transaction log, where VACUUM never reaches: Delta keeps none for `raw` and `fields`.
BRONZE_PROPERTIES = stats_columns_property(
    BRONZE_SCHEMA, RECORD_COLUMNS["bronze"], ("ingest_date",)
)

FILES_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("file", StringType(), False),
        StructField("ingest_date", DateType(), True),
        StructField("size_bytes", LongType(), False),
        StructField("run_id", StringType(), False),
        StructField("ingested_at", TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class LandedFile:
    path: str
    source: str
    relative: str
    ingest_date: str | None
    size: int


FILES_TABLE = "bronze._files"

# The ids of erased records, whatever their age (see `lakehouse.ops.erasure`).
ERASED_TABLE = "bronze._erased"
ERASED_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("record_id", StringType(), False),
        StructField("request_id", StringType(), False),
        StructField("erased_at", TimestampType(), False),
    ]
)


def bronze_path(lh: Lakehouse, source: str) -> str:
    """Location of `bronze.<source>`."""
    return lh.path(f"bronze.{source}")


def files_path(lh: Lakehouse) -> str:
    """Location of the ingested-files ledger (`bronze._files`)."""
    return lh.path(FILES_TABLE)


def erased_path(lh: Lakehouse) -> str:
    """Location of the erased records' ids (`bronze._erased`)."""
    return lh.path(ERASED_TABLE)


def dedup_window(ingest_dates: Iterable[str], days: int, column: str = "ingest_date") -> str:
    """The SQL predicate on `column` (literals, so Delta prunes partitions) that bounds the
    records a batch of these ingest dates is compared with: from `days` before the first to
    `days` after the last (a daily run reads 2 * days + 1 partitions; a backfill of a range, the
    range widened so)."""
    dates = sorted(date.fromisoformat(d) for d in ingest_dates)
    low, high = dates[0] - timedelta(days=days), dates[-1] + timedelta(days=days)
    return f"{column} >= DATE'{low.isoformat()}' AND {column} <= DATE'{high.isoformat()}'"


def list_landing_files(spark: SparkSession, landing_root: str) -> list[LandedFile]:
    """Every file under the landing root (local folder or object store, through Hadoop's file
    system API), hidden files (`.`/`_` prefixed) left out."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    root = jvm.org.apache.hadoop.fs.Path(landing_root)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(root):
        return []
    found: list[LandedFile] = []
    entries = fs.listFiles(root, True)
    while entries.hasNext():
        status = entries.next()
        path = status.getPath().toString()
        name = path.rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            continue
        parts = parse_landed_path(path)
        if parts is None:
            relative = path.split(landing_root.rstrip("/").split("://")[-1], 1)[-1].lstrip("/")
            source = relative.split("/", 1)[0]
            found.append(LandedFile(path, source, relative, None, int(status.getLen())))
        else:
            found.append(
                LandedFile(
                    path, parts.source, parts.relative, parts.ingest_date, int(status.getLen())
                )
            )
    return sorted(found, key=lambda f: f.relative)


def _parsed_row(landed: LandedFile, rec: LandedRecord) -> tuple[object, ...]:
    return (
        landed.source,
        landed.relative,
        rec.line,
        landed.ingest_date,
        rec.raw,
        rec.fields,
        rec.record_id,
        rec.reason,
    )


def _misplaced_row(landed: LandedFile, digest: Row) -> tuple[object, ...]:
    """The one bad record of a file that is not under `<source>/ingest_date=YYYY-MM-DD/`: its
    `raw` is the file's summary (size, SHA-256, first bytes), its reason says what is wrong with
    its path."""
    summary = file_summary(
        landed.relative, int(digest["length"]), digest["sha256"], bytes(digest["head"])
    )
    return (
        landed.source,
        landed.relative,
        0,
        None,
        summary,
        None,
        f"bad-path:{landed.relative}",
        misplaced_reason(landed.relative),
    )


def _misplaced_rows(
    spark: SparkSession, files: list[LandedFile], by_path: dict[str, LandedFile]
) -> list[tuple[object, ...]]:
    """The bad records of files outside the landing layout, their digests computed by Spark
    (one file per row, never parsed)."""
    if not files:
        return []
    digests = (
        spark.read.format("binaryFile")
        .load(_patterns(files))
        .select(
            "path",
            "length",
            F.sha2(F.col("content"), 256).alias("sha256"),
            F.substring(F.col("content"), 1, SUMMARY_HEAD_BYTES).alias("head"),
        )
        .collect()
    )
    return [_misplaced_row(_find(by_path, r["path"]), r) for r in digests]


def _file_lookup(files: list[LandedFile]) -> dict[str, LandedFile]:
    """Landed files by every form of their path Spark may report (Hadoop lists `file:/x`, Spark
    may say `file:///x`); `_find` decodes the percent-encoding of `input_file_name()` first."""
    by_path: dict[str, LandedFile] = {}
    for f in files:
        for p in (
            f.path,
            f.path.replace("file:///", "file:/"),
            f.path.replace("file:/", "file:///", 1),
        ):
            by_path[p] = f
    return by_path


def _find(by_path: dict[str, LandedFile], path: str) -> LandedFile:
    # Decoded first: `input_file_name()` reports `a b.csv` as `a%20b.csv`, which may be the
    # name of another landed file.
    found = by_path.get(unquote(path)) or by_path.get(path)
    if found is None:
        raise KeyError(f"Spark read {path}, which is not among the landed files listed")
    return found


def _parse_lines(
    rows: Iterable[Row], sources: dict[str, LandingSpec], files: dict[str, LandedFile]
) -> Iterator[tuple[object, ...]]:
    """Records from the physical lines of files, the rows sorted by file and position."""
    for path, group in itertools.groupby(rows, key=lambda r: r["path"]):
        landed = _find(files, path)
        assert landed.ingest_date is not None
        lines = (bytes(r["line"]) + b"\n" for r in group)
        for rec in parse_landed_lines(
            landed.source, sources[landed.source], landed.ingest_date, lines
        ):
            yield _parsed_row(landed, rec)


def _parse_whole(
    rows: Iterable[Row], sources: dict[str, LandingSpec], files: dict[str, LandedFile]
) -> Iterator[tuple[object, ...]]:
    """Records from whole files (a row holds a file's bytes)."""
    for row in rows:
        landed = _find(files, row["path"])
        assert landed.ingest_date is not None
        spec = sources[landed.source]
        for rec in parse_landed_file(
            landed.source, spec, landed.relative, landed.ingest_date, bytes(row["content"])
        ):
            yield _parsed_row(landed, rec)


# Suffixes Hadoop's text reader would decompress by itself (failing the job on a corrupt file):
# such files are read whole as bytes. Only `.gz` is compressed in the landing contract; the others
# are parsed as the bytes they are, as before the text reader.
HADOOP_CODEC_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".lz4", ".snappy", ".br")


def _packed(f: LandedFile) -> bool:
    return f.relative.lower().endswith(HADOOP_CODEC_SUFFIXES)


def _patterns(files: list[LandedFile]) -> list[str]:
    """Paths are glob patterns to Spark: escape the characters globbing would interpret."""
    return [re.sub(r"([\\\[\]{}*?])", r"\\\1", f.path) for f in files]


def parse_files(
    spark: SparkSession, files: list[LandedFile], sources: dict[str, LandingSpec]
) -> DataFrame:
    """The records of `files` (columns of PARSED_SCHEMA; `reason` set for bad input).

    A plain file is read in pieces by Spark's text reader (splits of `LANDED_SPLIT_BYTES`, split
    on \n only, each line's bytes as they are), so no task and no record ever holds a whole
    file; the lines are then brought together by file, in order (a sort, which spills to disk),
    and parsed one at a time, so a CSV record whose quoted field spans lines, or a split, stays
    one record and every line keeps its number. A `.gz` file cannot be split: it is read as one
    record of its compressed bytes (a corrupt one becomes one bad record, which Spark's own
    decompression would fail the job on) and decompressed as a stream. A file outside the
    landing layout is not read at all."""
    by_path = _file_lookup(files)
    plain = [f for f in files if f.ingest_date is not None and not _packed(f)]
    packed = [f for f in files if f.ingest_date is not None and _packed(f)]
    misplaced = [f for f in files if f.ingest_date is None]
    frames = [spark.createDataFrame(_misplaced_rows(spark, misplaced, by_path), PARSED_SCHEMA)]
    with session_conf(spark, {"spark.sql.files.maxPartitionBytes": str(LANDED_SPLIT_BYTES)}):
        if plain:
            lines = (
                spark.read.format("text")
                .option("lineSep", "\n")
                .load(_patterns(plain))
                .select(
                    F.input_file_name().alias("path"),
                    F.input_file_block_start().alias("block"),
                    F.monotonically_increasing_id().alias("position"),
                    F.col("value").cast("binary").alias("line"),
                )
            )
            pieces = min(len(plain), spark.sparkContext.defaultParallelism * 2)
            ordered = lines.repartition(pieces, "path").sortWithinPartitions(
                "path", "block", "position"
            )
            frames.append(
                spark.createDataFrame(
                    ordered.rdd.mapPartitions(lambda rows: _parse_lines(rows, sources, by_path)),
                    PARSED_SCHEMA,
                )
            )
        if packed:
            whole = (
                spark.read.format("binaryFile").load(_patterns(packed)).select("path", "content")
            )
            frames.append(
                spark.createDataFrame(
                    whole.rdd.mapPartitions(lambda rows: _parse_whole(rows, sources, by_path)),
                    PARSED_SCHEMA,
                )
            )
    return reduce(DataFrame.unionByName, frames)


def catch_up_dates(spark: SparkSession, lh: Lakehouse, day: str) -> list[str]:
    """The ingest dates a daily run of `day` ingests, in order: every earlier ingest date with a
    landed file bronze has not ingested (a night whose run failed or never started), then `day`.
    More than `bronze.catch_up_max_days` earlier dates stop the run with a `UserError` naming
    them: a gap that long is a backfill (`lakehouse backfill`, `lakehouse emr backfill`)."""
    landed = list_landing_files(spark, lh.config.storage.landing_root)
    path = files_path(lh)
    done: set[str] = set()
    if DeltaTable.isDeltaTable(spark, path):
        done = {r["file"] for r in spark.read.format("delta").load(path).select("file").collect()}
    missed = sorted(
        {
            f.ingest_date
            for f in landed
            if f.ingest_date and f.ingest_date < day and f.relative not in done
        }
    )
    limit = lh.config.bronze.catch_up_max_days
    if len(missed) > limit:
        raise UserError(
            f"{len(missed)} earlier ingest dates have landed files not ingested yet "
            f"({missed[0]} .. {missed[-1]}), more than bronze.catch_up_max_days = {limit}: "
            f"backfill them first (lakehouse backfill --from {missed[0]} --to {missed[-1]}, or "
            "lakehouse emr backfill), or raise the limit"
        )
    return [*missed, day]


def ingest(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    ingest_dates: set[str] | None = None,
    reprocess: bool = False,
    record_counts: Callable[[list[LedgerEntry]], None] | None = None,
) -> list[LedgerEntry]:
    """Ingest every landing file not ingested yet into bronze (only those of `ingest_dates` when
    given); one ledger entry per source. With `reprocess` (a backfill) files already ingested are
    read again: only records bronze does not hold are inserted, so unchanged files change nothing.

    `record_counts` (the pipeline's ledger write) gets the balanced entries before the files are
    marked ingested, so a run stopped in between has counted its records: the next run reads
    the files again and counts their records as duplicates, instead of skipping files whose
    records no ledger row counts.

    Raises `LedgerImbalanceError` if any record read has no outcome."""
    sources = lh.sources
    landing_root = lh.config.storage.landing_root
    started = utcnow()
    landed = list_landing_files(spark, landing_root)
    if ingest_dates is not None:
        landed = [f for f in landed if f.ingest_date in ingest_dates]
    unknown = sorted({f.source for f in landed if f.source not in sources})
    if unknown:
        raise ValueError(
            f"landing root {landing_root} holds folders for unknown sources: "
            f"{', '.join(unknown)} (known: {', '.join(sources)})"
        )
    files_table = ensure_table(spark, files_path(lh), FILES_SCHEMA, change_data_feed=False)
    done = {r["file"] for r in files_table.toDF().select("file").collect()}
    new = [f for f in landed if reprocess or f.relative not in done]
    skipped = {
        s: sum(1 for f in landed if f.source == s and f.relative in done and not reprocess)
        for s in sources
    }
    entries = {s: bronze_entry(run_id, s, started, files_skipped=skipped[s]) for s in sources}
    for s in sources:
        ensure_table(
            spark,
            bronze_path(lh, s),
            BRONZE_SCHEMA,
            partition_by=("ingest_date",),
            properties=BRONZE_PROPERTIES,
        )
    if new:
        # On disk, not in memory (`BATCH_STORAGE`): the cache is filled while the same tasks
        # pickle records to and from the Python parser.
        parsed = parse_files(spark, new, sources).persist(BATCH_STORAGE)
        try:
            dates = {
                s: {f.ingest_date for f in new if f.source == s and f.ingest_date} for s in sources
            }
            for s, entry in entries.items():
                entry.files_read = sum(1 for f in new if f.source == s)
            write_batch(spark, lh, run_id, parsed, dates, entries)
        finally:
            parsed.unpersist()
    finished = utcnow()
    for entry in entries.values():
        entry.finished_at = finished
        entry.check_balance()
    counted = list(entries.values())
    crash_point("bronze.written")
    if record_counts is not None:
        record_counts(counted)
    crash_point("bronze.counted")
    _mark_ingested(spark, lh, run_id, [f for f in new if f.relative not in done])
    return counted


def bronze_entry(
    run_id: str, source: str, started: datetime, files_skipped: int = 0
) -> LedgerEntry:
    """A source's bronze ledger entry before its batch is written: every count at 0."""
    return LedgerEntry(
        run_id=run_id,
        layer="bronze",
        table_name=source,
        records_read=0,
        files_read=0,
        files_skipped=files_skipped,
        records_written=0,
        duplicates=0,
        quarantined=0,
        started_at=started,
    )


def write_batch(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    parsed: DataFrame,
    dates: dict[str, set[str]] | None,
    entries: dict[str, LedgerEntry],
    stream_run: bool = False,
) -> None:
    """Insert the new records of `parsed` (PARSED_SCHEMA: landed files' records, or a stream's
    micro-batch) and quarantine their bad ones, counting them in `entries`; `dates` holds each
    source's ingest dates in the batch (the dedup window is taken around them; None: the
    records' own, found with the counts). A table with nothing new gets no commit.

    Records an earlier attempt wrote without counting them (stopped before its ledger rows) are
    counted as written by the one writer that will replay that attempt: a stream micro-batch
    (`stream_run`, `run_id` its batch's) claims those of its own run id alone, which only its
    replay carries (the checkpoint replays it, however late); a daily run claims those of any
    run but a stream's. Neither counts the other's, so no record is counted written twice."""
    now = utcnow()
    # Read once, and only when a batch holds records bronze has already (`_orphaned`).
    counted_runs: set[str] | None = None
    erased = (
        spark.read.format("delta").load(erased_path(lh))
        if is_delta_table(spark, erased_path(lh))
        else None
    )
    counts = {
        r["_source"]: r
        for r in parsed.groupBy("_source")
        .agg(
            F.count(F.lit(1)).alias("read"),
            F.sum(F.col("reason").isNotNull().cast("long")).alias("bad"),
            F.countDistinct(F.when(F.col("reason").isNull(), F.col("_record_id"))).alias(
                "distinct_good"
            ),
            F.countDistinct(F.when(F.col("reason").isNotNull(), F.col("_record_id"))).alias(
                "distinct_bad"
            ),
            F.collect_set("ingest_date").alias("dates"),
        )
        .collect()
    }
    if dates is None:
        dates = {source: set(c["dates"]) for source, c in counts.items()}
    # One MERGE quarantines the bad records of every source (a MERGE per source cost a look-up,
    # version reads and a commit each: a quarter of a small day's bronze time).
    quarantined_by_source = (
        write_quarantine(
            spark,
            lh,
            _as_quarantine(_first_copy(parsed.where(F.col("reason").isNotNull())), run_id, now),
        )
        if any(c["bad"] for c in counts.values())
        else {}
    )
    orphaned_bad: dict[str, int] = {}
    if any(quarantined_by_source.get(s, 0) < int(c["distinct_bad"]) for s, c in counts.items()):
        # Bad records quarantined already: by a run that has no bronze ledger row (stopped
        # before it), they are this run's to count, as `_orphaned` does for written records.
        counted_runs = set() if stream_run else _runs_with_bronze_rows(spark, lh)
        claimable = _claimable(counted_runs, run_id if stream_run else None)
        orphaned_bad = _orphaned_quarantine(spark, lh, parsed, claimable("run_id"))
    for source, entry in entries.items():
        if source not in counts:
            continue
        clock = progress.Clock()
        c = counts[source]
        path = bronze_path(lh, source)
        rows = parsed.where(F.col("_source") == source)
        good = _first_copy(rows.where(F.col("reason").isNull()))
        existing, inserted, orphaned = 0, 0, 0
        if int(c["distinct_good"]):
            days = lh.config.bronze.dedup_window_days
            before = current_version(spark, path)
            # Bronze as it was before this batch's MERGE: the records it inserts are no orphans.
            landed = (
                spark.read.format("delta")
                .option("versionAsOf", before)
                .load(path)
                .where(dedup_window(dates[source], days))
                .select("_record_id", "_run_id")
            )
            held = landed.select("_record_id")
            fresh = good
            if erased is not None:
                gone = erased.where(F.col("source") == source).select(
                    F.col("record_id").alias("_record_id")
                )
                held = held.unionByName(gone)
                fresh = good.join(gone, "_record_id", "left_anti")
            window = dedup_window(dates[source], days, column="t.ingest_date")
            distinct = int(c["distinct_good"])
            if stream_run:
                # A micro-batch commits under a transaction id, with which even a MERGE that
                # inserts nothing writes a version: count what bronze holds first, MERGE only
                # when something is new.
                existing = good.join(held, "_record_id", "left_semi").count()
                if distinct > existing:
                    inserted = _insert_new(spark, path, fresh, run_id, now, window, before)
            else:
                # No count of the batch's keys in bronze first: the insert-only MERGE says how
                # many it inserted (its commit's metrics; no commit when nothing is new), and
                # every other distinct good record is one bronze holds or erasure forbids.
                inserted = _insert_new(spark, path, fresh, run_id, now, window, before)
                existing = distinct - inserted
            if not 0 <= existing <= distinct or inserted != distinct - existing:
                raise LedgerImbalanceError(
                    f"run {run_id}, bronze.{source}: {distinct - existing} new records expected "
                    f"of {distinct}, Delta reports {inserted} inserted; the files are not marked "
                    "ingested"
                )
            if existing:
                if counted_runs is None:
                    counted_runs = set() if stream_run else _runs_with_bronze_rows(spark, lh)
                claimable = _claimable(counted_runs, run_id if stream_run else None)
                orphaned = _orphaned(good, landed, claimable("_run_id"))
        quarantined = quarantined_by_source.get(source, 0) + orphaned_bad.get(source, 0)
        entry.records_read = int(c["read"])
        entry.records_written = inserted + orphaned
        entry.quarantined = quarantined
        good_total = int(c["read"]) - int(c["bad"])
        entry.duplicates = (
            (good_total - int(c["distinct_good"]))
            + (existing - orphaned)
            + (int(c["bad"]) - quarantined)
        )
        progress.table(
            f"bronze.{source}",
            clock,
            "  bronze.%s: %d files, %d records read, %d written, %d duplicates, %d quarantined",
            source,
            entry.files_read,
            entry.records_read,
            inserted,
            entry.duplicates,
            quarantined,
            rows_in=entry.records_read,
            rows_written=inserted + quarantined,
        )


def _mark_ingested(
    spark: SparkSession, lh: Lakehouse, run_id: str, files: list[LandedFile]
) -> None:
    """Record `files` in `bronze/_files` (one commit; none when there are none)."""
    if not files:
        return
    now = utcnow()
    files_df = spark.createDataFrame(
        [
            (
                f.source,
                f.relative,
                date.fromisoformat(f.ingest_date) if f.ingest_date else None,
                f.size,
                run_id,
                now,
            )
            for f in files
        ],
        FILES_SCHEMA,
    )
    with_conflict_retries(
        lambda: files_df.write.format("delta").mode("append").save(files_path(lh)),
        what="record ingested files",
    )


def _runs_with_bronze_rows(spark: SparkSession, lh: Lakehouse) -> set[str]:
    """The runs the ledger has bronze rows of."""
    if not is_delta_table(spark, lh.path(LEDGER_TABLE)):
        return set()
    ledger = read_ledger(spark, lh).where(F.col("layer") == "bronze")
    return {r["run_id"] for r in ledger.select("run_id").distinct().collect()}


def _claimable(counted_runs: set[str], stream_run: str | None) -> Callable[[str], Column]:
    """The predicate, on a run id column, of the uncounted records this writer claims (see
    `write_batch`): a stream micro-batch's own run id; for a daily run, any run with no bronze
    ledger row that is not a stream's."""

    def on(column: str) -> Column:
        run = F.col(column)
        if stream_run is not None:
            return run == F.lit(stream_run)
        mine = ~run.startswith(STREAM_RUN_PREFIX)
        return mine & ~run.isin(sorted(counted_runs)) if counted_runs else mine

    return on


def _orphaned(good: DataFrame, landed: DataFrame, claimable: Column) -> int:
    """How many of the batch's records bronze holds from a run that wrote no bronze ledger row
    (`claimable`, on `_run_id`): a run stopped between its bronze commit and its ledger rows.
    This run counts them as written (not as duplicates), so every bronze record is counted
    written exactly once."""
    uncounted = landed.where(claimable)
    return good.join(uncounted.select("_record_id"), "_record_id", "left_semi").count()


def _orphaned_quarantine(
    spark: SparkSession, lh: Lakehouse, parsed: DataFrame, claimable: Column
) -> dict[str, int]:
    """Per source, how many of the batch's bad records the quarantine holds from a run that
    wrote no bronze ledger row (`claimable`, on `run_id`: stopped between its bronze commits
    and its ledger rows)."""
    held = (
        read_quarantine(spark, lh)
        .where(F.col("layer") == "bronze")
        .where(claimable)
        .select(F.col("source").alias("_source"), F.col("record_id").alias("_record_id"))
    )
    bad = parsed.where(F.col("reason").isNotNull()).select("_source", "_record_id").distinct()
    rows = bad.join(held, ["_source", "_record_id"], "left_semi").groupBy("_source").count()
    return {r["_source"]: int(r["count"]) for r in rows.collect()}


def _first_copy(rows: DataFrame) -> DataFrame:
    """One row per source and `_record_id`: the first delivered (by file, then line)."""
    w = Window.partitionBy("_source", "_record_id").orderBy("_file", "_line")
    return rows.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n")


def _insert_new(
    spark: SparkSession,
    path: str,
    good: DataFrame,
    run_id: str,
    now: object,
    window: str,
    before: int,
) -> int:
    """Insert the records of `good` that the target's partitions in `window` (a predicate on
    `t.ingest_date`) do not hold; returns how many were inserted (the table was at version
    `before` when the batch was read)."""
    batch = good.select(
        "_record_id",
        "_source",
        "_file",
        "_line",
        F.to_date("ingest_date").alias("ingest_date"),
        "raw",
        "fields",
        F.lit(now).cast("timestamp").alias("_ingested_at"),
        F.lit(run_id).alias("_run_id"),
    )
    target = DeltaTable.forPath(spark, path)

    def merge() -> None:
        (
            target.alias("t")
            .merge(batch.alias("s"), f"{window} AND t._record_id = s._record_id")
            .whenNotMatchedInsertAll()
            .execute()
        )

    with_conflict_retries(merge, what=f"insert into {path}")
    return rows_inserted_since(spark, path, before)


def _as_quarantine(bad: DataFrame, run_id: str, now: object) -> DataFrame:
    return bad.select(
        F.lit("bronze").alias("layer"),
        F.col("_source").alias("source"),
        F.col("_record_id").alias("record_id"),
        F.col("_file").alias("file"),
        F.col("_line").alias("line"),
        F.to_date("ingest_date").alias("ingest_date"),
        "raw",
        F.lit(None).cast("string").alias("column_name"),
        "reason",
        F.lit(run_id).alias("run_id"),
        F.lit(now).cast("timestamp").alias("quarantined_at"),
    )
