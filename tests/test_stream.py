"""Streaming ingestion against a real Kafka broker (KRaft, from its Maven Central jars, on
127.0.0.1): what a topic delivers reaches bronze as the daily files' records do, exactly once,
with its ledger rows; a killed query restarted writes nothing twice."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.landing import parse_landed_lines
from lakehouse.bronze.stream import (
    StreamIngestion,
    _yield_to_runs,
    checkpoint_path,
    kinesis_options,
    stream_ledger,
)
from lakehouse.core.config import DEFAULT_CONF_DIR, ConfigError
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import CRASH_ENV, CRASH_STATUS
from lakehouse.core.errors import UserError
from lakehouse.pipeline import run_bronze, run_silver
from lakehouse.state.ledger import read_ledger
from lakehouse.state.lock import release, store_for, try_acquire
from lakehouse.state.quarantine import read_quarantine
from lakehouse_dev.kafka import Broker, day_start_ms, publish
from lakehouses import local_lakehouse

DAY = "2024-01-02"
AT = day_start_ms(DAY) + 3_600_000  # 01:00 UTC that day


def event(n: int, event_type: str = "page_view", customer: str | None = "C1") -> dict[str, object]:
    return {
        "event_id": f"E{n}",
        "event_ts": f"{DAY}T00:0{n}:00Z",
        "session_id": "S1",
        "customer_id": customer,
        "event_type": event_type,
        "product_id": None,
        "order_id": None,
        "ip": "198.51.100.7",
        "user_agent": "Mozilla/5.0",
    }


def line(e: dict[str, object]) -> bytes:
    return json.dumps(e).encode()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(tmp_path_factory.mktemp("kafka")) as running:
        yield running


def streaming_lakehouse(base: Path, broker: Broker, topic: str, **changes: object) -> Lakehouse:
    lh = local_lakehouse(base)
    kafka = replace(lh.config.stream.kafka, bootstrap_servers=broker.bootstrap, topic=topic)
    return lh.with_config(stream=replace(lh.config.stream, kafka=kafka, **changes))


def drain(spark: SparkSession, lh: Lakehouse) -> StreamIngestion:
    """Run the stream with the availableNow trigger: everything the topic holds, then stop."""
    ingestion = StreamIngestion(spark, lh, lh.config.stream)
    ingestion.start(available_now=True)
    assert ingestion.await_termination(180), "the availableNow query did not finish in 180 s"
    return ingestion


def bronze(spark: SparkSession, lh: Lakehouse) -> list[tuple[object, ...]]:
    rows = spark.read.format("delta").load(lh.path("bronze.clickstream"))
    return sorted(
        (r["_file"], r["_line"], str(r["ingest_date"]), r["raw"], r["_record_id"])
        for r in rows.collect()
    )


def file_identity(*lines: bytes) -> list[str]:
    """The record ids the daily files' parser gives these lines."""
    spec = Lakehouse.load("local").sources["clickstream"]
    return [r.record_id for r in parse_landed_lines("clickstream", spec, DAY, list(lines))]


def ledger_counts(spark: SparkSession, lh: Lakehouse) -> list[tuple[int, int, int, int]]:
    rows = stream_ledger(spark, lh, "clickstream").orderBy("run_id").collect()
    return [
        (r["records_read"], r["records_written"], r["duplicates"], r["quarantined"]) for r in rows
    ]


def test_published_events_reach_bronze_as_the_files_records_with_where_they_came_from(
    spark: SparkSession, broker: Broker, tmp_path: Path
) -> None:
    broker.create_topic("reach")
    lh = streaming_lakehouse(tmp_path, broker, "reach")
    lines = [line(event(1)), line(event(2)), line(event(3, "product_view")), line(event(4))]
    # The last one sent with a UTF-8 byte order mark, which a file's first line may carry too.
    publish(broker.bootstrap, "reach", [*lines[:3], b"\xef\xbb\xbf" + lines[3]], timestamp_ms=AT)

    ingestion = drain(spark, lh)

    ids = file_identity(*lines)
    assert bronze(spark, lh) == sorted(
        ("kafka://reach/0", offset, DAY, lines[offset].decode(), ids[offset]) for offset in range(4)
    )
    assert ledger_counts(spark, lh) == [(4, 4, 0, 0)]
    assert [e.run_id for e in ingestion.entries] == [
        r["run_id"] for r in stream_ledger(spark, lh).collect()
    ]


