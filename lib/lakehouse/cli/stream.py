"""`lakehouse stream`: a source's events from Kafka (MSK) or Kinesis into bronze as they arrive
(`lakehouse.bronze.stream`, docs/STREAMING.md)."""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import Any

from lakehouse.cli.common import lakehouse_of, session
from lakehouse.core import progress

# How often the command looks for a stop request or the end of `--for-seconds`.
POLL_SECONDS = 2.0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def register(sub: Any) -> None:
    stream = sub.add_parser(
        "stream",
        help="ingest a source's events from Kafka or Kinesis into bronze as they arrive",
        description=__doc__,
    )
    when = stream.add_mutually_exclusive_group()
    when.add_argument(
        "--available-now",
        action="store_true",
        help="read what the topic holds now (batches of stream.max_records_per_batch), then stop",
    )
    when.add_argument(
        "--trigger-seconds",
        type=_positive,
        default=None,
        help="a micro-batch every this many seconds (default: stream.trigger_seconds)",
    )
    stream.add_argument(
        "--for-seconds",
        type=_positive,
        default=None,
        help="stop the query after this long (default: until stopped; SIGTERM stops it cleanly)",
    )
    stream.add_argument("--source-type", choices=("kafka", "kinesis"), default=None)
    stream.add_argument(
        "--bootstrap-servers", default=None, help="Kafka bootstrap servers (stream.kafka)"
    )
    stream.add_argument("--topic", default=None, help="Kafka topic (stream.kafka.topic)")
    stream.add_argument(
        "--follow-silver",
        action="store_true",
        default=None,
        help="also apply each micro-batch to silver (stream.follow_silver)",
    )
    stream.add_argument(
        "--dry-run", action="store_true", help="print what would be read and where, then stop"
    )
    stream.set_defaults(func=cmd_stream)


def stream_config(args: argparse.Namespace, base: Any) -> Any:
    """The configured stream with the command line's overrides."""
    from dataclasses import replace

    config = base
    if args.source_type:
        config = replace(config, source_type=args.source_type)
    if args.follow_silver:
        config = replace(config, follow_silver=True)
    kafka = config.kafka
    if args.bootstrap_servers:
        kafka = replace(kafka, bootstrap_servers=args.bootstrap_servers)
    if args.topic:
        kafka = replace(kafka, topic=args.topic)
    return replace(config, kafka=kafka)


def cmd_stream(args: argparse.Namespace) -> int:
    from lakehouse.bronze import stream as stream_mod

    lh = lakehouse_of(args)
    config = stream_config(args, lh.config.stream)
    if args.dry_run:
        plan = stream_mod.describe(config)
        plan["checkpoint"] = stream_mod.checkpoint_path(lh, config.name)
        plan["trigger"] = (
            "availableNow"
            if args.available_now
            else f"{args.trigger_seconds or config.trigger_seconds:g} seconds"
        )
        print(json.dumps(plan, indent=2, sort_keys=True))
        return 0
    spark = session(lh, f"lakehouse-stream-{config.name}")
    ingestion = stream_mod.StreamIngestion(spark, lh, config)
    ingestion.start(available_now=args.available_now, trigger_seconds=args.trigger_seconds)
    # SIGTERM (EMR cancelling the run, `kill`) asks for a clean stop: the handler only records
    # it (a Py4J call from a signal handler would interleave with the main thread's own), and the
    # loop below stops the query between two waits: the micro-batch in flight finishes or is
    # replayed from the checkpoint, never half-written.
    asked: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))
    deadline = None if args.for_seconds is None else time.monotonic() + args.for_seconds
    try:
        while not ingestion.await_termination(POLL_SECONDS):
            if asked:
                progress.report(f"  stream {config.name}: stopping (signal {asked[0]})")
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        ingestion.stop()
    entries = [e for e in ingestion.entries if e.layer == "bronze"]
    progress.report(
        f"stream {config.name}: {len(entries)} micro-batches, "
        f"{sum(e.records_read for e in entries)} records read, "
        f"{sum(e.records_written or 0 for e in entries)} written, "
        f"{sum(e.duplicates or 0 for e in entries)} duplicates, "
        f"{sum(e.quarantined or 0 for e in entries)} quarantined"
    )
    return 0
