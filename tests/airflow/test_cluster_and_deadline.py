"""The daily DAG on the EMR on EC2 cluster (its steps added once, in order, whatever is retried or
run again), and the deadline alert's message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3

from conftest import REGION, sns_messages
from lakehouse.emr.airflow_dags import deadline_missed

SENSORS = r"^(bronze|silver|quality|gold)$"


def test_on_the_cluster_each_step_is_added_once_in_order(
    dagbag: Any, lakehouse_dev: dict[str, Any], moto_url: str
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
    dag = dagbag.get_dag("lakehouse_daily_cluster")
    dag.deadline = None  # see test_daily_run: dag.test() cannot finish a DAG with a deadline

    # moto never moves a step past PENDING: the sensors are marked done, the submits run for real.
    first = dag.test(
        logical_date=datetime(2024, 1, 11, 2, tzinfo=UTC), mark_success_pattern=SENSORS
    )
    again = dag.test(
        logical_date=datetime(2024, 1, 11, 2, tzinfo=UTC), mark_success_pattern=SENSORS
    )

    assert first.state == again.state == "success"
    steps = emr.list_steps(ClusterId=cluster_id)["Steps"][::-1]  # oldest first
    assert [s["Name"] for s in steps] == [
        "bronze 2024-01-10", "silver 2024-01-10", "quality 2024-01-10", "gold 2024-01-10"
    ]  # fmt: skip
    args = steps[2]["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[-5:] == [
        "s3://lakehouse-dev-artifacts/lakehouse/0.1.0/jobs/quality.py",
        "--env", "dev", "--date", "2024-01-10",
    ]  # fmt: skip
    assert {s["ActionOnFailure"] for s in steps} == {"CANCEL_AND_WAIT"}


def test_a_missed_deadline_is_told_to_the_topic(dagbag: Any, lakehouse_dev: dict[str, Any]) -> None:
    (alert,) = dagbag.get_dag("lakehouse_daily").deadline
    topic = lakehouse_dev["defs"].account.sns_topic_arn
    before = len(sns_messages(topic))

    class Run:
        run_id = "scheduled__2024-01-12T02:00:00+00:00"

    deadline_missed(context={"dag_run": Run()}, **alert.callback.kwargs)

    [(subject, message)] = sns_messages(topic)[before:]
    assert subject == (
        "[lakehouse dev] pipeline LATE (run airflow scheduled__2024-01-12T02:00:00+00:00)"
    )
    assert message.splitlines()[:3] == [
        "Lakehouse pipeline run airflow scheduled__2024-01-12T02:00:00+00:00 in dev: LATE",
        "Duration: 0m 00s",
        "Error: not finished 119 minutes after the scheduled time",
    ]
