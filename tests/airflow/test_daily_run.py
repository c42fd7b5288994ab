"""The daily DAG run for real by `dag.test()` against moto: each task submits its step's job run
with the processing date and a token of its own, a retried task never starts a second run, and a
failure reaches the SNS topic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.emrserverless.exceptions import ValidationException
from moto.emrserverless.models import EMRServerlessBackend

from conftest import job_runs, sns_messages
from lakehouse.emr.airflow_dags import TOKEN_TAG, task_token

STEPS = ["bronze", "silver", "quality", "gold"]
ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"


@pytest.fixture
def daily(dagbag: Any) -> Iterator[Any]:
    """The daily DAG with its retries immediate (the configured delays are checked in
    test_dag_integrity; a test does not wait five minutes), and without its deadline alert:
    Airflow 3.3.2's `dag.test()` cannot finish a run of a DAG that has one (the DAG it runs holds
    the alerts' definitions where `DagRun.update_state` expects their database ids, and fails with
    "'dict' object has no attribute 'hex'"). The alert is checked in test_dag_integrity, its
    callback below."""
    dag = dagbag.get_dag("lakehouse_daily")
    saved = {t.task_id: (t.retry_delay, t.retry_exponential_backoff) for t in dag.tasks}
    deadline = dag.deadline
    for t in dag.tasks:
        t.retry_delay, t.retry_exponential_backoff = timedelta(0), 0
    dag.deadline = None
    yield dag
    dag.deadline = deadline
    for t in dag.tasks:
        t.retry_delay, t.retry_exponential_backoff = saved[t.task_id]


def run_day(dag: Any, fired: datetime) -> Any:
    """`dag.test()` of the run the schedule starts at `fired`; returns the DAG run."""
    return dag.test(logical_date=fired)


def test_each_step_is_submitted_once_with_the_day_before_the_logical_date(
    daily: Any, lakehouse_dev: dict[str, Any], moto_url: str
) -> None:
    app_id, topic = lakehouse_dev["app_id"], lakehouse_dev["defs"].account.sns_topic_arn
    before = len(sns_messages(topic))

    dag_run = run_day(daily, datetime(2024, 1, 4, 2, 0, tzinfo=UTC))

    assert dag_run.state == "success"
    assert dag_run.run_id.startswith("manual__")  # dag.test() names it after the time it ran
    for step in STEPS:
        (run,) = job_runs(moto_url, app_id, f"daily-pipeline-{step}-2024-01-03")
        token = task_token("lakehouse_daily", dag_run.run_id, step)
        assert run["state"] == "SUCCESS"
        assert run["tags"] == {TOKEN_TAG: token}
        assert run["executionRole"] == "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"
        assert run["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/{step}.py"
        assert run["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
            "--env",
            "dev",
            "--date",
            "2024-01-03",
        ]
        assert run["executionTimeoutMinutes"] == 120
    # The success of the whole run, told as the jobs tell theirs.
    [(subject, message)] = sns_messages(topic)[before:]
    assert subject == f"[lakehouse dev] pipeline SUCCEEDED (run airflow {dag_run.run_id})"[:100]
    assert message.splitlines()[0] == (
        f"Lakehouse pipeline run airflow {dag_run.run_id} in dev: SUCCEEDED"
    )


def test_the_token_is_the_same_for_every_try_of_a_task_and_differs_between_tasks() -> None:
    run = "scheduled__2024-01-04T02:00:00+00:00"

    assert task_token("lakehouse_daily", run, "bronze") == task_token(
        "lakehouse_daily", run, "bronze"
    )
    assert task_token("lakehouse_daily", run, "bronze") != task_token(
        "lakehouse_daily", run, "silver"
    )
    assert len(task_token("lakehouse_daily", run, "bronze")) <= 64


def test_a_task_retried_after_losing_its_run_waits_for_that_run_instead_of_starting_another(
    daily: Any, lakehouse_dev: dict[str, Any], moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first try of bronze starts its run, which is still running when the try fails: the
    # run's state cannot be read once, as for a worker lost mid-wait. The retry finds the run
    # (reading its tag), waits for it, and it succeeds.
    name = "daily-pipeline-bronze-2024-01-04"
    reads: list[str] = []
    original_start = EMRServerlessBackend.start_job_run
    original_get = EMRServerlessBackend.get_job_run

    def start_job_run(self: EMRServerlessBackend, **kwargs: Any) -> Any:
        run = original_start(self, **kwargs)
        if run.name == name:
            run.state = "RUNNING"
        return run

    def get_job_run(self: EMRServerlessBackend, application_id: str, job_run_id: str) -> Any:
        run = original_get(self, application_id, job_run_id)
        if run.name != name:
            return run
        reads.append(run.state)
        if len(reads) == 1:  # the first try's wait
            raise ValidationException("simulated: the run's state could not be read")
        if len(reads) >= 3:  # the retry's wait, after it read the tag: the run has finished
            run.state = "SUCCESS"
        return run

    monkeypatch.setattr(EMRServerlessBackend, "start_job_run", start_job_run)
    monkeypatch.setattr(EMRServerlessBackend, "get_job_run", get_job_run)

    dag_run = run_day(daily, datetime(2024, 1, 5, 2, 0, tzinfo=UTC))

    assert dag_run.state == "success"
    (bronze,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == "bronze"]
    assert bronze.try_number == 2
    # Read by the first try's wait (failed), the retry's look-up (still running), its wait.
    assert reads[:3] == ["RUNNING", "RUNNING", "RUNNING"]
    (run,) = job_runs(moto_url, lakehouse_dev["app_id"], name)  # one run, not two
    assert run["state"] == "SUCCESS"
    assert run["tags"] == {TOKEN_TAG: task_token("lakehouse_daily", dag_run.run_id, "bronze")}
    for step in STEPS[1:]:
        runs = job_runs(moto_url, lakehouse_dev["app_id"], f"daily-pipeline-{step}-2024-01-04")
        assert len(runs) == 1


def test_a_step_that_keeps_failing_is_retried_three_times_then_told_to_the_topic(
    daily: Any, lakehouse_dev: dict[str, Any], moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "daily-pipeline-silver-2024-01-05"
    original = EMRServerlessBackend.start_job_run

    def start_job_run(self: EMRServerlessBackend, **kwargs: Any) -> Any:
        run = original(self, **kwargs)
        if run.name == name:
            run.state, run.state_details = "FAILED", "simulated: the Spark job failed"
        return run

    monkeypatch.setattr(EMRServerlessBackend, "start_job_run", start_job_run)
    topic = lakehouse_dev["defs"].account.sns_topic_arn
    before = len(sns_messages(topic))

    dag_run = run_day(daily, datetime(2024, 1, 6, 2, 0, tzinfo=UTC))

    assert dag_run.state == "failed"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {
        "bronze": "success",
        "silver": "failed",
        "quality": "upstream_failed",
        "gold": "upstream_failed",
    }
    # Four tries, four runs: a failed run is never waited for again, and each new run has a token
    # of its own (EMR would answer a known token with the failed run).
    base = task_token("lakehouse_daily", dag_run.run_id, "silver")
    runs = job_runs(moto_url, lakehouse_dev["app_id"], name)
    assert [r["state"] for r in runs] == ["FAILED"] * 4
    assert [r["tags"] for r in runs] == [{TOKEN_TAG: base}] * 4
    assert job_runs(moto_url, lakehouse_dev["app_id"], "daily-pipeline-quality-2024-01-05") == []
    [(subject, message)] = sns_messages(topic)[before:]
    expected = f"[lakehouse dev] silver FAILED in silver (run airflow {dag_run.run_id})"
    assert subject == expected[:100]
    lines = message.splitlines()
    assert lines[0] == f"Lakehouse silver run airflow {dag_run.run_id} in dev: FAILED"
    assert lines[2] == "Failed step: silver"
    assert lines[3].startswith("Error: ")
