"""What `jobs/*.py` run: one daily step (or the whole pipeline) with spark-submit arguments, or an
operations job (maintenance, erasure) with the `lakehouse` command's own arguments.

    spark-submit jobs/<step>.py --env dev --date 2024-01-03
    spark-submit jobs/pipeline.py --env prod --scheduled-time 2024-01-04T02:00:00Z
    spark-submit jobs/maintain.py --env prod [--no-quality]
    spark-submit jobs/erase.py --env prod --customer C-42 --request-id R-7
    spark-submit jobs/backfill.py --env prod --from 2024-01-01 --to 2024-01-31 [--dry-run]

`--date` restricts bronze to that ingest day and the earlier ones a missed run left
(`bronze.catch_up_max_days`); `--scheduled-time` (what EventBridge Scheduler passes) means the UTC
day before it. The outcome (`lakehouse.emr.notify.JobOutcome`) is published
to SNS and CloudWatch when `LAKEHOUSE_SNS_TOPIC_ARN` is set (as the EMR submitters set it), in the
metrics namespace of `LAKEHOUSE_METRICS_NAMESPACE`, whether the job succeeded or failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from lakehouse.bronze.ingestion import catch_up_dates
from lakehouse.core import progress
from lakehouse.core.config import ENVIRONMENTS
from lakehouse.core.context import Lakehouse
from lakehouse.core.spark import get_spark, stop_spark
from lakehouse.emr.clients import AwsClients
from lakehouse.emr.notify import (
    CheckFailure,
    JobOutcome,
    ledger_figures,
    notification_target,
    one_line,
    publish_outcome,
)
from lakehouse.emr.schedule import processing_date
from lakehouse.pipeline import STEPS, run_pipeline
from lakehouse.state.ledger import new_run_id


def parse_args(step: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"jobs/{step}.py")
    parser.add_argument("--env", default="local", choices=ENVIRONMENTS)
    parser.add_argument("--conf-dir", default=None)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--date", help="the ingest day to process (YYYY-MM-DD)")
    when.add_argument(
        "--scheduled-time", help="ISO time the schedule fired; processes the day before"
    )
    return parser.parse_args(argv)


class JobWatch:
    """What a job saw of itself, for the outcome it publishes even when it fails: each step's
    seconds (from `lakehouse.core.progress` events), the first step that failed, the error."""

    def __init__(self, job: str, run_id: str | None, gold_step: bool = False) -> None:
        self.job = job
        self.run_id = run_id  # None: an operations job, whose runs name themselves
        self.gold_step = gold_step
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.steps: dict[str, float] = {}
        self.failed_step: str | None = None
        self.error: str | None = None
        self.succeeded = False

    def hear(self, event: progress.Event) -> None:
        if event.kind not in ("done", "failed") or event.name.startswith("run "):
            return
        self.steps[event.name] = round(event.seconds, 1)
        if event.kind == "failed" and self.failed_step is None:
            self.failed_step = event.name

    def outcome(self, env: str, **read: Any) -> JobOutcome:
        """The outcome, with what was read from the lakehouse (`job_outcome`) if anything."""
        return JobOutcome(
            env=env,
            job=self.job,
            run_id=self.run_id or "-",
            status="SUCCEEDED" if self.succeeded else "FAILED",
            duration_s=time.monotonic() - self.started,
            error=self.error,
            failed_step=self.failed_step,
            steps=dict(self.steps),
            gold_step=self.gold_step,
            **read,
        )


def job_main(step: str, argv: Sequence[str] | None = None, *, stop: bool = True) -> int:
    """Run `step` (bronze, silver, quality, gold, or pipeline for all); raises on failure. Its
    outcome is published whatever happens (`_notify`); `stop=False` leaves the Spark session
    running (tests, which share one)."""
    args = parse_args(step, argv)
    lh = Lakehouse.load(args.env, args.conf_dir)
    day = processing_date(args.scheduled_time).isoformat() if args.scheduled_time else args.date
    steps = STEPS if step == "pipeline" else (step,)
    watch = JobWatch(step, new_run_id(), gold_step="gold" in steps)
    assert watch.run_id is not None
    spark = None
    try:
        with progress.listening(watch.hear):
            spark = get_spark(lh.config.spark, app_name=f"lakehouse-{step}")
            if "silver" in steps:
                lh.pii_hmac_key()  # read once, at start: a missing key fails the job before work
            dates = [day] if day else None
            if day and "bronze" in steps:
                # A missed night is caught up by the next run (bronze.catch_up_max_days).
                dates = catch_up_dates(spark, lh, day)
                if len(dates) > 1:
                    progress.report("catching up ingest dates %s", ", ".join(dates[:-1]))
            run_pipeline(spark, lh, watch.run_id, steps=steps, dates=dates)
        watch.succeeded = True
        return 0
    except BaseException as exc:
        watch.error = one_line(exc)
        raise
    finally:
        _notify(lh, spark, watch)
        if stop and spark is not None:
            stop_spark(spark)


def job_outcome(spark: SparkSession, lh: Lakehouse, watch: JobWatch) -> JobOutcome:
    """The outcome of the job `watch` saw, with what its run wrote read back from the lakehouse:
    the ledger rows so far, the quality checks and the published gold's age. Rows are the run's
    (by run id) or, for an operations job whose runs name themselves (maintenance, backfill),
    those written since the job started."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from lakehouse.gold.published import PUBLISHED_TABLE
    from lakehouse.quality.runner import RESULTS_TABLE
    from lakehouse.state.ledger import LEDGER_TABLE

    def rows(table: str, written_at: str) -> list[dict[str, Any]]:
        path = lh.path(table)
        if not DeltaTable.isDeltaTable(spark, path):
            return []
        df = spark.read.format("delta").load(path)
        if watch.run_id is not None:
            df = df.where(F.col("run_id") == F.lit(watch.run_id))
        else:
            df = df.where(F.col(written_at) >= F.lit(watch.started_at))
        return [r.asDict() for r in df.collect()]

    ledger = rows(LEDGER_TABLE, "started_at")
    checks = rows(RESULTS_TABLE, "run_ts")
    failures = [
        CheckFailure(f"{c['layer']}.{c['table']}/{c['check']}", c["severity"], c["message"] or "")
        for c in checks
        if c["status"] == "failed"
    ]
    gold_age: float | None = None
    path = lh.path(PUBLISHED_TABLE)
    if DeltaTable.isDeltaTable(spark, path):
        # Computed by Spark, in UTC whatever the machine's zone.
        age = (
            spark.read.format("delta")
            .load(path)
            .agg(
                (F.unix_timestamp(F.current_timestamp()) - F.unix_timestamp(F.max("published_at")))
                / 3600
            )
            .first()
        )
        if age is not None and age[0] is not None:
            gold_age = round(float(age[0]), 2)
    return watch.outcome(
        lh.config.env,
        ledger=ledger_figures(ledger),
        failures=failures,
        checks_passed=sum(1 for c in checks if c["status"] == "passed"),
        gold_age_hours=gold_age,
    )


