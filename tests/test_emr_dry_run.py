"""`--dry-run` on every `lakehouse emr` command: it prints the requests, as JSON, and sends none.

Nothing may reach AWS (or the moto server standing in for it): botocore's sending is made to fail
for the whole test, and moto is checked to hold nothing afterwards. For `cluster up` and `run`, the
printed request is also compared with the one the real command then sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.endpoint
import pytest

import moto_server
from moto_server import capture, run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"


def _dry_run(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Any, requests: bool = True
) -> list[dict[str, Any]]:
    sent: list[str] = []

    def refuse(self: Any, request: Any) -> Any:
        sent.append(request.url)
        raise AssertionError(f"a dry run sent a request: {request.url}")

    with monkeypatch.context() as patch:
        patch.setattr(botocore.endpoint.Endpoint, "_send", refuse)
        assert run_cli([*argv, "--dry-run"], monkeypatch) == 0
    assert sent == []
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("# dry run: nothing is sent") for line in lines)
    if not requests:
        return []
    return [json.loads(line) for line in lines if line and not line.startswith("#")]


def _moto_is_empty(url: str) -> None:
    assert moto_server.client(url, "emr").list_clusters()["Clusters"] == []
    assert moto_server.client(url, "emr-serverless").list_applications()["applications"] == []
    assert moto_server.client(url, "scheduler").list_schedules()["Schedules"] == []
    assert moto_server.client(url, "s3").list_buckets()["Buckets"] == []


def _ops(requests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["service"], r["operation"]) for r in requests]


def test_cluster_up_dry_run_prints_the_exact_request_and_sends_nothing(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    printed = _dry_run(["emr", "cluster", "up", "--env", "dev"], monkeypatch, capsys)

    assert _ops(printed) == [
        ("emr", "ListClusters"),
        ("emr", "DescribeSecurityConfiguration"),
        ("emr", "CreateSecurityConfiguration"),
        ("emr", "RunJobFlow"),
    ]
    assert printed[3]["when"] == "only if no active cluster is named 'lakehouse-dev'"
    _moto_is_empty(moto)

    # The real command sends exactly what the dry run printed.
    captured: list[list[dict[str, Any]]] = []

    def clients_with_capture(config: Any) -> Any:
        clients = moto_server.aws_clients(config)
        captured.append(capture(clients.client("emr"), "RunJobFlow"))
        return clients

    monkeypatch.setattr("lakehouse.cli.emr._clients", clients_with_capture)
    assert run_cli(["emr", "cluster", "up", "--env", "dev"], monkeypatch) == 0
    (request,) = captured[0]
    assert request == printed[3]["params"]


def test_cluster_down_and_steps_dry_runs_send_nothing(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    down = _dry_run(["emr", "cluster", "down", "--env", "dev"], monkeypatch, capsys)
    steps = _dry_run(
        ["emr", "steps", "--env", "dev", "--date", "2024-01-03", "--cluster-id", "j-ABC"],
        monkeypatch,
        capsys,
    )

    assert _ops(down) == [("emr", "ListClusters"), ("emr", "TerminateJobFlows")]
    assert down[1]["params"] == {"JobFlowIds": ["<id of the active cluster named 'lakehouse-dev'>"]}
    assert _ops(steps) == [("emr", "ListSteps"), ("emr", "AddJobFlowSteps")]
    assert steps[1]["params"]["JobFlowId"] == "j-ABC"
    assert [s["Name"] for s in steps[1]["params"]["Steps"]] == [
        "bronze 2024-01-03",
        "silver 2024-01-03",
        "quality 2024-01-03",
        "gold 2024-01-03",
    ]
    _moto_is_empty(moto)


def test_run_dry_run_prints_the_job_run_that_the_real_run_sends(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    printed = _dry_run(["emr", "run", "--env", "dev", "--date", "2024-01-03"], monkeypatch, capsys)

    assert _ops(printed) == [
        ("emr-serverless", "ListApplications"),
        ("emr-serverless", "CreateApplication"),
        ("emr-serverless", "ListJobRuns"),
        ("emr-serverless", "StartJobRun"),
        ("emr-serverless", "GetJobRun"),
        ("emr-serverless", "CancelJobRun"),
    ]
    start = printed[3]["params"]
    assert start["applicationId"] == "<id of application 'lakehouse-dev'>"
    assert start["name"] == "daily-pipeline-2024-01-03"
    assert start["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/pipeline.py"
    _moto_is_empty(moto)

    captured: list[list[dict[str, Any]]] = []

    def clients_with_capture(config: Any) -> Any:
        clients = moto_server.aws_clients(config)
        captured.append(capture(clients.client("emr-serverless"), "StartJobRun"))
        return clients

    monkeypatch.setattr("lakehouse.cli.emr._clients", clients_with_capture)
    assert run_cli(["emr", "run", "--env", "dev", "--date", "2024-01-03"], monkeypatch) == 0
    (request,) = captured[0]
    app_id = moto_server.client(moto, "emr-serverless").list_applications()["applications"][0]["id"]
    # The application id is the only value the dry run cannot know; it is not in the body (it is
    # part of the request's path).
    assert "applicationId" not in request
    assert request == {k: v for k, v in start.items() if k != "applicationId"}
    assert app_id


def test_schedule_and_backfill_dry_runs_send_nothing(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    schedule = _dry_run(["emr", "schedule", "--env", "dev"], monkeypatch, capsys)
    backfill = _dry_run(
        [
            "emr",
            "backfill",
            "--env",
            "dev",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--daily-runs",
        ],
        monkeypatch,
        capsys,
    )

    assert _ops(schedule) == [
        ("emr-serverless", "ListApplications"),
        ("emr-serverless", "CreateApplication"),
        ("scheduler", "GetSchedule"),
        ("scheduler", "UpdateSchedule"),
        ("scheduler", "CreateSchedule"),
        ("scheduler", "GetSchedule"),
        ("scheduler", "UpdateSchedule"),
        ("scheduler", "CreateSchedule"),
    ]
    assert schedule[4]["params"]["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert schedule[7]["params"]["Name"] == "lakehouse-dev-maintenance"
    assert schedule[7]["params"]["ScheduleExpression"] == "cron(0 4 ? * SUN *)"
    starts = [r for r in backfill if r["operation"] == "StartJobRun"]
    assert [r["params"]["name"] for r in starts] == [
        "daily-pipeline-2024-01-01",
        "daily-pipeline-2024-01-02",
    ]
    _moto_is_empty(moto)


def test_maintain_and_erase_dry_runs_print_the_job_and_step_they_would_start(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    erase = _dry_run(
        ["emr", "erase", "--env", "dev", "--customer", "C-42", "--request-id", "R-7"],
        monkeypatch,
        capsys,
    )
    step = _dry_run(
        ["emr", "maintain", "--env", "dev", "--cluster", "--cluster-id", "j-1"], monkeypatch, capsys
    )

    assert _ops(erase) == [
        ("emr-serverless", "ListApplications"),
        ("emr-serverless", "CreateApplication"),
        ("emr-serverless", "ListJobRuns"),
        ("emr-serverless", "StartJobRun"),
    ]
    run = erase[3]["params"]
    assert run["name"] == "erasure-R-7"
    assert run["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/erase.py"
    assert run["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--env", "dev", "--customer", "C-42", "--request-id", "R-7"
    ]  # fmt: skip
    assert _ops(step) == [("emr", "ListSteps"), ("emr", "AddJobFlowSteps")]
    (added,) = step[1]["params"]["Steps"]
    assert added["HadoopJarStep"]["Args"][-3:] == [f"{ARTIFACTS}/jobs/maintain.py", "--env", "dev"]
    _moto_is_empty(moto)


def test_monitoring_dry_run_prints_alarms_heartbeat_and_dashboard(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    printed = _dry_run(["emr", "monitoring", "--env", "dev"], monkeypatch, capsys)

    assert _ops(printed) == [
        *[("cloudwatch", "PutMetricAlarm")] * 6,
        ("cloudwatch", "PutCompositeAlarm"),
        ("scheduler", "GetSchedule"),
        ("scheduler", "UpdateSchedule"),
        ("scheduler", "CreateSchedule"),
        ("cloudwatch", "PutDashboard"),
    ]
    assert [r["params"]["AlarmName"] for r in printed[:7]] == [
        "lakehouse-dev-run-failed",
        "lakehouse-dev-error-check-failed",
        "lakehouse-dev-quarantine-rate",
        "lakehouse-dev-no-gold-2h",
        "lakehouse-dev-deadline-now",
        "lakehouse-dev-gold-stale",
        "lakehouse-dev-daily-run-late",
    ]
    _moto_is_empty(moto)
    assert moto_server.client(moto, "cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_upload_and_iam_dry_runs_send_nothing(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Path
) -> None:
    bundle = tmp_path / "lakehouse-0.1.0"
    (bundle / "jobs").mkdir(parents=True)
    (bundle / "jobs" / "pipeline.py").write_text("print('hi')\n")
    manifest = {
        "version": "0.1.0",
        "files": [{"path": "jobs/pipeline.py", "size": 12, "sha256": "ab" * 32}],
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    upload = _dry_run(
        ["emr", "upload", "--env", "dev", "--dist", str(tmp_path), "--bundle-version", "0.1.0"],
        monkeypatch,
        capsys,
    )
    _dry_run(["emr", "iam", "--env", "dev"], monkeypatch, capsys, requests=False)

    assert upload == [
        {
            "service": "s3",
            "operation": "PutObject",
            "params": {
                "Bucket": "lakehouse-dev-artifacts",
                "Key": "lakehouse/0.1.0/jobs/pipeline.py",
                "Body": f"<file {bundle / 'jobs' / 'pipeline.py'}, 12 bytes>",
                "Metadata": {"sha256": "ab" * 32},
            },
        },
        {
            "service": "s3",
            "operation": "PutObject",
            "params": {
                "Bucket": "lakehouse-dev-artifacts",
                "Key": "lakehouse/0.1.0/manifest.json",
                "Body": f"<file {bundle / 'manifest.json'}>",
                "ContentType": "application/json",
            },
        },
    ]
    _moto_is_empty(moto)


def test_stream_dry_runs_print_the_streaming_run_and_the_step_they_would_start(
    moto: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = _dry_run(["emr", "stream", "--env", "dev"], monkeypatch, capsys)
    step = _dry_run(
        ["emr", "stream", "--env", "dev", "--cluster", "--cluster-id", "j-1"], monkeypatch, capsys
    )

    assert _ops(run) == [
        ("emr-serverless", "ListApplications"),
        ("emr-serverless", "CreateApplication"),
        ("emr-serverless", "ListJobRuns"),
        ("emr-serverless", "StartJobRun"),
    ]
    assert (
        run[3]["when"]
        == "only if no run named 'stream-clickstream' is queued, running or succeeded"
    )
    params = run[3]["params"]
    assert (params["name"], params["mode"]) == ("stream-clickstream", "STREAMING")
    assert params["retryPolicy"] == {"maxFailedAttemptsPerHour": 5}
    assert params["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/stream.py"
    assert (
        "spark-streaming-sql-kinesis-connector.jar"
        in (params["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])
    )
    assert _ops(step) == [("emr", "ListSteps"), ("emr", "AddJobFlowSteps")]
    (added,) = step[1]["params"]["Steps"]
    assert (added["Name"], added["ActionOnFailure"]) == ("stream-clickstream", "CONTINUE")
    assert "spark.yarn.submit.waitAppCompletion=false" in added["HadoopJarStep"]["Args"]
    assert added["HadoopJarStep"]["Args"][-3:] == [f"{ARTIFACTS}/jobs/stream.py", "--env", "dev"]
    _moto_is_empty(moto)
