"""`make bench-stream` (issue #20): the streaming ingestion's latency and throughput here.

    python -m lakehouse_dev.bench.stream [--seconds 120] [--rate 50] [--backlog 200000]

Against a real Kafka broker on 127.0.0.1 (`lakehouse_dev.kafka`) and a scratch lakehouse:

1. latency: the stream runs with a processing-time trigger (`--trigger-seconds`, default 10)
   while a producer publishes `--rate` events a second for `--seconds`; each event carries its
   send time (`event_ts`, milliseconds) and is readable in bronze from the commit that inserted
   it (its `_commit_timestamp` in bronze's change feed). Latency = commit time - send time; the
   median and p95 over every event are reported.
2. throughput: `--backlog` events are published first, then drained with the availableNow
   trigger in micro-batches of `stream.max_records_per_batch`; events per second = records /
   the wall time of the micro-batches (the query's start, a fixed cost, is reported apart).

It prints the figures as a Markdown table for docs/BENCHMARKS.md, with the command and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse.bronze.stream import StreamIngestion, stream_ledger
from lakehouse.core.context import Lakehouse
from lakehouse.core.spark import get_spark, stop_spark
from lakehouse_dev.kafka import Broker, producer


def _event(n: int, sent_ms: int) -> bytes:
    sent = datetime.fromtimestamp(sent_ms / 1000, UTC)
    return json.dumps(
        {
            "event_id": f"B{n}",
            "event_ts": sent.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "session_id": f"S{n // 20}",
            "customer_id": f"C{n % 997}",
            "event_type": "page_view",
            "product_id": None,
            "order_id": None,
            "ip": "198.51.100.7",
            "user_agent": "Mozilla/5.0 (bench)",
        }
    ).encode()


def _lakehouse(root: Path, bootstrap: str, topic: str, batch: int) -> Lakehouse:
    storage = {
        "landing_root": str(root / "landing"),
        "lakehouse_root": str(root / "lake"),
        "reports_root": str(root / "reports"),
    }
    lh = Lakehouse.load("local", None, {"storage": storage})
    kafka = replace(lh.config.stream.kafka, bootstrap_servers=bootstrap, topic=topic)
    return lh.with_config(
        stream=replace(lh.config.stream, kafka=kafka, max_records_per_batch=batch)
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


def latency(spark: Any, root: Path, broker: Broker, args: argparse.Namespace) -> dict[str, Any]:
    broker.create_topic("latency")
    lh = _lakehouse(root / "latency", broker.bootstrap, "latency", 200_000)
    ingestion = StreamIngestion(spark, lh, lh.config.stream)
    ingestion.start(trigger_seconds=args.trigger_seconds)
    time.sleep(args.warmup)  # the query's first (empty) trigger and the session's warm-up
    send = producer(broker.bootstrap)
    sent = 0
    stop = time.monotonic() + args.seconds
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    while time.monotonic() < stop:
        now_ms = int(time.time() * 1000)
        send.send("latency", value=_event(sent, now_ms))
        sent += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    send.flush()
    send.close()
    deadline = time.monotonic() + 180
    path = lh.path("bronze.clickstream")
    while time.monotonic() < deadline:
        if spark.read.format("delta").load(path).count() >= sent:
            break
        time.sleep(2)
    ingestion.stop()
    rows = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", 0)
        .load(path)
        .where("_change_type = 'insert'")
        .selectExpr("get_json_object(raw, '$.event_ts') AS sent", "_commit_timestamp AS readable")
        .collect()
    )
    waits = [
        (
            r["readable"].replace(tzinfo=UTC)
            - datetime.fromisoformat(r["sent"].replace("Z", "+00:00"))
        ).total_seconds()
        for r in rows
    ]
    batches = stream_ledger(spark, lh).count()
    return {
        "events": sent,
        "readable": len(rows),
        "micro_batches": batches,
        "median_s": statistics.median(waits),
        "p95_s": _percentile(waits, 0.95),
        "max_s": max(waits),
    }


def throughput(spark: Any, root: Path, broker: Broker, args: argparse.Namespace) -> dict[str, Any]:
    broker.create_topic("backlog", partitions=2)
    lh = _lakehouse(root / "throughput", broker.bootstrap, "backlog", args.batch)
    send = producer(broker.bootstrap)
    now_ms = int(time.time() * 1000)
    for n in range(args.backlog):
        send.send("backlog", value=_event(n, now_ms))
    send.flush()
    send.close()
    ingestion = StreamIngestion(spark, lh, lh.config.stream)
    started = time.perf_counter()
    ingestion.start(available_now=True)
    ingestion.await_termination()
    total = time.perf_counter() - started
    entries = [e for e in ingestion.entries if e.layer == "bronze"]
    busy = sum((e.finished_at - e.started_at).total_seconds() for e in entries)
    read = sum(e.records_read for e in entries)
    return {
        "events": args.backlog,
        "read": read,
        "written": sum(e.records_written or 0 for e in entries),
        "micro_batches": len(entries),
        "batch_seconds": busy,
        "events_per_s": read / busy if busy else 0.0,
        "wall_seconds": total,
        "events_per_s_wall": read / total if total else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse_dev.bench.stream")
    parser.add_argument("--seconds", type=float, default=120, help="publishing time (latency)")
    parser.add_argument("--rate", type=float, default=50, help="events a second (latency)")
    parser.add_argument("--trigger-seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument("--backlog", type=int, default=200_000, help="events (throughput)")
    parser.add_argument("--batch", type=int, default=50_000, help="max records per micro-batch")
    parser.add_argument("--command", default="make bench-stream")
    args = parser.parse_args(argv)
    os.environ.setdefault("LAKEHOUSE_PII_HMAC_KEY", "bench-only-key-not-a-secret")
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    lh = Lakehouse.load("local")
    spark = get_spark(lh.config.spark, app_name="bench-stream")
    try:
        with Broker(root) as broker:
            lat = latency(spark, root, broker, args)
            thr = throughput(spark, root, broker, args)
    finally:
        stop_spark(spark)
        shutil.rmtree(root, ignore_errors=True)
    print(f"command: {args.command}")
    print(
        f"machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print()
    print("| figure | value |")
    print("|---|---|")
    print(
        f"| latency, {args.trigger_seconds:g} s trigger, {args.rate:g} events/s for "
        f"{args.seconds:g} s ({lat['events']} events, {lat['micro_batches']} micro-batches) | "
        f"median {lat['median_s']:.1f} s, p95 {lat['p95_s']:.1f} s, max {lat['max_s']:.1f} s |"
    )
    print(
        f"| throughput, {thr['events']:,} events drained (availableNow, "
        f"{thr['micro_batches']} micro-batches of <= {args.batch:,}) | "
        f"{thr['events_per_s']:,.0f} events/s in the micro-batches "
        f"({thr['batch_seconds']:.1f} s); {thr['events_per_s_wall']:,.0f} events/s "
        f"with the query's start ({thr['wall_seconds']:.1f} s) |"
    )
    print()
    print(json.dumps({"latency": lat, "throughput": thr}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