def test_bad_messages_are_quarantined_with_their_reason_and_the_ledger_balances(
    spark: SparkSession, broker: Broker, tmp_path: Path
) -> None:
    broker.create_topic("bad")
    lh = streaming_lakehouse(tmp_path, broker, "bad")
    good = line(event(1))
    messages = [good, b"not json", b"", b"[1, 2]", b'{"event_id": "E9", "event_id": "E9"}', good]
    publish(broker.bootstrap, "bad", messages, timestamp_ms=AT)

    drain(spark, lh)

    quarantined = sorted(
        (r["source"], r["file"], r["line"], str(r["ingest_date"]), r["raw"], r["reason"])
        for r in read_quarantine(spark, lh).collect()
    )
    assert quarantined == [
        (
            "clickstream",
            "kafka://bad/0",
            1,
            DAY,
            "not json",
            "not valid JSON: Expecting value at column 1",
        ),
        (
            "clickstream",
            "kafka://bad/0",
            2,
            DAY,
            "",
            "empty message: one message is one JSON object",
        ),
        ("clickstream", "kafka://bad/0", 3, DAY, "[1, 2]", "not a JSON object but a list"),
        (
            "clickstream",
            "kafka://bad/0",
            4,
            DAY,
            '{"event_id": "E9", "event_id": "E9"}',
            "key 'event_id' appears twice in one JSON object",
        ),
    ]
    assert [r[1] for r in bronze(spark, lh)] == [0]  # the repeated good message is one record
    # read 6 = written 1 + duplicates 1 + quarantined 4
    assert ledger_counts(spark, lh) == [(6, 1, 1, 4)]


def _land(lh: Lakehouse, lines: list[bytes]) -> None:
    folder = Path(lh.config.storage.landing_root) / "clickstream" / f"ingest_date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clicks.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def test_events_delivered_by_stream_and_by_daily_file_are_one_record_in_bronze_and_silver(
    spark: SparkSession, broker: Broker, tmp_path: Path
) -> None:
    broker.create_topic("both")
    lh = streaming_lakehouse(tmp_path, broker, "both")
    streamed = [line(event(1)), line(event(2)), line(event(3))]
    publish(broker.bootstrap, "both", streamed, timestamp_ms=AT)
    drain(spark, lh)
    # The file holds the same three (E1 with its keys in another order and other spacing: the
    # identity is the canonical JSON) and one more.
    reordered = json.dumps(dict(reversed(list(event(1).items()))), indent=None).encode()
    _land(lh, [reordered, streamed[1], streamed[2], line(event(4))])

    entries = run_bronze(spark, lh, "daily-1")

    daily = next(e for e in entries if e.table_name == "clickstream")
    assert (daily.records_read, daily.records_written, daily.duplicates, daily.quarantined) == (
        4,
        1,
        3,
        0,
    )
    assert len(bronze(spark, lh)) == 4
    silver = run_silver(spark, lh, "daily-1")
    clicks = next(e for e in silver if e.table_name == "clickstream")
    assert (clicks.records_read, clicks.inserted) == (4, 4)
    rows = spark.read.format("delta").load(lh.path("silver.clickstream"))
    assert sorted(r["event_id"] for r in rows.collect()) == ["E1", "E2", "E3", "E4"]

    # The file's new event streamed afterwards (a late copy) adds nothing anywhere.
    publish(broker.bootstrap, "both", [line(event(4))], timestamp_ms=AT)
    drain(spark, lh)
    assert ledger_counts(spark, lh) == [(3, 3, 0, 0), (1, 0, 1, 0)]
    assert len(bronze(spark, lh)) == 4
    again = run_silver(spark, lh, "daily-2")
    assert next(e for e in again if e.table_name == "clickstream").records_read == 0


