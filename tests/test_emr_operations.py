"""Operations jobs on EMR against a moto server: maintenance and erasure as EMR Serverless job
runs and as cluster steps, each started once however often it is submitted, and the job entry
points' command lines."""

from __future__ import annotations

from datetime import date

import pytest

import moto_server
from lakehouse.cli.jobs import ops_argv
from lakehouse.core.config import Config
from lakehouse.emr import cluster, operations
from lakehouse.emr.bundle import bundle_layout
from lakehouse.emr.definitions import load_definitions
from moto_server import aws_clients, run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto
dev_config = moto_server.dev_config

ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"


def _runs(moto: str) -> list[dict]:
    es = moto_server.client(moto, "emr-serverless")
    (app,) = es.list_applications()["applications"]
    runs = es.list_job_runs(applicationId=app["id"])["jobRuns"]
    return [es.get_job_run(applicationId=app["id"], jobRunId=r["id"])["jobRun"] for r in runs]


def test_maintain_starts_one_serverless_run_of_the_maintenance_job(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(["emr", "maintain", "--env", "dev", "--no-quality"], monkeypatch) == 0
    assert run_cli(["emr", "maintain", "--env", "dev", "--no-quality"], monkeypatch) == 0

    (run,) = _runs(moto)
    assert run["name"] == f"maintenance-{date.today().isoformat()}"
    submit = run["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"] == f"{ARTIFACTS}/jobs/maintain.py"
    assert submit["entryPointArguments"] == ["--env", "dev", "--no-quality"]
    assert submit["sparkSubmitParameters"].startswith(f"--py-files {ARTIFACTS}/pyfiles.zip ")
    assert run["executionRole"] == "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"


def test_erase_submits_the_customers_erasure_once_per_request(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    erase = ["emr", "erase", "--env", "dev", "--customer", "C-42", "--request-id", "R-7"]
    assert run_cli(erase, monkeypatch) == 0
    assert run_cli(erase, monkeypatch) == 0
    assert run_cli([*erase[:-1], "R-8", "--reason", "ticket 8"], monkeypatch) == 0

    runs = sorted(_runs(moto), key=lambda r: r["name"])
    assert [r["name"] for r in runs] == ["erasure-R-7", "erasure-R-8"]
    assert [r["jobDriver"]["sparkSubmit"]["entryPointArguments"] for r in runs] == [
        ["--env", "dev", "--customer", "C-42", "--request-id", "R-7"],
        ["--env", "dev", "--customer", "C-42", "--request-id", "R-8", "--reason", "ticket 8"],
    ]
    assert {r["jobDriver"]["sparkSubmit"]["entryPoint"] for r in runs} == {
        f"{ARTIFACTS}/jobs/erase.py"
    }


def test_backfill_submits_one_reprocessing_job_for_the_range(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["emr", "backfill", "--env", "dev", "--from", "2024-01-01", "--to", "2024-01-31"]
    assert run_cli(argv, monkeypatch) == 0
    assert run_cli(argv, monkeypatch) == 0
    assert run_cli([*argv, "--preview"], monkeypatch) == 0

    runs = sorted(_runs(moto), key=lambda r: r["name"])
    assert [r["name"] for r in runs] == [
        "backfill-2024-01-01-2024-01-31",
        "backfill-2024-01-01-2024-01-31-dry-run",
    ]
    assert {r["jobDriver"]["sparkSubmit"]["entryPoint"] for r in runs} == {
        f"{ARTIFACTS}/jobs/backfill.py"
    }
    assert [r["jobDriver"]["sparkSubmit"]["entryPointArguments"] for r in runs] == [
        ["--env", "dev", "--from", "2024-01-01", "--to", "2024-01-31"],
        ["--env", "dev", "--from", "2024-01-01", "--to", "2024-01-31", "--dry-run"],
    ]


def test_operations_run_as_cluster_steps_once(dev_config: Config) -> None:
    clients = aws_clients(dev_config)
    defs = load_definitions("dev")
    cluster_id = cluster.cluster_up(clients, dev_config, defs, log=lambda _: None)
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    job = operations.erasure_job(dev_config, "C-42", "R-7")

    first = operations.submit_step(clients, dev_config, defs, layout, job, log=lambda _: None)
    again = operations.submit_step(clients, dev_config, defs, layout, job, log=lambda _: None)

    assert first == again and first[0] == cluster_id
    (step,) = clients.client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert step["Name"] == "erasure-R-7"
    assert step["ActionOnFailure"] == "CANCEL_AND_WAIT"
    args = step["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-7:] == [
        f"{ARTIFACTS}/jobs/erase.py",
        "--env", "dev", "--customer", "C-42", "--request-id", "R-7",
    ]  # fmt: skip


def test_a_job_entry_point_hands_its_arguments_to_the_lakehouse_command() -> None:
    assert ops_argv("maintain", ["--env", "prod"]) == ("prod", None, ["--env", "prod", "maintain"])
    assert ops_argv("erase", ["--customer", "C-1", "--env", "dev", "--conf-dir", "/c"]) == (
        "dev",
        "/c",
        ["--env", "dev", "--conf-dir", "/c", "erase", "--customer", "C-1"],
    )
