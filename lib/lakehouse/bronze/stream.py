"""Streaming ingestion: a source's events from Kafka (Amazon MSK) or Kinesis into the same bronze
table its daily files feed, as they arrive (docs/STREAMING.md).

A Structured Streaming query reads the topic (or stream) and hands each micro-batch to
`write_micro_batch`, which does what a daily run does to a landed file's records, with the same
code (`ingestion.write_batch`):

- each message is one record, parsed and checked as a JSON-lines file's line is
  (`landing.parse_message`): the same reasons for bad input, and the same identity (`_record_id`,
  the SHA-256 of the canonical JSON), so an event that arrives by stream and by file is one
  bronze record whichever came first;
- where it came from: `_file` names the stream and its partition (`kafka://<topic>/<partition>`,
  `kinesis://<stream>/<sequence number>`), `_line` the message's offset (Kafka; 1 for
  Kinesis, whose sequence numbers do not fit a long), `ingest_date` the UTC date of the
  message's timestamp (Kafka's record timestamp: the producer's send time unless the topic
  uses LogAppendTime; Kinesis's approximate arrival time);
- exactly once: the checkpoint (under `<lakehouse_root>/_checkpoints/stream/<name>`) says which
  offsets each micro-batch holds, and every commit of a micro-batch (bronze, quarantine, ledger)
  carries Delta's idempotent transaction identifiers (app id `stream.<name>.<query id>`, version
  the batch id), so a query restarted after a crash replays the unfinished batch and Delta skips
  the commits that had happened (a replay whose ledger row is there is skipped whole); bronze's
  insert-only MERGE on `_record_id` keeps the rows unique besides, and the replay counts the
  records its crashed attempt wrote as written, not duplicates (a daily run never claims them);
- the stream's ledger: one bronze row per micro-batch (run id `stream-<name>-<query>-<batch>`),
  records read = written + duplicates + quarantined, checked before it is written.

Silver and gold stay the daily pipeline's; with `stream.follow_silver` each micro-batch also
applies the source's new bronze records to silver when the lakehouse's lock is free (a daily
run holding it does the same work itself).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.bronze.ingestion import (
    BRONZE_PROPERTIES,
    BRONZE_SCHEMA,
    PARSED_SCHEMA,
    bronze_entry,
    bronze_path,
    write_batch,
)
from lakehouse.bronze.landing import parse_message
from lakehouse.core import progress
from lakehouse.core.config import StreamConfig, group_id_prefix, join_uri
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.core.delta_io import commit_metadata, ensure_table
from lakehouse.core.errors import UserError
from lakehouse.core.spark import BATCH_STORAGE
from lakehouse.silver.merge import Txn, delta_txn
from lakehouse.state import ledger as ledger_mod
from lakehouse.state.ledger import STREAM_RUN_PREFIX, LedgerEntry, utcnow

# The columns every source's messages are brought to before parsing.
MESSAGE_COLUMNS = ("_file", "_line", "ingest_date", "payload")


def checkpoint_path(lh: Lakehouse, name: str) -> str:
    """Where the query `name` keeps its offsets and commits."""
    return join_uri(lh.root, "_checkpoints", "stream", name)


def stream_run_id(name: str, query_id: str, batch_id: int) -> str:
    return f"{STREAM_RUN_PREFIX}{name}-{query_id[:8]}-{batch_id:09d}"


def kafka_messages(raw: DataFrame) -> DataFrame:
    """Spark's Kafka records (topic, partition, offset, timestamp, value) as messages."""
    return raw.select(
        F.concat(F.lit("kafka://"), F.col("topic"), F.lit("/"), F.col("partition")).alias("_file"),
        F.col("offset").cast("long").alias("_line"),
        F.date_format(F.col("timestamp"), "yyyy-MM-dd").alias("ingest_date"),
        F.col("value").alias("payload"),
    )


