"""Alarms, the deadline heartbeat and the dashboard against a moto server: created from
emr/monitoring.yaml as defined, and the same after a second `emr monitoring`. moto stores alarms
but never evaluates them (nor metric math): the alarms' behaviour rests on their definitions."""

from __future__ import annotations

import json
from typing import Any

import pytest

import moto_server
from moto_server import run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

TOPIC = "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs"
ENV = [{"Name": "Env", "Value": "dev"}]


def _alarms(moto: str) -> dict[str, dict[str, Any]]:
    alarms = moto_server.client(moto, "cloudwatch").describe_alarms()["MetricAlarms"]
    return {a["AlarmName"]: a for a in alarms}


def test_monitoring_creates_the_five_alarms_on_the_topic(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "monitoring", "--env", "dev"], monkeypatch) == 0

    alarms = _alarms(moto)
    assert sorted(alarms) == [
        "lakehouse-dev-daily-run-late",
        "lakehouse-dev-error-check-failed",
        "lakehouse-dev-gold-stale",
        "lakehouse-dev-quarantine-rate",
        "lakehouse-dev-run-failed",
    ]
    assert {a["AlarmActions"][0] for a in alarms.values()} == {TOPIC}

    def shape(name: str) -> tuple[Any, ...]:
        a = alarms[name]
        return (
            a.get("MetricName"),
            a.get("Statistic"),
            a.get("Period"),
            a["EvaluationPeriods"],
            a["ComparisonOperator"],
            a["Threshold"],
            a["TreatMissingData"],
        )

    assert a_dims(alarms["lakehouse-dev-run-failed"]) == ENV
    assert shape("lakehouse-dev-run-failed") == (
        "RunFailed", "Sum", 300, 1, "GreaterThanOrEqualToThreshold", 1.0, "notBreaching"
    )  # fmt: skip
    assert shape("lakehouse-dev-error-check-failed") == (
        "QualityChecksFailed", "Sum", 300, 1, "GreaterThanOrEqualToThreshold", 1.0, "notBreaching"
    )  # fmt: skip
    assert shape("lakehouse-dev-quarantine-rate") == (
        "QuarantineRatePercent", "Maximum", 300, 1, "GreaterThanThreshold", 5.0, "notBreaching"
    )  # fmt: skip
    # 26 hours without a successful gold step, missing data counting against it.
    assert shape("lakehouse-dev-gold-stale") == (
        "GoldUpToDate", "Sum", 3600, 26, "LessThanThreshold", 1.0, "breaching"
    )  # fmt: skip
    assert alarms["lakehouse-dev-gold-stale"]["DatapointsToAlarm"] == 26
    late = {m["Id"]: m for m in alarms["lakehouse-dev-daily-run-late"]["Metrics"]}
    assert late["late"]["Expression"] == "IF(FILL(check, 0) > 0 AND FILL(done, 0) == 0, 1, 0)"
    assert late["check"]["MetricStat"]["Metric"]["MetricName"] == "DeadlineCheck"
    assert late["done"]["MetricStat"]["Metric"]["MetricName"] == "GoldUpToDate"
    assert {late[i]["MetricStat"]["Period"] for i in ("check", "done")} == {7200}


def a_dims(alarm: dict[str, Any]) -> list[dict[str, str]]:
    dims: list[dict[str, str]] = alarm["Dimensions"]
    return dims


def test_the_deadline_heartbeat_puts_its_metric_at_three_fifty_nine(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "monitoring", "--env", "dev"], monkeypatch) == 0

    schedule = moto_server.client(moto, "scheduler").get_schedule(Name="lakehouse-dev-deadline")
    assert schedule["ScheduleExpression"] == "cron(59 3 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    target = schedule["Target"]
    assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:cloudwatch:putMetricData"
    assert target["RoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-dev-scheduler"
    assert json.loads(target["Input"]) == {
        "Namespace": "Lakehouse",
        "MetricData": [
            {"MetricName": "DeadlineCheck", "Dimensions": ENV, "Value": 1, "Unit": "Count"}
        ],
    }
    # What the schedule will send is a valid PutMetricData request.
    moto_server.client(moto, "cloudwatch").put_metric_data(**json.loads(target["Input"]))


def test_the_dashboard_shows_alarms_runs_steps_sources_quality_and_gold(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "monitoring", "--env", "dev"], monkeypatch) == 0

    body = json.loads(
        moto_server.client(moto, "cloudwatch").get_dashboard(DashboardName="lakehouse-dev")[
            "DashboardBody"
        ]
    )
    widgets = body["widgets"]
    assert [w["properties"]["title"] for w in widgets] == [
        "lakehouse dev: alarms",
        "Runs succeeded and failed",
        "Step duration (seconds)",
        "Records read by source",
        "Records quarantined by source",
        "Quality checks failed",
        "Quarantine rate (%)",
        "Gold freshness (hours since the last publish)",
        "Run duration (seconds)",
    ]
    assert widgets[0]["properties"]["alarms"] == [
        f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name}"
        for name in (
            "lakehouse-dev-run-failed",
            "lakehouse-dev-error-check-failed",
            "lakehouse-dev-quarantine-rate",
            "lakehouse-dev-daily-run-late",
            "lakehouse-dev-gold-stale",
        )
    ]
    assert widgets[7]["properties"]["annotations"] == {
        "horizontal": [{"value": 26, "label": "alarm"}]
    }
    assert all(w["x"] + w["width"] <= 24 for w in widgets)


def test_monitoring_twice_leaves_the_same_alarms_schedule_and_dashboard(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "monitoring", "--env", "dev"], monkeypatch) == 0
    first = _alarms(moto)
    cloudwatch = moto_server.client(moto, "cloudwatch")
    # Someone loosened an alarm by hand; `monitoring` puts the definition back.
    cloudwatch.put_metric_alarm(
        **{
            k: first["lakehouse-dev-run-failed"][k]
            for k in ("AlarmName", "Namespace", "MetricName", "Dimensions", "Statistic", "Period")
        },
        EvaluationPeriods=1,
        Threshold=5.0,
        ComparisonOperator="GreaterThanThreshold",
    )

    assert run_cli(["emr", "monitoring", "--env", "dev"], monkeypatch) == 0

    second = _alarms(moto)
    assert sorted(second) == sorted(first)
    assert second["lakehouse-dev-run-failed"]["Threshold"] == 1.0
    schedules = moto_server.client(moto, "scheduler").list_schedules()["Schedules"]
    assert [s["Name"] for s in schedules] == ["lakehouse-dev-deadline"]
    assert [d["DashboardName"] for d in cloudwatch.list_dashboards()["DashboardEntries"]] == [
        "lakehouse-dev"
    ]
