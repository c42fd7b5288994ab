"""The outcome of a job, told to people (an SNS message) and to dashboards and alarms (CloudWatch
metrics), whether the job succeeded or failed.

A job (`lakehouse.cli.jobs`) builds one `JobOutcome` in its `finally` path: the step that ran (or
failed), the outcome, the error in one line, the ledger rows the run wrote so far, every check
that failed by severity, the seconds of each step and the age of the published gold. On EMR the
submitters give the driver the topic ARN and the metrics namespace as environment variables
(`notification_target()`). A driver killed from outside (a timeout, the OOM killer) publishes
nothing: the alarms on missing data catch it (`lakehouse.emr.monitoring`).

Metrics, in the configured namespace (`Lakehouse` by default), all with dimension `Env`:

- per job, dimension `Job` (`pipeline`, `bronze`, ..., `maintain`, `erase`), and again with `Env`
  alone (what the alarms watch, whichever job it was): `RunSucceeded` and `RunFailed` (Count, 1 or
  0), `RunDurationSeconds`, `QualityChecksFailed` (error checks failed), `QualityWarningsFailed`
  (warning checks failed), `QuarantineRatePercent` (records quarantined in any layer per 100
  records the run took in);
- per step, dimension `Step` (`bronze`, `silver`, `quality (silver suites)`, `gold`, ...):
  `StepDurationSeconds`;
- per source, dimensions `Layer` and `Source`: `RecordsRead`, `RecordsWritten`,
  `RecordsQuarantined` (Count; ledger rows of the same layer and source are added up);
- `GoldFreshnessHours`: hours since the newest gold publish (when gold exists), and
  `GoldUpToDate` (1 when a job that ran the gold step succeeded: gold then holds everything
  landed, published or unchanged), which the late-run and stale-gold alarms watch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from lakehouse.emr.bundle import NAMESPACE_ENV, TOPIC_ENV
from lakehouse.emr.clients import AwsClients

METRICS_PER_REQUEST = 20  # PutMetricData's historical limit; any limit above it also accepts it
SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class LedgerFigures:
    """A run's ledger rows of one layer and source, added up."""

    layer: str
    source: str
    records_read: int
    records_written: int
    records_quarantined: int


@dataclass(frozen=True)
class CheckFailure:
    """A quality check that failed: `layer.table/check`, its severity and its message."""

    check: str
    severity: str
    message: str = ""


@dataclass(frozen=True)
class JobOutcome:
    """What a job tells when it ends (see the module docstring). `status` is `SUCCEEDED` or
    `FAILED`; `failed_step` the step that raised, `error` its exception in one line."""

    env: str
    job: str
    run_id: str
    status: str
    duration_s: float
    error: str | None = None
    failed_step: str | None = None
    steps: Mapping[str, float] = field(default_factory=dict)
    ledger: Sequence[LedgerFigures] = ()
    failures: Sequence[CheckFailure] = ()
    checks_passed: int = 0
    gold_age_hours: float | None = None
    gold_step: bool = False  # the job ran the gold step

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def failed(self, severity: str) -> list[CheckFailure]:
        return [f for f in self.failures if f.severity == severity]

    @property
    def quarantine_rate_percent(self) -> float:
        """Records quarantined in any layer per 100 records the run took in: read by bronze, or
        by the first layer it ran (a silver step), so a record read by two layers counts once."""
        layers = [f.layer for f in self.ledger]
        first = "bronze" if "bronze" in layers else (layers[0] if layers else None)
        read = sum(f.records_read for f in self.ledger if f.layer == first)
        quarantined = sum(f.records_quarantined for f in self.ledger)
        return 100.0 * quarantined / read if read else 0.0


@dataclass(frozen=True)
class PublishedOutcome:
    """What was published: the message, and the metric data sent to CloudWatch."""

    subject: str
    message: str
    message_id: str
    metric_data: list[dict[str, Any]]


def notification_target() -> tuple[str | None, str]:
    """The SNS topic ARN and metrics namespace the submitter gave the driver (topic None if not
    set, as in local runs)."""
    return os.environ.get(TOPIC_ENV) or None, os.environ.get(NAMESPACE_ENV) or "Lakehouse"


def ledger_figures(rows: Sequence[Mapping[str, Any]]) -> list[LedgerFigures]:
    """Ledger rows (dicts of the ledger's columns) added up per layer and source, in that order;
    written is `records_written`, or inserted + updated + deleted where a row has no such count."""
    sums: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        key = (str(row["layer"]), str(row["table_name"]))
        acc = sums.setdefault(key, [0, 0, 0])
        acc[0] += int(row.get("records_read") or 0)
        acc[1] += _written(row)
        acc[2] += int(row.get("quarantined") or 0)
    return [LedgerFigures(layer, src, *acc) for (layer, src), acc in sorted(sums.items())]


