"""CloudWatch alarms and dashboard of an environment, from `emr/monitoring.yaml`, on the metrics
every job publishes (`lakehouse.emr.notify`); `lakehouse emr monitoring --env ENV` creates them or
puts them back as defined (PutMetricAlarm and PutDashboard replace by name; the heartbeat schedule
is created or updated in place), so running it again changes nothing.

Alarms, each notifying the environment's SNS topic:

- `<prefix>-run-failed`: any job failed (`RunFailed`);
- `<prefix>-error-check-failed`: an error-severity quality check failed (`QualityChecksFailed`);
- `<prefix>-quarantine-rate`: a run quarantined more than `quarantine_rate_percent` of what it read;
- `<prefix>-daily-run-late`: the daily run had not finished by the deadline. CloudWatch has no
  time-of-day condition, so a heartbeat schedule (EventBridge Scheduler calling PutMetricData
  directly at 03:59 UTC) puts `DeadlineCheck`, and the alarm's expression is 1 when a
  `bucket_hours` period (aligned to UTC midnight: 02:00-04:00) holds the heartbeat but no
  `GoldUpToDate` (what a successful gold step puts);
- `<prefix>-gold-stale`: no `GoldUpToDate` for `gold_max_age_hours` hours, missing data counting as
  breaching: this is also what a run that never started, or a driver killed from outside (which
  publishes nothing), looks like.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lakehouse.core.config import Config
from lakehouse.emr.clients import AwsClients, Request
from lakehouse.emr.definitions import EmrDefinitions
from lakehouse.emr.schedule import upsert_one, upsert_plan

PUT_METRIC_DATA_TARGET = "arn:aws:scheduler:::aws-sdk:cloudwatch:putMetricData"
LATE_EXPRESSION = "IF(FILL(check, 0) > 0 AND FILL(done, 0) == 0, 1, 0)"


def _env(config: Config) -> list[dict[str, str]]:
    return [{"Name": "Env", "Value": config.env}]


def alarm_names(defs: EmrDefinitions) -> list[str]:
    p = defs.monitoring.alarm_prefix
    return [
        f"{p}-run-failed",
        f"{p}-error-check-failed",
        f"{p}-quarantine-rate",
        f"{p}-daily-run-late",
        f"{p}-gold-stale",
    ]


def alarm_params(config: Config, defs: EmrDefinitions) -> list[dict[str, Any]]:
    """The PutMetricAlarm parameters of every alarm (see the module docstring)."""
    m, ns, env = defs.monitoring, defs.account.metrics_namespace, _env(config)
    run_failed, error_check, quarantine, late, stale = alarm_names(defs)
    common = {"AlarmActions": [defs.account.sns_topic_arn], "ActionsEnabled": True}

    def simple(name: str, metric: str, stat: str, **rest: Any) -> dict[str, Any]:
        return {
            "AlarmName": name,
            "Namespace": ns,
            "MetricName": metric,
            "Dimensions": env,
            "Statistic": stat,
            "Period": 300,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **common,
            **rest,
        }

    def stat(metric_id: str, metric: str, period: int) -> dict[str, Any]:
        return {
            "Id": metric_id,
            "MetricStat": {
                "Metric": {"Namespace": ns, "MetricName": metric, "Dimensions": env},
                "Period": period,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    bucket = m.deadline.bucket_hours * 3600
    return [
        simple(
            run_failed,
            "RunFailed",
            "Sum",
            AlarmDescription=f"A lakehouse job of {config.env} failed; its SNS message says "
            "which step and why.",
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        ),
        simple(
            error_check,
            "QualityChecksFailed",
            "Sum",
            AlarmDescription=f"An error-severity quality check failed in {config.env}: "
            "publication was blocked (see the run's quality report).",
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        ),
        simple(
            quarantine,
            "QuarantineRatePercent",
            "Maximum",
            AlarmDescription=f"A run of {config.env} quarantined more than "
            f"{m.quarantine_rate_percent:g}% of the records it read.",
            Threshold=float(m.quarantine_rate_percent),
            ComparisonOperator="GreaterThanThreshold",
        ),
        {
            "AlarmName": late,
            "AlarmDescription": f"The daily run of {config.env} had not finished by the deadline "
            f"({m.deadline.expression} UTC): no GoldUpToDate beside the DeadlineCheck heartbeat.",
            "Metrics": [
                stat("check", "DeadlineCheck", bucket),
                stat("done", "GoldUpToDate", bucket),
                {"Id": "late", "Expression": LATE_EXPRESSION, "Label": "late", "ReturnData": True},
            ],
            "EvaluationPeriods": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            **common,
        },
        {
            "AlarmName": stale,
            "AlarmDescription": f"Gold of {config.env} not brought up to date for "
            f"{m.gold_max_age_hours} hours (no run, a failed run, or a driver that died).",
            "Namespace": ns,
            "MetricName": "GoldUpToDate",
            "Dimensions": env,
            "Statistic": "Sum",
            "Period": 3600,
            "EvaluationPeriods": m.gold_max_age_hours,
            "DatapointsToAlarm": m.gold_max_age_hours,
            "Threshold": 1.0,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
            **common,
        },
    ]


def heartbeat_params(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """The deadline heartbeat: EventBridge Scheduler putting `DeadlineCheck` (1) directly."""
    d, s = defs.monitoring.deadline, defs.schedule
    data = {
        "Namespace": defs.account.metrics_namespace,
        "MetricData": [
            {"MetricName": "DeadlineCheck", "Dimensions": _env(config), "Value": 1, "Unit": "Count"}
        ],
    }
    return {
        "Name": d.schedule_name,
        "GroupName": s.group,
        "ScheduleExpression": d.expression,
        "ScheduleExpressionTimezone": "UTC",
        "Description": f"Deadline heartbeat of the lakehouse {config.env} daily run",
        "State": "ENABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": PUT_METRIC_DATA_TARGET,
            "RoleArn": defs.account.scheduler_role_arn,
            "Input": json.dumps(data, sort_keys=True),
            "RetryPolicy": {
                "MaximumEventAgeInSeconds": s.retry.maximum_event_age_seconds,
                "MaximumRetryAttempts": s.retry.maximum_retry_attempts,
            },
            "DeadLetterConfig": {"Arn": defs.account.dlq_arn},
        },
    }


def dashboard_body(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """The CloudWatch dashboard: alarm states, runs, steps, sources, quality, quarantine, gold."""
    assert config.aws is not None
    ns, env, region = defs.account.metrics_namespace, config.env, config.aws.region
    m = defs.monitoring
    arn = f"arn:aws:cloudwatch:{region}:{defs.account.account_id}:alarm"
    day = 86400

    def search(metric: str, dims: str, stat: str) -> list[Any]:
        query = f'{{{ns},{dims}}} MetricName="{metric}" Env="{env}"'
        return [{"expression": f"SEARCH('{query}', '{stat}', {day})", "id": metric.lower()}]

    def chart(title: str, metrics: list[Any], x: int, y: int, **extra: Any) -> dict[str, Any]:
        props = {"title": title, "region": region, "view": "timeSeries", "period": day}
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {**props, "metrics": metrics, **extra},
        }

    def line(value: float, label: str) -> dict[str, Any]:
        return {"horizontal": [{"value": value, "label": label}]}

    widgets = [
        {
            "type": "alarm",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 3,
            "properties": {
                "title": f"lakehouse {env}: alarms",
                "alarms": [f"{arn}:{name}" for name in alarm_names(defs)],
            },
        },
        chart(
            "Runs succeeded and failed",
            [[ns, "RunSucceeded", "Env", env], [ns, "RunFailed", "Env", env]],
            0,
            3,
            stat="Sum",
        ),
        chart(
            "Step duration (seconds)", search("StepDurationSeconds", "Env,Step", "Maximum"), 12, 3
        ),
        chart("Records read by source", search("RecordsRead", "Env,Layer,Source", "Sum"), 0, 9),
        chart(
            "Records quarantined by source",
            search("RecordsQuarantined", "Env,Layer,Source", "Sum"),
            12,
            9,
        ),
        chart(
            "Quality checks failed",
            [[ns, "QualityChecksFailed", "Env", env], [ns, "QualityWarningsFailed", "Env", env]],
            0,
            15,
            stat="Sum",
        ),
        chart(
            "Quarantine rate (%)",
            [[ns, "QuarantineRatePercent", "Env", env]],
            12,
            15,
            stat="Maximum",
            annotations=line(m.quarantine_rate_percent, "alarm"),
        ),
        chart(
            "Gold freshness (hours since the last publish)",
            [[ns, "GoldFreshnessHours", "Env", env]],
            0,
            21,
            stat="Maximum",
            annotations=line(m.gold_max_age_hours, "alarm"),
        ),
        chart(
            "Run duration (seconds)",
            [[ns, "RunDurationSeconds", "Env", env]],
            12,
            21,
            stat="Maximum",
        ),
    ]
    return {"widgets": widgets}


def dashboard_request(config: Config, defs: EmrDefinitions) -> Request:
    body = json.dumps(dashboard_body(config, defs), sort_keys=True)
    return Request(
        "cloudwatch",
        "put_dashboard",
        {"DashboardName": defs.monitoring.dashboard, "DashboardBody": body},
    )


def monitoring_plan(config: Config, defs: EmrDefinitions) -> list[Request]:
    """Every request `apply_monitoring` sends, in order, for `--dry-run`."""
    return [
        *(Request("cloudwatch", "put_metric_alarm", p) for p in alarm_params(config, defs)),
        *upsert_plan(defs.schedule.group, heartbeat_params(config, defs)),
        dashboard_request(config, defs),
    ]


def apply_monitoring(
    clients: AwsClients, config: Config, defs: EmrDefinitions, log: Callable[[str], None] = print
) -> None:
    """Create or put back the alarms, the deadline heartbeat and the dashboard."""
    for params in alarm_params(config, defs):
        clients.call(Request("cloudwatch", "put_metric_alarm", params))
        log(f"alarm {params['AlarmName']}")
    upsert_one(clients, defs.schedule.group, heartbeat_params(config, defs), log)
    clients.call(dashboard_request(config, defs))
    log(f"dashboard {defs.monitoring.dashboard}")