def kinesis_messages(raw: DataFrame) -> DataFrame:
    """The EMR Kinesis connector's records (streamName, partitionKey, sequenceNumber,
    approximateArrivalTimestamp, data) as messages: a sequence number (up to 128 bits) is named
    in `_file`, `_line` is 1."""
    return raw.select(
        F.concat(
            F.lit("kinesis://"), F.col("streamName"), F.lit("/"), F.col("sequenceNumber")
        ).alias("_file"),
        F.lit(1).cast("long").alias("_line"),
        F.date_format(F.col("approximateArrivalTimestamp"), "yyyy-MM-dd").alias("ingest_date"),
        F.col("data").alias("payload"),
    )


def _parse_rows(rows: Iterable[Row], source: str) -> Iterator[tuple[object, ...]]:
    for row in rows:
        rec = parse_message(source, row["payload"])
        yield (
            source,
            row["_file"],
            row["_line"],
            row["ingest_date"],
            rec.raw,
            rec.fields,
            rec.record_id,
            rec.reason,
        )


def parse_messages(spark: SparkSession, messages: DataFrame, source: str) -> DataFrame:
    """The records of `messages` (MESSAGE_COLUMNS) in PARSED_SCHEMA, one per message, `reason`
    set for bad input."""
    return spark.createDataFrame(
        messages.select(*MESSAGE_COLUMNS).rdd.mapPartitions(lambda rows: _parse_rows(rows, source)),
        PARSED_SCHEMA,
    )


def write_micro_batch(
    lh: Lakehouse,
    config: StreamConfig,
    query_id: str,
    batch: DataFrame,
    batch_id: int,
    *,
    maybe_done: bool = False,
) -> list[LedgerEntry]:
    """One micro-batch of messages (MESSAGE_COLUMNS) into bronze, its bad records quarantined,
    its ledger row written; every commit idempotent under (`stream.<name>.<query>`, batch id)
    and marked with the batch's run id (`userMetadata`, as a run's commits are). With
    `follow_silver`, silver then takes the new records (when the lock is free). The ledger rows
    written: none when the batch was empty or, with `maybe_done` (a restarted query's first
    batch, the only one that can be a replay), when its ledger row is there already."""
    spark = batch.sparkSession
    source = config.source
    run_id = stream_run_id(config.name, query_id, batch_id)
    if maybe_done and _counted(spark, lh, run_id):
        progress.report(f"  stream {config.name}: batch {batch_id} was written before; skipped")
        return []
    _yield_to_runs(lh, config.name)
    started = utcnow()
    parsed = parse_messages(spark, batch, source).persist(BATCH_STORAGE)
    entry = bronze_entry(run_id, source, started)
    try:
        with (
            commit_metadata(spark, run_id),
            delta_txn(spark, Txn(f"stream.{config.name}.{query_id}", batch_id)),
        ):
            write_batch(spark, lh, run_id, parsed, None, {source: entry}, stream_run=True)
            if not entry.records_read:
                return []  # an empty trigger: nothing written, no ledger row
            entry.finished_at = utcnow()
            entry.check_balance()
            crash_point("stream.written")
            ledger_mod.record(spark, lh, [entry])
    finally:
        parsed.unpersist()
    crash_point("stream.counted")
    entries = [entry]
    if config.follow_silver:
        with commit_metadata(spark, run_id):
            entries += _follow_silver(spark, lh, run_id, source)
    return entries


def _counted(spark: SparkSession, lh: Lakehouse, run_id: str) -> bool:
    """Whether the ledger holds the bronze row of micro-batch `run_id` (written, then the query
    stopped before its checkpoint recorded the batch)."""
    ledger = ledger_mod.read_ledger(spark, lh)
    return bool(ledger.where((F.col("run_id") == run_id) & (F.col("layer") == "bronze")).take(1))


