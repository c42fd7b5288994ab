"""The outcome of a pipeline run, told to people (an SNS message) and to dashboards and alarms
(CloudWatch metrics).

The pipeline calls `publish_run_outcome` once at the end of a run, with the ingestion ledger and
the quality results it already holds. On EMR the submitters pass the topic ARN and the metrics
namespace to the driver as environment variables (`notification_target()` reads them).

Metrics, namespace `Lakehouse` by default:

- per source, dimensions Env and Source: `RecordsRead`, `RecordsQuarantined` (Count; ledger rows of
  the same source are added up);
- per run, dimension Env: `RunDurationSeconds` (Seconds) and `QualityChecksFailed` (Count of quality
  rows whose status is a failure: `Failure`, `Error`, `failed`...; warnings do not count).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

from lakehouse.emr.bundle import NAMESPACE_ENV, TOPIC_ENV
from lakehouse.emr.clients import AwsClients

FAILED_QUALITY_STATUSES = frozenset({"failure", "failed", "fail", "error"})
WARNING_QUALITY_STATUSES = frozenset({"warning", "warn"})
METRICS_PER_REQUEST = 20  # PutMetricData's historical limit; any limit above it also accepts it


@dataclass(frozen=True)
class SourceFigures:
    source: str
    records_read: int
    records_quarantined: int


@dataclass(frozen=True)
class RunOutcome:
    """What was published: the message, and the metric data sent to CloudWatch."""

    subject: str
    message: str
    message_id: str
    metric_data: list[dict[str, Any]]


def notification_target() -> tuple[str | None, str]:
    """The SNS topic ARN and metrics namespace the submitter gave the driver (topic None if not
    set, as in local runs)."""
    return os.environ.get(TOPIC_ENV) or None, os.environ.get(NAMESPACE_ENV) or "Lakehouse"


def source_figures(ledger_rows: Sequence[Mapping[str, Any]]) -> list[SourceFigures]:
    """Ledger rows (dicts with `source`, `records_read`, `records_quarantined`) added up per
    source, in source order."""
    read: dict[str, int] = {}
    quarantined: dict[str, int] = {}
    for row in ledger_rows:
        source = str(row["source"])
        read[source] = read.get(source, 0) + int(row["records_read"])
        quarantined[source] = quarantined.get(source, 0) + int(row["records_quarantined"])
    return [SourceFigures(s, read[s], quarantined[s]) for s in sorted(read)]


def failed_checks(quality_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the quality checks (dicts with `check`, `status`) whose status is a failure."""
    return [
        str(r["check"])
        for r in quality_rows
        if str(r["status"]).strip().lower() in FAILED_QUALITY_STATUSES
    ]


def render_message(
    env: str,
    run_id: str,
    status: str,
    figures: Sequence[SourceFigures],
    quality_rows: Sequence[Mapping[str, Any]],
    duration_s: float,
) -> tuple[str, str]:
    """The SNS subject (one ASCII line, at most 100 characters) and a plain-text body."""
    failed = failed_checks(quality_rows)
    warned = [
        str(r["check"])
        for r in quality_rows
        if str(r["status"]).strip().lower() in WARNING_QUALITY_STATUSES
    ]
    subject = f"[lakehouse {env}] run {run_id} {status.upper()}"
    if failed:
        subject += f", {len(failed)} quality check(s) failed"
    subject = subject.encode("ascii", "replace").decode()[:100]
    minutes, seconds = divmod(round(duration_s), 60)
    lines = [
        f"Lakehouse pipeline run {run_id} in {env}: {status.upper()}",
        f"Duration: {minutes}m {seconds:02d}s",
        "",
        "Ingestion by source:",
        f"  {'source':<20} {'read':>12} {'quarantined':>12}",
    ]
    for f in figures:
        lines.append(f"  {f.source:<20} {f.records_read:>12,} {f.records_quarantined:>12,}")
    total_read = sum(f.records_read for f in figures)
    total_q = sum(f.records_quarantined for f in figures)
    lines.append(f"  {'total':<20} {total_read:>12,} {total_q:>12,}")
    lines += [
        "",
        f"Quality: {len(quality_rows) - len(failed) - len(warned)} passed, "
        f"{len(warned)} warning(s), {len(failed)} failed",
    ]
    lines += [f"  FAILED  {name}" for name in failed]
    lines += [f"  WARNING {name}" for name in warned]
    return subject, "\n".join(lines) + "\n"


def metric_data(
    env: str,
    figures: Sequence[SourceFigures],
    quality_rows: Sequence[Mapping[str, Any]],
    duration_s: float,
    timestamp: datetime,
) -> list[dict[str, Any]]:
    """The MetricData entries of a run (see the module docstring)."""
    data: list[dict[str, Any]] = []
    for f in figures:
        dims = [{"Name": "Env", "Value": env}, {"Name": "Source", "Value": f.source}]
        data.append(_datum("RecordsRead", dims, f.records_read, "Count", timestamp))
        data.append(_datum("RecordsQuarantined", dims, f.records_quarantined, "Count", timestamp))
    env_dim = [{"Name": "Env", "Value": env}]
    data.append(_datum("RunDurationSeconds", env_dim, duration_s, "Seconds", timestamp))
    data.append(
        _datum("QualityChecksFailed", env_dim, len(failed_checks(quality_rows)), "Count", timestamp)
    )
    return data


def _datum(
    name: str, dims: list[dict[str, str]], value: float, unit: str, ts: datetime
) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Dimensions": dims,
        "Value": float(value),
        "Unit": unit,
        "Timestamp": ts,
    }


def publish_run_outcome(
    clients: AwsClients | boto3.Session,
    topic_arn: str,
    *,
    env: str,
    run_id: str,
    status: str,
    ledger_rows: Sequence[Mapping[str, Any]],
    quality_rows: Sequence[Mapping[str, Any]],
    duration_s: float,
    namespace: str = "Lakehouse",
    now: datetime | None = None,
) -> RunOutcome:
    """Publish a readable summary of the run to `topic_arn` and put its metrics in CloudWatch.

    `clients` is this package's `AwsClients` (honours the configured endpoint) or a plain boto3
    session (on EMR, where the role's credentials and region are the defaults). `ledger_rows` are
    dicts with at least `source`, `records_read`, `records_quarantined`; `quality_rows` dicts
    with `check` and `status`. `status` is the run's own verdict (`SUCCEEDED`, `FAILED`, ...).
    """
    sns = clients.client("sns")
    cloudwatch = clients.client("cloudwatch")
    figures = source_figures(ledger_rows)
    subject, message = render_message(env, run_id, status, figures, quality_rows, duration_s)
    timestamp = now or datetime.now(UTC)
    data = metric_data(env, figures, quality_rows, duration_s, timestamp)
    for i in range(0, len(data), METRICS_PER_REQUEST):
        batch: Any = data[i : i + METRICS_PER_REQUEST]
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=message,
        MessageAttributes={
            "env": {"DataType": "String", "StringValue": env},
            "status": {"DataType": "String", "StringValue": status.upper()},
        },
    )
    return RunOutcome(subject, message, str(response["MessageId"]), data)