def _written(row: Mapping[str, Any]) -> int:
    """Rows a ledger row wrote: `records_written` (bronze), else the rows its MERGE inserted,
    updated and deleted (silver)."""
    if row.get("records_written") is not None:
        return int(row["records_written"])
    return sum(int(row.get(k) or 0) for k in ("inserted", "updated", "deleted"))


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def render_message(outcome: JobOutcome) -> tuple[str, str]:
    """The SNS subject (one ASCII line, at most 100 characters) and a plain-text body."""
    o = outcome
    errors, warnings = o.failed("error"), o.failed("warning")
    # What matters first: SNS cuts a subject at 100 characters, so the run id comes last.
    subject = f"[lakehouse {o.env}] {o.job} {o.status}"
    if o.failed_step:
        subject += f" in {o.failed_step}"
    if errors:
        subject += f", {len(errors)} error check(s) failed"
    subject += f" (run {o.run_id})"
    subject = subject.encode("ascii", "replace").decode()[:100]
    minutes, seconds = divmod(round(o.duration_s), 60)
    lines = [
        f"Lakehouse {o.job} run {o.run_id} in {o.env}: {o.status}",
        f"Duration: {minutes}m {seconds:02d}s",
    ]
    if o.failed_step:
        lines.append(f"Failed step: {o.failed_step}")
    if o.error:
        lines.append(f"Error: {o.error}")
    if o.steps:
        lines += ["", "Steps (seconds):"]
        lines += [f"  {name:<28} {secs:>9.1f}" for name, secs in o.steps.items()]
    lines += ["", "Ledger of the run so far:"]
    if o.ledger:
        lines.append(f"  {'layer.source':<28} {'read':>12} {'written':>12} {'quarantined':>12}")
        for f in o.ledger:
            name = f"{f.layer}.{f.source}"
            lines.append(
                f"  {name:<28} {f.records_read:>12,} {f.records_written:>12,} "
                f"{f.records_quarantined:>12,}"
            )
    else:
        lines.append("  (no ledger rows)")
    lines += [
        "",
        f"Quality: {o.checks_passed} passed, {len(warnings)} warning(s) failed, "
        f"{len(errors)} error(s) failed",
    ]
    for c in (*errors, *warnings):
        detail = f": {c.message}" if c.message else ""
        lines.append(f"  {c.severity.upper():<7} {c.check}{detail}")
    if o.gold_age_hours is not None:
        lines += ["", f"Gold published {o.gold_age_hours:.1f} hours ago"]
    return subject, "\n".join(lines) + "\n"


def metric_data(outcome: JobOutcome, timestamp: datetime) -> list[dict[str, Any]]:
    """The MetricData entries of a job (see the module docstring)."""
    o = outcome
    env = {"Name": "Env", "Value": o.env}
    job = [env, {"Name": "Job", "Value": o.job}]
    data = [
        _datum(name, dims, value, unit, timestamp)
        for dims in (job, [env])
        for name, value, unit in (
            ("RunSucceeded", 1 if o.succeeded else 0, "Count"),
            ("RunFailed", 0 if o.succeeded else 1, "Count"),
            ("RunDurationSeconds", o.duration_s, "Seconds"),
            ("QualityChecksFailed", len(o.failed("error")), "Count"),
            ("QualityWarningsFailed", len(o.failed("warning")), "Count"),
            ("QuarantineRatePercent", o.quarantine_rate_percent, "Percent"),
        )
    ]
    for step, seconds in o.steps.items():
        dims = [env, {"Name": "Step", "Value": step}]
        data.append(_datum("StepDurationSeconds", dims, seconds, "Seconds", timestamp))
    for f in o.ledger:
        dims = [env, {"Name": "Layer", "Value": f.layer}, {"Name": "Source", "Value": f.source}]
        data.append(_datum("RecordsRead", dims, f.records_read, "Count", timestamp))
        data.append(_datum("RecordsWritten", dims, f.records_written, "Count", timestamp))
        data.append(_datum("RecordsQuarantined", dims, f.records_quarantined, "Count", timestamp))
    if o.gold_age_hours is not None:
        data.append(_datum("GoldFreshnessHours", [env], o.gold_age_hours, "None", timestamp))
    if o.gold_step and o.succeeded:
        data.append(_datum("GoldUpToDate", [env], 1, "Count", timestamp))
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


def publish_outcome(
    clients: AwsClients | boto3.Session,
    topic_arn: str,
    outcome: JobOutcome,
    *,
    namespace: str = "Lakehouse",
    now: datetime | None = None,
) -> PublishedOutcome:
    """Put the job's metrics in CloudWatch and publish a readable summary to `topic_arn`.

    `clients` is this package's `AwsClients` (honours the configured endpoint) or a plain boto3
    session (on EMR, where the role's credentials and region are the defaults)."""
    sns = clients.client("sns")
    cloudwatch = clients.client("cloudwatch")
    subject, message = render_message(outcome)
    data = metric_data(outcome, now or datetime.now(UTC))
    for i in range(0, len(data), METRICS_PER_REQUEST):
        batch: Any = data[i : i + METRICS_PER_REQUEST]
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
    response = sns.publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=message,
        MessageAttributes={
            "env": {"DataType": "String", "StringValue": outcome.env},
            "job": {"DataType": "String", "StringValue": outcome.job},
            "status": {"DataType": "String", "StringValue": outcome.status},
        },
    )
    return PublishedOutcome(subject, message, str(response["MessageId"]), data)
