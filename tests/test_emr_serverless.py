"""EMR Serverless against a moto server: the application, one run per day however often it is
submitted, waiting with backoff and a deadline, and backfills with bounded parallelism.

moto starts every job run as SUCCESS at once and keeps `clientToken` without deduplicating on it.
Where a test needs a run that is still going, it either sets the state in moto's backend (the server
runs in this process) or wraps the real client in a small stub whose `get_job_run` reports RUNNING;
each test says which and why.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

import moto_server
from lakehouse.core.config import Config
from lakehouse.emr import serverless
from lakehouse.emr.bundle import bundle_layout
from lakehouse.emr.definitions import load_definitions
from lakehouse.emr.wait import Backoff, WaitTimeout
from moto_server import aws_clients, backend, capture, run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto
dev_config = moto_server.dev_config

DAY = date(2024, 1, 3)
ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"
ROLE = "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"


def _es(config: Config) -> Any:
    return aws_clients(config).client("emr-serverless")


def _layout() -> Any:
    return bundle_layout(
        "s3://lakehouse-dev-artifacts/lakehouse", load_definitions("dev").bundle, "0.1.0"
    )


def _quiet(*_: Any) -> None:
    return None


def test_application_is_created_once_with_its_capacity(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")

    first = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    second = serverless.ensure_application(es, dev_config, defs, log=_quiet)

    assert first == second
    assert [a["id"] for a in es.list_applications()["applications"]] == [first]
    app = es.get_application(applicationId=first)["application"]
    assert (app["name"], app["releaseLabel"], app["type"]) == (
        "lakehouse-dev",
        "emr-7.12.0",
        "Spark",
    )
    assert app["initialCapacity"] == {
        "DRIVER": {
            "workerCount": 1,
            "workerConfiguration": {"cpu": "4 vCPU", "memory": "16 GB", "disk": "20 GB"},
        },
        "EXECUTOR": {
            "workerCount": 2,
            "workerConfiguration": {"cpu": "4 vCPU", "memory": "16 GB", "disk": "20 GB"},
        },
    }
    assert app["maximumCapacity"] == {"cpu": "32 vCPU", "memory": "128 GB", "disk": "500 GB"}
    assert app["autoStartConfiguration"] == {"enabled": True}
    assert app["autoStopConfiguration"] == {"enabled": True, "idleTimeoutMinutes": 10}
    assert app["tags"] == {"project": "lakehouse", "env": "dev"}


def test_run_submitted_twice_starts_one_job_run(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--env", "dev", "emr", "run", "--date", "2024-01-03"]

    assert run_cli(argv, monkeypatch) == 0
    assert run_cli(argv, monkeypatch) == 0

    es = moto_server.client(moto, "emr-serverless")
    (app,) = es.list_applications()["applications"]
    runs = es.list_job_runs(applicationId=app["id"])["jobRuns"]
    assert [r["name"] for r in runs] == ["daily-pipeline-2024-01-03"]


def test_job_run_request_attaches_bundle_delta_glue_and_limits(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    sent = capture(es, "StartJobRun")

    ref = serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)

    assert ref.started is True
    (request,) = sent
    # moto drops retryPolicy, so the request as sent is checked; the rest moto also keeps.
    assert request["retryPolicy"] == {"maxAttempts": 2}
    assert request["clientToken"] == "daily-pipeline-dev-2024-01-03"
    run = es.get_job_run(applicationId=app_id, jobRunId=ref.run_id)["jobRun"]
    assert run["name"] == "daily-pipeline-2024-01-03"
    assert run["executionRole"] == ROLE
    assert run["executionTimeoutMinutes"] == 240
    driver = run["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == f"{ARTIFACTS}/jobs/pipeline.py"
    assert driver["entryPointArguments"] == ["--env", "dev", "--date", "2024-01-03"]
    assert driver["sparkSubmitParameters"].split(" ") == [
        "--py-files",
        f"{ARTIFACTS}/pyfiles.zip",
        "--jars",
        f"{ARTIFACTS}/jars/deequ-2.0.7-spark-3.5.jar,"
        # The Kafka connector travels with every job of the bundle (`lakehouse stream` uses it).
        f"{ARTIFACTS}/jars/spark-sql-kafka-0-10_2.12-3.5.7.jar,"
        f"{ARTIFACTS}/jars/spark-token-provider-kafka-0-10_2.12-3.5.7.jar,"
        f"{ARTIFACTS}/jars/kafka-clients-3.4.1.jar,"
        f"{ARTIFACTS}/jars/commons-pool2-2.11.1.jar,"
        "/usr/share/aws/delta/lib/delta-spark.jar,/usr/share/aws/delta/lib/delta-storage.jar",
        "--conf",
        "spark.emr-serverless.driverEnv.LAKEHOUSE_METRICS_NAMESPACE=Lakehouse",
        "--conf",
        "spark.emr-serverless.driverEnv.LAKEHOUSE_SNS_TOPIC_ARN="
        "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs",
        "--conf",
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON=/usr/bin/python3.11",
        "--conf",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON=/usr/bin/python3.11",
        "--conf",
        "spark.executorEnv.PYSPARK_PYTHON=/usr/bin/python3.11",
        "--conf",
        "spark.hadoop.hive.metastore.client.factory.class="
        "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory",
        "--conf",
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--conf",
        "spark.sql.catalogImplementation=hive",
        "--conf",
        "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf",
        "spark.sql.session.timeZone=UTC",
    ]
    assert run["configurationOverrides"] == {
        "monitoringConfiguration": {
            "s3MonitoringConfiguration": {"logUri": "s3://lakehouse-dev-logs/emr/serverless/"},
            "cloudWatchLoggingConfiguration": {
                "enabled": True,
                "logGroupName": "/aws/emr-serverless/lakehouse-dev",
            },
        }
    }


def test_a_run_in_flight_blocks_a_second_submission(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    first = serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)
    # moto creates runs as SUCCESS; the test makes this one still RUNNING, as a real run would be.
    backend("emr-serverless").job_runs[app_id][0].state = "RUNNING"

    second = serverless.submit_daily_run(
        es, dev_config, defs, _layout(), app_id, DAY, rerun=True, log=_quiet
    )

    assert (second.run_id, second.state, second.started) == (first.run_id, "RUNNING", False)
    assert len(es.list_job_runs(applicationId=app_id)["jobRuns"]) == 1


def test_a_failed_day_is_retried_by_submitting_again(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    first = serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)
    # The test sets the outcome moto never produces by itself: the run failed.
    backend("emr-serverless").job_runs[app_id][0].state = "FAILED"
    sent = capture(es, "StartJobRun")

    second = serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)

    assert second.started is True
    assert second.run_id != first.run_id
    # A new token: AWS would answer the first run's token with the failed run itself.
    assert [r["clientToken"] for r in sent] == ["daily-pipeline-dev-2024-01-03-attempt2"]
    states = sorted(r["state"] for r in es.list_job_runs(applicationId=app_id)["jobRuns"])
    assert states == ["FAILED", "SUCCESS"]


def test_rerun_of_a_succeeded_day_uses_a_new_token(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)
    sent = capture(es, "StartJobRun")

    ref = serverless.submit_daily_run(
        es, dev_config, defs, _layout(), app_id, DAY, rerun=True, log=_quiet
    )

    assert ref.started is True
    assert [r["clientToken"] for r in sent] == ["daily-pipeline-dev-2024-01-03-attempt2"]


class NeverFinishes:
    """The real moto client, except that `get_job_run` always says RUNNING: moto finishes every
    run at once, and the waiter needs one that never ends."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.polls = 0

    def get_job_run(self, **kwargs: Any) -> dict[str, Any]:
        self.polls += 1
        response = self.real.get_job_run(**kwargs)
        response["jobRun"]["state"] = "RUNNING"
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_waiter_stops_at_its_deadline_and_cancels_the_run(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    ref = serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)
    stub = NeverFinishes(es)
    now = [0.0]
    sleeps: list[float] = []
    changes: list[str] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(WaitTimeout) as raised:
        serverless.wait_for_run(
            stub,
            app_id,
            ref.run_id,
            Backoff(initial_s=15, max_s=120, factor=2, deadline_s=600),
            sleep=sleep,
            clock=lambda: now[0],
            on_change=lambda _, state: changes.append(state),
        )

    assert sleeps == [15, 30, 60, 120, 120, 120, 120, 15]
    assert sum(sleeps) == 600
    assert stub.polls == 9
    assert raised.value.last_state == "RUNNING"
    assert changes == ["RUNNING", "CANCELLED by lakehouse: deadline reached"]
    assert es.get_job_run(applicationId=app_id, jobRunId=ref.run_id)["jobRun"]["state"] == (
        "CANCELLED"
    )


