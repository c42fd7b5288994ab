"""CloudWatch alarms and dashboard of an environment, from `emr/monitoring.yaml`, on the metrics
every job publishes (`lakehouse.emr.notify`); `lakehouse emr monitoring --env ENV` creates them or
puts them back as defined (PutMetricAlarm and PutDashboard replace by name; the heartbeat schedule
is created or updated in place), so running it again changes nothing.

Alarms, each notifying the environment's SNS topic:

- `<prefix>-run-failed`: any job failed (`RunFailed`);
- `<prefix>-error-check-failed`: an error-severity quality check failed (`QualityChecksFailed`);
- `<prefix>-quarantine-rate`: a run quarantined more than `quarantine_rate_percent` of what it read;
- `<prefix>-daily-run-late`: the daily run had not finished by the deadline. CloudWatch has no
  time-of-day condition, so this is a composite alarm of two silent ones: `<prefix>-no-gold-2h`
  (no `GoldUpToDate`, what a successful gold step puts, in the last `lookback_hours`, a sliding
  window of 5-minute periods) and `<prefix>-deadline-now` (a `DeadlineCheck` in the last 5
  minutes, put by a heartbeat schedule, EventBridge Scheduler calling PutMetricData directly at
  03:59 UTC). Both are in alarm together only just after the deadline, and only if no gold step
  succeeded in the hours before it;
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


def _env(config: Config) -> list[dict[str, str]]:
    return [{"Name": "Env", "Value": config.env}]


def alarm_names(defs: EmrDefinitions) -> list[str]:
    """The alarms that notify, in the order of the module docstring."""
    p = defs.monitoring.alarm_prefix
    return [
        f"{p}-run-failed",
        f"{p}-error-check-failed",
        f"{p}-quarantine-rate",
        f"{p}-daily-run-late",
        f"{p}-gold-stale",
    ]


def deadline_parts(defs: EmrDefinitions) -> tuple[str, str]:
    """The two silent alarms the late-run composite alarm combines."""
    p = defs.monitoring.alarm_prefix
    return f"{p}-no-gold-{defs.monitoring.deadline.lookback_hours}h", f"{p}-deadline-now"


def alarm_params(config: Config, defs: EmrDefinitions) -> list[dict[str, Any]]:
    """The PutMetricAlarm parameters of every metric alarm (see the module docstring); the
    late-run alarm's two parts come before `composite_params` combines them."""
    m, ns, env = defs.monitoring, defs.account.metrics_namespace, _env(config)
    run_failed, error_check, quarantine, _, stale = alarm_names(defs)
    no_gold, deadline_now = deadline_parts(defs)
    notify = {"AlarmActions": [defs.account.sns_topic_arn], "ActionsEnabled": True}

    def alarm(name: str, metric: str, stat: str, **rest: Any) -> dict[str, Any]:
        return {
            "AlarmName": name,
            "Namespace": ns,
            "MetricName": metric,
            "Dimensions": env,
            "Statistic": stat,
            "Period": 300,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **rest,
        }

    lookback = m.deadline.lookback_hours * 12  # 5-minute periods
    return [
        alarm(
            run_failed,
            "RunFailed",
            "Sum",
            AlarmDescription=f"A lakehouse job of {config.env} failed; its SNS message says "
            "which step and why.",
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            **notify,
        ),
        alarm(
            error_check,
            "QualityChecksFailed",
            "Sum",
            AlarmDescription=f"An error-severity quality check failed in {config.env}: "
            "publication was blocked (see the run's quality report).",
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            **notify,
        ),
        alarm(
            quarantine,
            "QuarantineRatePercent",
            "Maximum",
            AlarmDescription=f"A run of {config.env} quarantined more than "
            f"{m.quarantine_rate_percent:g}% of the records it read.",
            Threshold=float(m.quarantine_rate_percent),
            ComparisonOperator="GreaterThanThreshold",
            **notify,
        ),
        alarm(
            no_gold,
            "GoldUpToDate",
            "Sum",
            AlarmDescription=f"No successful gold step of {config.env} in the last "
            f"{m.deadline.lookback_hours} hours (part of the late-run alarm; notifies nobody).",
            EvaluationPeriods=lookback,
            DatapointsToAlarm=lookback,
            Threshold=1.0,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="breaching",
            ActionsEnabled=False,
        ),
        alarm(
            deadline_now,
            "DeadlineCheck",
            "Sum",
            AlarmDescription=f"The daily run's deadline ({m.deadline.expression} UTC) has just "
            "passed (part of the late-run alarm; notifies nobody).",
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            ActionsEnabled=False,
        ),
        alarm(
            stale,
            "GoldUpToDate",
            "Sum",
            AlarmDescription=f"Gold of {config.env} not brought up to date for "
            f"{m.gold_max_age_hours} hours (no run, a failed run, or a driver that died).",
            Period=3600,
            EvaluationPeriods=m.gold_max_age_hours,
            DatapointsToAlarm=m.gold_max_age_hours,
            Threshold=1.0,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="breaching",
            **notify,
        ),
    ]


def composite_params(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """PutCompositeAlarm of the late-run alarm: both of `deadline_parts` in alarm at once."""
    no_gold, deadline_now = deadline_parts(defs)
    return {
        "AlarmName": alarm_names(defs)[3],
        "AlarmDescription": f"The daily run of {config.env} had not finished by the deadline "
        f"({defs.monitoring.deadline.expression} UTC).",
        "AlarmRule": f'ALARM("{no_gold}") AND ALARM("{deadline_now}")',
        "AlarmActions": [defs.account.sns_topic_arn],
        "ActionsEnabled": True,
    }


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
        # A dashboard's `metrics` is a list of arrays; an expression is an array of one object.
        return [[{"expression": f"SEARCH('{query}', '{stat}', {day})", "id": metric.lower()}]]

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
        Request("cloudwatch", "put_composite_alarm", composite_params(config, defs)),
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
    composite = composite_params(config, defs)
    clients.call(Request("cloudwatch", "put_composite_alarm", composite))
    log(f"alarm {composite['AlarmName']} ({composite['AlarmRule']})")
    upsert_one(clients, defs.schedule.group, heartbeat_params(config, defs), log)
    clients.call(dashboard_request(config, defs))
    log(f"dashboard {defs.monitoring.dashboard}")
