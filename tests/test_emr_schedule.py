"""The EventBridge Scheduler schedules (daily run, weekly maintenance) against a moto server:
created with the right expression and universal target, updated (not duplicated) by a second
`schedule`."""

from __future__ import annotations

import json
from datetime import date

import pytest

import moto_server
from lakehouse.emr.schedule import UNIVERSAL_TARGET, processing_date
from moto_server import run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"


def test_schedule_starts_the_daily_run_at_two_utc(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "schedule", "--env", "dev"], monkeypatch) == 0

    scheduler = moto_server.client(moto, "scheduler")
    (app,) = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    schedule = scheduler.get_schedule(Name="lakehouse-dev-daily", GroupName="default")
    assert schedule["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["State"] == "ENABLED"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert (
        target["Arn"]
        == UNIVERSAL_TARGET
        == ("arn:aws:scheduler:::aws-sdk:emrserverless:startJobRun")
    )
    assert target["RoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-dev-scheduler"
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3}
    assert target["DeadLetterConfig"] == {
        "Arn": "arn:aws:sqs:eu-west-1:123456789012:lakehouse-dev-scheduler-dlq"
    }
    run = json.loads(target["Input"])
    assert run["applicationId"] == app["id"]
    assert run["executionRoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"
    assert run["clientToken"] == "<aws.scheduler.execution-id>"
    assert run["name"] == "daily-pipeline-scheduled-<aws.scheduler.scheduled-time>"
    assert run["retryPolicy"] == {"maxAttempts": 2}
    assert run["executionTimeoutMinutes"] == 240
    assert run["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/pipeline.py"
    assert run["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--env",
        "dev",
        "--scheduled-time",
        "<aws.scheduler.scheduled-time>",
    ]
    assert run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"].startswith(
        f"--py-files {ARTIFACTS}/pyfiles.zip --jars {ARTIFACTS}/jars/deequ-2.0.7-spark-3.5.jar,"
    )


def test_schedule_also_starts_the_maintenance_every_sunday(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "schedule", "--env", "dev"], monkeypatch) == 0

    scheduler = moto_server.client(moto, "scheduler")
    daily = scheduler.get_schedule(Name="lakehouse-dev-daily", GroupName="default")
    weekly = scheduler.get_schedule(Name="lakehouse-dev-maintenance", GroupName="default")
    assert weekly["ScheduleExpression"] == "cron(0 4 ? * SUN *)"
    assert weekly["ScheduleExpressionTimezone"] == "UTC"
    assert weekly["State"] == "ENABLED"
    for same in ("Arn", "RoleArn", "RetryPolicy", "DeadLetterConfig"):
        assert weekly["Target"][same] == daily["Target"][same]
    run = json.loads(weekly["Target"]["Input"])
    assert run["name"] == "maintenance-scheduled-<aws.scheduler.scheduled-time>"
    assert run["clientToken"] == "<aws.scheduler.execution-id>"
    assert run["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/maintain.py"
    assert run["jobDriver"]["sparkSubmit"]["entryPointArguments"] == ["--env", "dev"]
    daily_run = json.loads(daily["Target"]["Input"])
    assert (
        run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
        == (daily_run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])
    )


def test_second_schedule_call_updates_rather_than_duplicates(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "schedule", "--env", "dev"], monkeypatch) == 0
    scheduler = moto_server.client(moto, "scheduler")
    # Someone changed the schedule by hand; `schedule` puts the definition back in place.
    current = scheduler.get_schedule(Name="lakehouse-dev-daily")
    scheduler.update_schedule(
        Name="lakehouse-dev-daily",
        ScheduleExpression="cron(0 5 * * ? *)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=current["Target"],
    )

    assert run_cli(["emr", "schedule", "--env", "dev"], monkeypatch) == 0

    names = sorted(s["Name"] for s in scheduler.list_schedules()["Schedules"])
    assert names == ["lakehouse-dev-daily", "lakehouse-dev-maintenance"]
    assert scheduler.get_schedule(Name="lakehouse-dev-daily")["ScheduleExpression"] == (
        "cron(0 2 * * ? *)"
    )
    apps = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    assert len(apps) == 1


@pytest.mark.parametrize(
    ("scheduled_time", "expected"),
    [
        ("2024-01-04T02:00:00Z", date(2024, 1, 3)),
        ("2024-03-01T02:00:00+00:00", date(2024, 2, 29)),
        ("2024-01-01T00:30:00+02:00", date(2023, 12, 30)),
    ],
)
def test_a_scheduled_run_processes_the_previous_utc_day(
    scheduled_time: str, expected: date
) -> None:
    assert processing_date(scheduled_time) == expected