def _yield_to_runs(lh: Lakehouse, name: str) -> None:
    """Wait while a run holds the lakehouse's lock (docs/STREAMING.md, "Writing beside the daily
    pipeline"): the daily run's bronze MERGE reads the partitions the stream appends to, and a
    stream commit between its read and its commit would make it start over. The stream takes no
    lock itself (two lock objects every few seconds): it looks, and waits up to
    `lock.wait_minutes`, then writes anyway (a run holding the lock that long is stuck; its
    conflicts are retried)."""
    from lakehouse.state.lock import current_holder, store_for

    store = store_for(lh)
    settings = lh.config.lock
    deadline = time.monotonic() + settings.wait_minutes * 60
    told = None
    while (holder := current_holder(store)) is not None and time.monotonic() < deadline:
        if holder != told:
            progress.report(f"  stream {name}: waiting while {holder.describe()} runs")
            told = holder
        time.sleep(settings.poll_seconds)


def _follow_silver(
    spark: SparkSession, lh: Lakehouse, run_id: str, source: str
) -> list[LedgerEntry]:
    """Apply the source's new bronze records to silver under the lakehouse's lock (its lease
    renewed while silver runs), or leave them to the run that holds it (never waiting: the
    stream keeps its pace)."""
    from lakehouse.silver import engine
    from lakehouse.state.lock import LeaseRenewal, release, store_for, try_acquire

    names = [s.name for s in lh.tables.values() if s.source == source]
    store = store_for(lh)
    lease = lh.config.lock.lease_minutes
    mine, other = try_acquire(store, run_id, "stream follow_silver", lease)
    if mine is None:
        progress.report(
            f"  silver left to the run holding the lock ({other.describe() if other else '?'})"
        )
        return []
    renewal = LeaseRenewal(store, mine, lease).start()
    try:
        entries = engine.apply(spark, lh, run_id, names)
        ledger_mod.record(spark, lh, entries)
        return entries
    finally:
        renewal.stop()
        release(store, mine)


def read_messages(spark: SparkSession, config: StreamConfig) -> DataFrame:
    """The streaming DataFrame of the configured source's messages (MESSAGE_COLUMNS)."""
    if config.source_type == "kafka":
        k = config.kafka
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", k.bootstrap_servers)
            .option("subscribe", k.topic)
            .option("startingOffsets", k.starting_offsets)
            .option("maxOffsetsPerTrigger", str(config.max_records_per_batch))
            .option("groupIdPrefix", group_id_prefix(config.name))
            # A topic's retention deleting records the checkpoint has not read is data lost:
            # fail rather than skip past them.
            .option("failOnDataLoss", "true")
        )
        for name, value in k.options.items():
            reader = reader.option(f"kafka.{name}", value)
        return kafka_messages(reader.load())
    reader = spark.readStream.format("aws-kinesis")
    for name, value in kinesis_options(config).items():
        reader = reader.option(name, value)
    return kinesis_messages(reader.load())


def kinesis_options(config: StreamConfig) -> dict[str, str]:
    """The options of the EMR Kinesis connector (awslabs/spark-sql-kinesis-connector, shipped
    with EMR 7.1+): shared-throughput GetRecords consumer; a shard trimmed or gone before the
    checkpoint read it fails the query (data lost is never skipped silently)."""
    kin = config.kinesis
    options = {
        "kinesis.streamName": kin.stream_name,
        "kinesis.region": kin.region,
        "kinesis.endpointUrl": kin.endpoint_url or f"https://kinesis.{kin.region}.amazonaws.com",
        "kinesis.consumerType": "GetRecords",
        "kinesis.startingPosition": kin.starting_position,
        "kinesis.maxFetchRecordsPerShard": str(config.max_records_per_batch),
        "kinesis.failOnDataLoss": "true",
    }
    return {**options, **kin.options}


