"""What `jobs/*.py` run: one daily step (or the whole pipeline) with spark-submit arguments, or an
operations job (maintenance, erasure) with the `lakehouse` command's own arguments.

    spark-submit jobs/<step>.py --env dev --date 2024-01-03
    spark-submit jobs/pipeline.py --env prod --scheduled-time 2024-01-04T02:00:00Z
    spark-submit jobs/maintain.py --env prod [--no-quality]
    spark-submit jobs/erase.py --env prod --customer C-42 --request-id R-7

`--date` restricts bronze to that ingest day; `--scheduled-time` (what EventBridge Scheduler
passes) means the UTC day before it. The outcome is published to SNS and CloudWatch when
`LAKEHOUSE_SNS_TOPIC_ARN` is set (as the EMR submitters set it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from lakehouse.core.config import ENVIRONMENTS, Config
from lakehouse.core.context import Lakehouse
from lakehouse.core.spark import get_spark, stop_spark
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


def job_main(step: str, argv: Sequence[str] | None = None) -> int:
    """Run `step` (bronze, silver, gold, or pipeline for all); non-zero on failure."""
    args = parse_args(step, argv)
    lh = Lakehouse.load(args.env, args.conf_dir)
    config = lh.config
    day = processing_date(args.scheduled_time).isoformat() if args.scheduled_time else args.date
    spark = get_spark(config.spark, app_name=f"lakehouse-{step}")
    run_id = new_run_id()
    started = time.monotonic()
    steps = STEPS if step == "pipeline" else (step,)
    status = "failed"
    report = None
    try:
        if "silver" in steps:
            lh.pii_hmac_key()  # read once, at start: a missing key fails the job before any work
        report = run_pipeline(spark, lh, run_id, steps=steps, dates=[day] if day else None)
        status = "succeeded"
        return 0
    finally:
        _notify(config, run_id, status, report, time.monotonic() - started)
        stop_spark(spark)


def _quality_rows(report: object) -> list[dict[str, str]]:
    """Checks of the run for the notification; a failed warning is reported as `warning`."""
    rows = []
    for outcome in getattr(report, "quality", []):
        for r in outcome.results:
            status = "warning" if r.failed and r.severity == "warning" else r.status
            rows.append({"check": f"{r.layer}.{r.table}/{r.check}", "status": status})
    return rows


def _notify(config: Config, run_id: str, status: str, report: object, duration_s: float) -> None:
    topic = os.environ.get("LAKEHOUSE_SNS_TOPIC_ARN")
    aws = getattr(config, "aws", None)
    if not topic or aws is None:
        return
    from lakehouse.emr.clients import AwsClients
    from lakehouse.emr.notify import publish_run_outcome

    entries = [*getattr(report, "bronze", []), *getattr(report, "silver", [])]
    ledger_rows = [
        {
            "source": e.table_name,
            "records_read": e.records_read,
            "records_quarantined": e.quarantined or 0,
        }
        for e in entries
    ]
    publish_run_outcome(
        AwsClients(aws),
        topic,
        env=config.env,
        run_id=run_id,
        status=status,
        ledger_rows=ledger_rows,
        quality_rows=_quality_rows(report),
        duration_s=duration_s,
    )


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


def ops_main(command: str, argv: Sequence[str] | None = None) -> int:
    """Run operations job `command` as `lakehouse <command>` would; publish its outcome like the
    daily jobs (when `LAKEHOUSE_SNS_TOPIC_ARN` is set); non-zero on failure."""
    from lakehouse import cli

    env, conf_dir, cli_argv = ops_argv(command, sys.argv[1:] if argv is None else argv)
    config = Lakehouse.load(env, conf_dir).config
    started = time.monotonic()
    status = "failed"
    try:
        code = cli.main(cli_argv)
        status = "succeeded" if code == 0 else "failed"
        return code
    finally:
        _notify(config, f"{command}-{new_run_id()}", status, None, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1] if len(sys.argv) > 1 else "pipeline", sys.argv[2:]))