def _conf_dir(tmp_path: Path, broker: Broker, topic: str) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    local = yaml.safe_load((conf / "local.yaml").read_text()) or {}
    local["storage"] = {
        "landing_root": str(tmp_path / "landing"),
        "lakehouse_root": str(tmp_path / "lake"),
        "reports_root": str(tmp_path / "reports"),
    }
    local["stream"] = {"kafka": {"bootstrap_servers": broker.bootstrap, "topic": topic}}
    (conf / "local.yaml").write_text(yaml.safe_dump(local))
    return conf


def _stream_command(conf: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "lakehouse.cli", "--conf-dir", str(conf), "stream", *options]


def _stream_env(crash: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    return env


def test_a_query_killed_after_its_bronze_commit_and_restarted_writes_no_duplicate(
    spark: SparkSession, broker: Broker, tmp_path: Path
) -> None:
    broker.create_topic("killed", partitions=2)
    conf = _conf_dir(tmp_path, broker, "killed")
    lh = Lakehouse.load("local", conf)
    lines = [line(event(n)) for n in range(1, 7)] + [b"{broken"]
    publish(broker.bootstrap, "killed", lines, timestamp_ms=AT)

    # Killed (os._exit, as kill -9) after bronze and quarantine committed the batch, before its
    # ledger row and before the checkpoint recorded the batch as done.
    killed = subprocess.run(
        _stream_command(conf, "--available-now"),
        env=_stream_env("stream.written"),
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == CRASH_STATUS, killed.stderr.decode()[-3000:]
    assert len(bronze(spark, lh)) == 6
    assert stream_ledger(spark, lh).count() == 0

    # A daily run delivering the same records meanwhile counts them as duplicates: they are the
    # killed batch's, which its replay counts (were both to claim them, they would be counted
    # written twice).
    _land(lh, lines)
    daily = next(e for e in run_bronze(spark, lh, "daily-1") if e.table_name == "clickstream")
    assert (daily.records_read, daily.records_written, daily.duplicates, daily.quarantined) == (
        7,
        0,
        7,
        0,
    )

    # Restarted as it runs in production (a micro-batch a second, until stopped), then stopped
    # by SIGTERM as EMR cancels a run: it finishes cleanly.
    restarted = subprocess.Popen(
        _stream_command(conf, "--trigger-seconds", "1"),
        env=_stream_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while stream_ledger(spark, lh).count() == 0 and restarted.poll() is None:
            assert time.monotonic() < deadline, "the restarted stream wrote no ledger row in 180 s"
            time.sleep(2)
        restarted.send_signal(signal.SIGTERM)
        _, err = restarted.communicate(timeout=120)
    finally:
        restarted.kill()
    assert restarted.returncode == 0, err.decode()[-3000:]
    assert "stopping (signal 15)" in err.decode()

    assert len(bronze(spark, lh)) == 6
    assert read_quarantine(spark, lh).count() == 1
    # The replayed batch (same id, same run id) counts the records its killed attempt wrote as
    # written, once: read 7 = written 6 + quarantined 1.
    assert ledger_counts(spark, lh) == [(7, 6, 0, 1)]
    rows = stream_ledger(spark, lh).collect()
    assert rows[0]["run_id"].endswith("-000000000")


def test_a_batch_failing_after_its_ledger_row_is_replayed_without_a_second_commit(
    spark: SparkSession, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker.create_topic("replayed")
    lh = streaming_lakehouse(tmp_path, broker, "replayed")
    publish(broker.bootstrap, "replayed", [line(event(1)), line(event(2))], timestamp_ms=AT)

    def fail_after_counting(name: str) -> None:
        if name == "stream.counted":
            raise RuntimeError("the driver fails before the checkpoint records the batch")

    monkeypatch.setattr("lakehouse.bronze.stream.crash_point", fail_after_counting)
    with pytest.raises(Exception, match="before the checkpoint records the batch"):
        drain(spark, lh)
    monkeypatch.undo()
    versions = {
        t: spark.sql(f"DESCRIBE HISTORY delta.`{lh.path(t)}`").count()
        for t in ("bronze.clickstream", "ledger.runs")
    }

    drain(spark, lh)

    # Delta skipped the replayed batch's commits (same transaction ids): no new version of
    # bronze or of the ledger, one ledger row, two records.
    assert {
        t: spark.sql(f"DESCRIBE HISTORY delta.`{lh.path(t)}`").count() for t in versions
    } == versions
    assert ledger_counts(spark, lh) == [(2, 2, 0, 0)]
    assert len(bronze(spark, lh)) == 2


def test_following_silver_applies_each_micro_batch_to_silver_clickstream(
    spark: SparkSession, broker: Broker, tmp_path: Path
) -> None:
    broker.create_topic("follow")
    lh = streaming_lakehouse(tmp_path, broker, "follow", follow_silver=True)
    publish(
        broker.bootstrap, "follow", [line(event(1)), line(event(2, customer=None))], timestamp_ms=AT
    )

    ingestion = drain(spark, lh)

    rows = spark.read.format("delta").load(lh.path("silver.clickstream"))
    assert sorted((r["event_id"], r["customer_id"]) for r in rows.collect()) == [
        ("E1", "C1"),
        ("E2", None),
    ]
    silver = read_ledger(spark, lh).where(F.col("layer") == "silver").collect()
    assert [(r["run_id"], r["table_name"], r["records_read"], r["inserted"]) for r in silver] == [
        (ingestion.entries[0].run_id, "clickstream", 2, 2)
    ]


def test_the_checkpoint_lives_under_the_lakehouse_root(tmp_path: Path) -> None:
    lh = local_lakehouse(tmp_path)
    assert checkpoint_path(lh, "clickstream") == f"{tmp_path}/lake/_checkpoints/stream/clickstream"


def test_kinesis_reads_through_emrs_connector_with_data_loss_failing_the_query(
    tmp_path: Path,
) -> None:
    lh = local_lakehouse(tmp_path)
    config = replace(lh.config.stream, source_type="kinesis")
    assert kinesis_options(config) == {
        "kinesis.streamName": "clickstream",
        "kinesis.region": "us-east-1",
        "kinesis.endpointUrl": "https://kinesis.us-east-1.amazonaws.com",
        "kinesis.consumerType": "GetRecords",
        "kinesis.startingPosition": "TRIM_HORIZON",
        "kinesis.maxFetchRecordsPerShard": "200000",
        "kinesis.failOnDataLoss": "true",
    }


def test_kinesis_refuses_the_available_now_trigger_its_connector_lacks(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh = local_lakehouse(tmp_path)
    lh = lh.with_config(stream=replace(lh.config.stream, source_type="kinesis"))
    with pytest.raises(UserError, match="does not support the availableNow trigger"):
        StreamIngestion(spark, lh, lh.config.stream).start(available_now=True)


def test_a_stream_of_a_csv_source_is_refused(spark: SparkSession, tmp_path: Path) -> None:
    lh = local_lakehouse(tmp_path)
    lh = lh.with_config(stream=replace(lh.config.stream, source="products"))
    with pytest.raises(UserError, match="only JSON-lines sources are streamed"):
        StreamIngestion(spark, lh, lh.config.stream)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"trigger_seconds": 0}, "key 'stream.trigger_seconds': expected a positive number"),
        ({"max_records_per_batch": 0}, "key 'stream.max_records_per_batch': expected 1 or more"),
        ({"name": "Click Stream"}, "key 'stream.name': expected a name of lower-case letters"),
        ({"source_type": "pubsub"}, "key 'stream.source_type': expected one of 'kafka', 'kinesis'"),
        (
            {"kafka": {"msk_cluster_arn": "arn:aws:kafka:eu-west-1:111122223333:topic/shop/x/t"}},
            "key 'stream.kafka.msk_cluster_arn': expected an MSK cluster ARN",
        ),
    ],
)
def test_a_wrong_stream_setting_names_its_key(setting: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Lakehouse.load("local", None, {"stream": setting})


def test_the_dry_run_prints_the_source_trigger_and_checkpoint(tmp_path: Path) -> None:
    from lakehouse import cli

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    local = yaml.safe_load((conf / "local.yaml").read_text()) or {}
    local["storage"] = {
        "landing_root": "/l",
        "lakehouse_root": "s3://bucket/lake",
        "reports_root": "/r",
    }
    (conf / "local.yaml").write_text(yaml.safe_dump(local))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehouse.cli",
            "--conf-dir",
            str(conf),
            "stream",
            "--dry-run",
            "--source-type",
            "kinesis",
            "--trigger-seconds",
            "5",
        ],
        capture_output=True,
        check=True,
    )
    plan = json.loads(out.stdout)
    assert plan["checkpoint"] == "s3://bucket/lake/_checkpoints/stream/clickstream"
    assert plan["trigger"] == "5 seconds"
    assert plan["source_type"] == "kinesis"
    assert plan["options"]["kinesis.streamName"] == "clickstream"
    assert cli  # the command is registered in the same parser the test imports