def test_waiter_returns_the_final_state(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    ref = serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)

    state = serverless.wait_for_run(
        es, app_id, ref.run_id, Backoff(1, 1, 1, 10), sleep=_quiet, on_change=_quiet
    )

    assert state == "SUCCESS"


class SlowRuns:
    """The real moto client, except that each run reports RUNNING for its first `polls` looks
    before moto's real (SUCCESS) state, and the runs in flight are counted."""

    def __init__(self, real: Any, polls: int) -> None:
        self.real = real
        self.polls = polls
        self.seen: dict[str, int] = {}
        self.finished: set[str] = set()
        self.started: list[str] = []
        self.max_in_flight = 0

    def start_job_run(self, **kwargs: Any) -> dict[str, Any]:
        response = self.real.start_job_run(**kwargs)
        self.started.append(response["jobRunId"])
        in_flight = len(self.started) - len(self.finished)
        self.max_in_flight = max(self.max_in_flight, in_flight)
        return response

    def get_job_run(self, **kwargs: Any) -> dict[str, Any]:
        response = self.real.get_job_run(**kwargs)
        run_id = kwargs["jobRunId"]
        self.seen[run_id] = self.seen.get(run_id, 0) + 1
        if self.seen[run_id] <= self.polls:
            response["jobRun"]["state"] = "RUNNING"
        else:
            self.finished.add(run_id)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_backfill_never_exceeds_its_parallelism(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    stub = SlowRuns(es, polls=3)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(7)]
    sleeps: list[float] = []

    def submit(day: date) -> serverless.RunRef:
        return serverless.submit_daily_run(
            stub, dev_config, defs, _layout(), app_id, day, log=_quiet
        )

    results = serverless.backfill(
        stub,
        submit,
        app_id,
        days,
        2,
        Backoff(initial_s=5, max_s=20, factor=2, deadline_s=3600),
        sleep=sleeps.append,
        clock=lambda: 0.0,
        on_change=_quiet,
    )

    assert results == dict.fromkeys(days, "SUCCESS")
    assert stub.max_in_flight == 2
    assert len(stub.started) == 7
    names = sorted(r["name"] for r in es.list_job_runs(applicationId=app_id)["jobRuns"])
    assert names == [f"daily-pipeline-{d.isoformat()}" for d in days]
    assert sleeps and max(sleeps) <= 20