def _notify(lh: Lakehouse, spark: SparkSession | None, watch: JobWatch) -> None:
    """Publish the job's outcome to SNS and CloudWatch when the submitter named a topic
    (`LAKEHOUSE_SNS_TOPIC_ARN`). Never raises: a job that failed must fail with its own error."""
    topic, namespace = notification_target()
    aws = lh.config.aws
    if not topic or aws is None:
        return
    try:
        outcome = job_outcome(spark, lh, watch) if spark is not None else None
    except Exception as exc:  # the lakehouse could not be read (Spark itself may be the failure)
        print(
            f"outcome: could not read the run's ledger and checks: {one_line(exc)}", file=sys.stderr
        )
        outcome = None
    try:
        publish_outcome(
            AwsClients(aws), topic, outcome or watch.outcome(lh.config.env), namespace=namespace
        )
    except Exception as exc:
        print(f"outcome: could not publish to {topic}: {one_line(exc)}", file=sys.stderr)


def ops_argv(command: str, argv: Sequence[str]) -> tuple[str, str | None, list[str]]:
    """(env, conf dir, `lakehouse` command line) of operations job `command` (`maintain`,
    `erase`) from the job's arguments: `--env` and `--conf-dir` go before the command, the rest
    after it."""
    parser = argparse.ArgumentParser(prog=f"jobs/{command}.py", add_help=False)
    parser.add_argument("--env", default="local", choices=ENVIRONMENTS)
    parser.add_argument("--conf-dir", default=None)
    known, rest = parser.parse_known_args(list(argv))
    conf_dir = ["--conf-dir", known.conf_dir] if known.conf_dir else []
    return known.env, known.conf_dir, ["--env", known.env, *conf_dir, command, *rest]


def ops_main(command: str, argv: Sequence[str] | None = None, *, stop: bool = True) -> int:
    """Run operations job `command` as `lakehouse <command>` would; publish its outcome like the
    daily jobs (when `LAKEHOUSE_SNS_TOPIC_ARN` is set), with the checks and ledger rows written
    since it started and the error it reported; non-zero on failure."""
    from lakehouse import cli

    env, conf_dir, cli_argv = ops_argv(command, sys.argv[1:] if argv is None else argv)
    lh = Lakehouse.load(env, conf_dir)
    # A backfill that is not a dry run publishes gold: gold is then up to date.
    watch = JobWatch(command, None, gold_step=command == "backfill" and "--dry-run" not in cli_argv)
    errors: list[str] = []
    try:
        with progress.listening(watch.hear):
            code = cli.main(cli_argv, errors=errors)
        watch.succeeded = code == 0
        if code:
            watch.error = errors[0] if errors else f"lakehouse {command} exited with status {code}"
        return code
    except BaseException as exc:
        watch.error = one_line(exc)
        raise
    finally:
        spark = SparkSession.getActiveSession()
        _notify(lh, spark, watch)
        if stop and spark is not None:
            stop_spark(spark)


if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1] if len(sys.argv) > 1 else "pipeline", sys.argv[2:]))