def test_a_generated_shops_clickstream_published_then_delivered_as_files_lands_once(
    spark: SparkSession, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lakehouse import cli

    broker.create_topic("generated")
    conf = _conf_dir(tmp_path, broker, "generated")
    generate = ["--conf-dir", str(conf), "generate", "--days", "2", "--customers", "20"]
    assert cli.main([*generate, "--orders-per-day", "10", "--publish-to", broker.bootstrap]) == 0
    lines = [
        line
        for path in sorted((tmp_path / "landing" / "clickstream").rglob("*.jsonl*"))
        for line in (
            gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        ).split(b"\n")
        if line.strip()
    ]
    assert f"published {len(lines)} clickstream messages to generated" in capsys.readouterr().out
    lh = Lakehouse.load("local", conf)

    drain(spark, lh)
    streamed = stream_ledger(spark, lh).collect()
    assert sum(r["records_read"] for r in streamed) == len(lines)
    held = len(bronze(spark, lh))
    quarantined = read_quarantine(spark, lh).count()
    assert quarantined > 0  # the generator's bad lines (defects on), quarantined by the stream
    assert sum(r["records_written"] for r in streamed) == held

    # The daily files carry the same records: bronze and the quarantine gain nothing.
    entries = run_bronze(spark, lh, "daily-1")
    clicks = next(e for e in entries if e.table_name == "clickstream")
    assert (clicks.records_read, clicks.records_written, clicks.quarantined) == (len(lines), 0, 0)
    assert clicks.duplicates == len(lines)
    assert len(bronze(spark, lh)) == held
    assert read_quarantine(spark, lh).where(F.col("source") == "clickstream").count() == quarantined


def test_the_stream_waits_while_a_run_holds_the_lakehouse_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lh = local_lakehouse(tmp_path)
    lh = lh.with_config(lock=replace(lh.config.lock, poll_seconds=0.1))
    store = store_for(lh)
    holder, _ = try_acquire(store, "daily-run", "pipeline", lh.config.lock.lease_minutes)
    assert holder is not None
    heard: list[str] = []
    monkeypatch.setattr("lakehouse.bronze.stream.progress.report", heard.append)
    threading.Timer(1.0, release, (store, holder)).start()

    started = time.monotonic()
    _yield_to_runs(lh, "clickstream")

    assert time.monotonic() - started >= 1.0
    assert len(heard) == 1 and heard[0].startswith("  stream clickstream: waiting while ")
    assert "daily-run" in heard[0]