def test_backfill_skips_days_that_already_succeeded(dev_config: Config) -> None:
    es = _es(dev_config)
    defs = load_definitions("dev")
    app_id = serverless.ensure_application(es, dev_config, defs, log=_quiet)
    serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, DAY, log=_quiet)
    sent = capture(es, "StartJobRun")
    days = [DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)]

    def submit(day: date) -> serverless.RunRef:
        return serverless.submit_daily_run(es, dev_config, defs, _layout(), app_id, day, log=_quiet)

    results = serverless.backfill(
        es,
        submit,
        app_id,
        days,
        3,
        Backoff(1, 1, 1, 60),
        sleep=_quiet,
        clock=lambda: 0.0,
        on_change=_quiet,
    )

    assert results == dict.fromkeys(days, "SUCCESS")
    assert [r["name"] for r in sent] == ["daily-pipeline-2024-01-02", "daily-pipeline-2024-01-04"]


def test_backfill_by_daily_runs_runs_each_day_once(
    moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["emr", "backfill", "--env", "dev", "--from", "2024-01-01", "--to", "2024-01-03"]
    argv.append("--daily-runs")

    assert run_cli([*argv, "--parallel", "2"], monkeypatch) == 0
    assert run_cli(argv, monkeypatch) == 0

    es = moto_server.client(moto, "emr-serverless")
    (app,) = es.list_applications()["applications"]
    names = sorted(r["name"] for r in es.list_job_runs(applicationId=app["id"])["jobRuns"])
    assert names == [
        "daily-pipeline-2024-01-01",
        "daily-pipeline-2024-01-02",
        "daily-pipeline-2024-01-03",
    ]
