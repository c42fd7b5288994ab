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
from moto_server import aws_clients, capture, run_cli

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


KINESIS_JAR = (
    "/usr/share/aws/kinesis/spark-sql-kinesis/lib/spark-streaming-sql-kinesis-connector.jar"
)


def test_the_stream_starts_one_serverless_streaming_run_restarted_from_its_checkpoint(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[dict]] = []

    def clients_with_capture(config: Config) -> object:
        clients = aws_clients(config)
        sent.append(capture(clients.client("emr-serverless"), "StartJobRun"))
        return clients

    monkeypatch.setattr("lakehouse.cli.emr._clients", clients_with_capture)
    assert run_cli(["emr", "stream", "--env", "dev"], monkeypatch) == 0
    assert run_cli(["emr", "stream", "--env", "dev"], monkeypatch) == 0

    (run,) = _runs(moto)  # the second submission found the first running
    assert run["name"] == "stream-clickstream"
    (request,) = [r for batch in sent for r in batch]
    assert request["mode"] == "STREAMING"
    assert request["retryPolicy"] == {"maxFailedAttemptsPerHour": 5}
    assert "executionTimeoutMinutes" not in request  # it runs until cancelled
    submit = request["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"] == f"{ARTIFACTS}/jobs/stream.py"
    assert submit["entryPointArguments"] == ["--env", "dev"]
    parameters = submit["sparkSubmitParameters"].split(" ")
    jars = parameters[parameters.index("--jars") + 1].split(",")
    assert jars == [
        f"{ARTIFACTS}/jars/deequ-2.0.7-spark-3.5.jar",
        f"{ARTIFACTS}/jars/spark-sql-kafka-0-10_2.12-3.5.7.jar",
        f"{ARTIFACTS}/jars/spark-token-provider-kafka-0-10_2.12-3.5.7.jar",
        f"{ARTIFACTS}/jars/kafka-clients-3.4.1.jar",
        f"{ARTIFACTS}/jars/commons-pool2-2.11.1.jar",
        "/usr/share/aws/delta/lib/delta-spark.jar",
        "/usr/share/aws/delta/lib/delta-storage.jar",
        KINESIS_JAR,
    ]
    assert "spark.speculation=false" in parameters
    # The daily run's settings are all there too (Delta, Glue, the bundle's Python).
    daily = operations.serverless.spark_submit_parameters(
        load_definitions("dev"),
        bundle_layout(
            "s3://lakehouse-dev-artifacts/lakehouse", load_definitions("dev").bundle, "0.1.0"
        ),
    ).split(" ")
    daily_conf = {daily[i + 1] for i, a in enumerate(daily) if a == "--conf"}
    assert daily_conf <= {parameters[i + 1] for i, a in enumerate(parameters) if a == "--conf"}


def test_the_stream_as_a_cluster_step_hands_the_application_to_yarn_and_continues_on_failure(
    dev_config: Config,
) -> None:
    clients = aws_clients(dev_config)
    defs = load_definitions("dev")
    cluster.cluster_up(clients, dev_config, defs, log=lambda _: None)
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    job = operations.stream_job(dev_config)

    first = operations.submit_step(clients, dev_config, defs, layout, job, log=lambda _: None)
    again = operations.submit_step(clients, dev_config, defs, layout, job, log=lambda _: None)

    assert first == again
    (step,) = clients.client("emr").list_steps(ClusterId=first[0])["Steps"]
    assert step["Name"] == "stream-clickstream"
    assert step["ActionOnFailure"] == "CONTINUE"
    args = step["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-3:] == [f"{ARTIFACTS}/jobs/stream.py", "--env", "dev"]
    confs = {args[i + 1] for i, a in enumerate(args) if a == "--conf"}
    assert {"spark.yarn.submit.waitAppCompletion=false", "spark.speculation=false"} <= confs
    assert args[args.index("--jars") + 1].split(",")[-1] == KINESIS_JAR
    # Everything the daily steps set is kept.
    daily = cluster.step_params(defs, layout, "x", "stream", ["--env", "dev"])["HadoopJarStep"]
    daily_args = daily["Args"]
    assert {daily_args[i + 1] for i, a in enumerate(daily_args) if a == "--conf"} <= confs