class StreamIngestion:
    """The running query and what it has written: `start`, then `await_termination` or `stop`."""

    def __init__(self, spark: SparkSession, lh: Lakehouse, config: StreamConfig) -> None:
        if config.source not in lh.sources:
            raise UserError(
                f"stream.source {config.source!r} is not a landing source "
                f"(known: {', '.join(lh.sources)})"
            )
        if lh.sources[config.source].format != "jsonl":
            raise UserError(
                f"stream.source {config.source!r} lands as {lh.sources[config.source].format}: "
                "only JSON-lines sources are streamed (one message is one JSON object)"
            )
        self.spark, self.lh, self.config = spark, lh, config
        self.query: StreamingQuery | None = None
        self.entries: list[LedgerEntry] = []
        self._started = threading.Event()
        self._query_id = ""
        self._first = True

    def _batch(self, batch: DataFrame, batch_id: int) -> None:
        if not self._started.wait(120):
            raise RuntimeError("the streaming query's id was not known 120 s after it started")
        clock = progress.Clock()
        first, self._first = self._first, False
        written = write_micro_batch(
            self.lh, self.config, self._query_id, batch, batch_id, maybe_done=first
        )
        self.entries.extend(written)
        if written:
            progress.table(
                f"stream.{self.config.name}",
                clock,
                "  stream %s batch %d: %d read, %d written, %d duplicates, %d quarantined",
                self.config.name,
                batch_id,
                written[0].records_read,
                written[0].records_written or 0,
                written[0].duplicates or 0,
                written[0].quarantined or 0,
                rows_in=written[0].records_read,
                rows_written=(written[0].records_written or 0) + (written[0].quarantined or 0),
            )

    def start(
        self, *, available_now: bool = False, trigger_seconds: float | None = None
    ) -> StreamingQuery:
        spark, lh, config = self.spark, self.lh, self.config
        if available_now and config.source_type == "kinesis":
            raise UserError(
                "the Kinesis connector does not support the availableNow trigger: catch up "
                "from the daily files (the replay path) or run with a processing-time trigger"
            )
        ensure_table(
            spark,
            bronze_path(lh, config.source),
            BRONZE_SCHEMA,
            partition_by=("ingest_date",),
            properties=BRONZE_PROPERTIES,
        )
        writer = (
            read_messages(spark, config)
            .writeStream.queryName(f"lakehouse-stream-{config.name}")
            .option("checkpointLocation", checkpoint_path(lh, config.name))
            .foreachBatch(self._batch)
        )
        if available_now:
            writer = writer.trigger(availableNow=True)
        else:
            seconds = trigger_seconds if trigger_seconds is not None else config.trigger_seconds
            writer = writer.trigger(processingTime=f"{seconds:g} seconds")
        self.query = writer.start()
        self._query_id = str(self.query.id)
        self._started.set()
        return self.query

    def await_termination(self, timeout_s: float | None = None) -> bool:
        """Wait for the query to end (availableNow) or `timeout_s`; re-raises its failure."""
        assert self.query is not None
        if timeout_s is None:
            self.query.awaitTermination()
            return True
        return bool(self.query.awaitTermination(max(1, math.ceil(timeout_s))))

    def stop(self) -> None:
        if self.query is not None and self.query.isActive:
            self.query.stop()


def stream_ledger(spark: SparkSession, lh: Lakehouse, name: str | None = None) -> DataFrame:
    """The ledger rows of stream micro-batches (of the stream `name` when given)."""
    prefix = STREAM_RUN_PREFIX + (f"{name}-" if name else "")
    return ledger_mod.read_ledger(spark, lh).where(F.col("run_id").startswith(prefix))


def describe(config: StreamConfig) -> dict[str, Any]:
    """What `lakehouse stream --dry-run` prints: the source and where it is read from."""
    where: dict[str, Any]
    if config.source_type == "kafka":
        where = {
            "bootstrap_servers": config.kafka.bootstrap_servers,
            "topic": config.kafka.topic,
            "starting_offsets": config.kafka.starting_offsets,
            "options": sorted(config.kafka.options),
        }
    else:
        where = {"format": "aws-kinesis", "options": kinesis_options(config)}
    return {
        "source_type": config.source_type,
        "source": config.source,
        "name": config.name,
        "trigger_seconds": config.trigger_seconds,
        "max_records_per_batch": config.max_records_per_batch,
        "follow_silver": config.follow_silver,
        **where,
    }
