"""Alarms, the deadline heartbeat and the dashboard against a moto server: created from
emr/monitoring.yaml as defined, and the same after a second `emr monitoring`. moto stores metric
alarms but never evaluates them, and has no composite alarms (the command's request is checked as
sent): the alarms' behaviour rests on their definitions."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

import moto_server
from moto_server import run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

TOPIC = "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs"
ENV = [{"Name": "Env", "Value": "dev"}]


@pytest.fixture
def composite(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """PutCompositeAlarm as sent: moto does not implement it, so the command's CloudWatch client
    answers it itself (botocore's `before-call` hook) after recording the parameters."""
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    def answer(**_: Any) -> tuple[Any, dict[str, Any]]:
        return SimpleNamespace(status_code=200), {}

    def clients_with_stub(config: Any) -> Any:
        clients = moto_server.aws_clients(config)
        events = clients.client("cloudwatch").meta.events
        events.register("provide-client-params.cloudwatch.PutCompositeAlarm", record)
        events.register("before-call.cloudwatch.PutCompositeAlarm", answer)
        return clients

    monkeypatch.setattr("lakehouse.cli.emr._clients", clients_with_stub)
    return sent


def _alarms(moto: str) -> dict[str, dict[str, Any]]:
    alarms = moto_server.client(moto, "cloudwatch").describe_alarms()["MetricAlarms"]
    return {a["AlarmName"]: a for a in alarms}


def test_monitoring_creates_the_five_alarms_on_the_topic(
    moto: str, monkeypatch: pytest.MonkeyPatch, composite: list[dict[str, Any]]
) -> None:
    assert run_cli(["emr", "monitoring", "--env", "dev"], monkeypatch) == 0

    alarms = _alarms(moto)
    assert sorted(alarms) == [
        "lakehouse-dev-deadline-now",
        "lakehouse-dev-error-check-failed",
        "lakehouse-dev-gold-stale",
        "lakehouse-dev-no-gold-2h",
        "lakehouse-dev-quarantine-rate",
        "lakehouse-dev-run-failed",
    ]
    notifying = {n for n, a in alarms.items() if a["ActionsEnabled"]}
    assert notifying == {
        "lakehouse-dev-error-check-failed",
        "lakehouse-dev-gold-stale",
        "lakehouse-dev-quarantine-rate",
        "lakehouse-dev-run-failed",
    }
    assert {alarms[n]["AlarmActions"][0] for n in notifying} == {TOPIC}

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
    # The late-run alarm: no gold step in the last two hours (24 five-minute periods, sliding)
    # while the 03:59 heartbeat has just come; only the composite notifies.
    assert shape("lakehouse-dev-no-gold-2h") == (
        "GoldUpToDate", "Sum", 300, 24, "LessThanThreshold", 1.0, "breaching"
    )  # fmt: skip
    assert alarms["lakehouse-dev-no-gold-2h"]["DatapointsToAlarm"] == 24
    assert shape("lakehouse-dev-deadline-now") == (
        "DeadlineCheck", "Sum", 300, 1, "GreaterThanOrEqualToThreshold", 1.0, "notBreaching"
    )  # fmt: skip
    assert composite == [
        {
            "AlarmName": "lakehouse-dev-daily-run-late",
            "AlarmDescription": "The daily run of dev had not finished by the deadline "
            "(cron(59 3 * * ? *) UTC).",
            "AlarmRule": 'ALARM("lakehouse-dev-no-gold-2h") AND '
            'ALARM("lakehouse-dev-deadline-now")',
            "AlarmActions": [TOPIC],
            "ActionsEnabled": True,
        }
    ]


def a_dims(alarm: dict[str, Any]) -> list[dict[str, str]]:
    dims: list[dict[str, str]] = alarm["Dimensions"]
    return dims


def test_the_deadline_heartbeat_puts_its_metric_at_three_fifty_nine(
    moto: str, monkeypatch: pytest.MonkeyPatch, composite: list[dict[str, Any]]
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
    moto: str, monkeypatch: pytest.MonkeyPatch, composite: list[dict[str, Any]]
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
    assert widgets[2]["properties"]["metrics"] == [
        [
            {
                "expression": 'SEARCH(\'{Lakehouse,Env,Step} MetricName="StepDurationSeconds" '
                "Env=\"dev\"', 'Maximum', 86400)",
                "id": "stepdurationseconds",
            }
        ]
    ]
    assert widgets[1]["properties"]["metrics"] == [
        ["Lakehouse", "RunSucceeded", "Env", "dev"],
        ["Lakehouse", "RunFailed", "Env", "dev"],
    ]
    assert widgets[7]["properties"]["annotations"] == {
        "horizontal": [{"value": 26, "label": "alarm"}]
    }
    assert all(w["x"] + w["width"] <= 24 for w in widgets)


def test_monitoring_twice_leaves_the_same_alarms_schedule_and_dashboard(
    moto: str, monkeypatch: pytest.MonkeyPatch, composite: list[dict[str, Any]]
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
