"""The daily DAG on the EMR on EC2 cluster (its steps added once, in order, whatever is retried or
run again), and the deadline alert's message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.emr.models import ElasticMapReduceBackend

from conftest import REGION, sns_messages
from lakehouse.emr.airflow_dags import deadline_missed


def test_on_the_cluster_a_step_is_added_once_waited_for_and_added_again_only_after_failing(
    dagbag: Any, lakehouse_dev: dict[str, Any], moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emr = boto3.client("emr", region_name=REGION, endpoint_url=moto_url)
    cluster_id = emr.run_job_flow(
        Name="lakehouse-dev",
        ReleaseLabel="emr-7.12.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]  # fmt: skip
    # The day's gold step is already on the cluster (submitted by `lakehouse emr steps`).
    emr.add_job_flow_steps(
        JobFlowId=cluster_id,
        Steps=[{"Name": "gold 2024-01-10", "HadoopJarStep": {"Jar": "command-runner.jar"}}],
    )
    # moto never moves a step: here a step finishes when a waiter next looks at it (ListSteps
    # with its ids, as the trigger asks), and the first silver step fails.
    original = ElasticMapReduceBackend.list_steps
    failed: list[str] = []

    def finish(step: Any) -> None:
        if step.state in ("PENDING", "RUNNING"):
            first_silver = step.name == "silver 2024-01-10" and not failed
            step.state = "FAILED" if first_silver else "COMPLETED"
            if first_silver:
                failed.append(step.id)

    def list_steps(self: ElasticMapReduceBackend, cluster_id: str, **kwargs: Any) -> Any:
        steps = original(self, cluster_id, **kwargs)
        if kwargs.get("step_ids"):
            for step in steps:
                finish(step)
        return steps

    monkeypatch.setattr(ElasticMapReduceBackend, "list_steps", list_steps)
    dag = dagbag.get_dag("lakehouse_daily_cluster")
    dag.deadline = None  # see test_daily_run: dag.test() cannot finish a DAG with a deadline
    for task in dag.tasks:
        task.retry_delay, task.retry_exponential_backoff = timedelta(0), 0

    fired = datetime(2024, 1, 11, 2, tzinfo=UTC)
    first = dag.test(logical_date=fired)
    again = dag.test(logical_date=fired)

    assert first.state == again.state == "success"
    steps = emr.list_steps(ClusterId=cluster_id)["Steps"][::-1]  # oldest first
    assert [(s["Name"], s["Status"]["State"]) for s in steps] == [
        ("gold 2024-01-10", "COMPLETED"),  # waited for, not added again
        ("bronze 2024-01-10", "COMPLETED"),
        ("silver 2024-01-10", "FAILED"),
        ("silver 2024-01-10", "COMPLETED"),  # the retry added it again
        ("quality 2024-01-10", "COMPLETED"),
    ]
    args = steps[4]["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-5:] == [
        "s3://lakehouse-dev-artifacts/lakehouse/0.1.0/jobs/quality.py",
        "--env", "dev", "--date", "2024-01-10",
    ]  # fmt: skip
    assert {s["ActionOnFailure"] for s in steps[1:]} == {"CANCEL_AND_WAIT"}


def test_a_missed_deadline_of_a_scheduled_run_is_told_to_the_topic(
    dagbag: Any, lakehouse_dev: dict[str, Any]
) -> None:
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunResponse

    (alert,) = dagbag.get_dag("lakehouse_daily").deadline
    topic = lakehouse_dev["defs"].account.sns_topic_arn
    before = len(sns_messages(topic))
    # What Airflow's scheduler hands the callback: the DAG run as DAGRunResponse's fields.
    assert {"dag_run_id", "run_type"} <= set(DAGRunResponse.model_fields)

    def missed(run_id: str, run_type: str) -> None:
        context = {"dag_run": {"dag_run_id": run_id, "run_type": run_type}, "deadline": {}}
        deadline_missed(context=context, **alert.callback.kwargs)

    missed("scheduled__2024-01-12T02:00:00+00:00", "scheduled")
    # Backfills and manual runs start long after their logical date: no deadline for them.
    missed("backfill__2024-01-05T02:00:00+00:00", "backfill")
    missed("manual__2024-01-05T02:00:00+00:00", "manual")

    [(subject, message)] = sns_messages(topic)[before:]
    assert subject == (
        "[lakehouse dev] pipeline LATE (run airflow scheduled__2024-01-12T02:00:00+00:00)"
    )
    assert message.splitlines()[:3] == [
        "Lakehouse pipeline run airflow scheduled__2024-01-12T02:00:00+00:00 in dev: LATE",
        "Duration: 0m 00s",
        "Error: not finished 119 minutes after the scheduled time",
    ]
