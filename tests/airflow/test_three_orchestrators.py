"""The same day reaches the jobs whichever orchestrator starts them: the EventBridge schedule (one
whole-pipeline run with `--scheduled-time`), the Airflow DAG (one run per step with `--date`) and
the Step Functions state machine (one Task per step, `--date` from the execution's input
`{"date": D}`, as `run` starts it). For the run the schedule fires at 2024-01-09 02:00 UTC, all
three submit day 2024-01-08, and the same bundle, Spark settings, role and logs."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3

from conftest import REGION, job_runs
from lakehouse.emr import schedule, stepfunctions
from lakehouse.emr.clients import AwsClients

FIRED = datetime(2024, 1, 9, 2, 0, tzinfo=UTC)
DAY = "2024-01-08"


def resolve_states_array(
    expression: str, machine: dict[str, Any], execution_input: dict[str, Any]
) -> list[str]:
    """Evaluate the `States.Array('--env', 'dev', $.day.flag, $.day.value)` the state machine's
    Task holds, on an input `{"date": D}`: the first state, a Choice, goes to the Pass state for
    the input's key, which puts `--date` and D in `$.day` (the only intrinsic and paths the
    definition uses there)."""
    choice = machine["States"][machine["StartAt"]]
    (chosen,) = [c["Next"] for c in choice["Choices"] if c["Variable"][2:] in execution_input]
    day = {
        key.removesuffix(".$"): execution_input[value[2:]] if key.endswith(".$") else value
        for key, value in machine["States"][chosen]["Parameters"].items()
        if key in ("flag", "value.$")
    }
    data: dict[str, Any] = {**execution_input, "day": day}
    match = re.fullmatch(r"States\.Array\((.*)\)", expression)
    assert match, expression
    out = []
    for item in (part.strip() for part in match.group(1).split(",")):
        if item.startswith("$."):
            value: Any = data
            for key in item[2:].split("."):
                value = value[key]
            out.append(str(value))
        else:
            out.append(item.strip("'"))
    return out


def test_schedule_airflow_and_step_functions_submit_the_same_day(
    dagbag: Any, lakehouse_dev: dict[str, Any], moto_url: str
) -> None:
    config, defs, layout, app_id = (
        lakehouse_dev[k] for k in ("config", "defs", "layout", "app_id")
    )

    # The schedule: the job turns the time Scheduler fills in into the day it processes.
    scheduled = schedule.target_input(config, defs, layout, app_id)
    arguments = scheduled["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    assert arguments == ["--env", "dev", "--scheduled-time", schedule.SCHEDULED_TIME]
    fired_text = FIRED.isoformat().replace("+00:00", "Z")
    schedule_day = schedule.processing_date(fired_text).isoformat()

    # Airflow: the DAG run of the same fire time (its deadline dropped, see test_daily_run).
    dag = dagbag.get_dag("lakehouse_daily")
    deadline, dag.deadline = dag.deadline, None
    try:
        assert dag.test(logical_date=FIRED).state == "success"
    finally:
        dag.deadline = deadline
    (airflow_run,) = job_runs(moto_url, app_id, f"daily-pipeline-bronze-{DAY}")
    airflow_arguments = airflow_run["jobDriver"]["sparkSubmit"]["entryPointArguments"]

    # Step Functions: deployed, and the day's execution started, on moto (which runs nothing:
    # the Task's arguments are evaluated here on the execution's input).
    clients = AwsClients(config.aws, boto3.Session(region_name=REGION))
    stepfunctions.deploy(clients, config, defs, layout, log=lambda _: None)
    execution = stepfunctions.run(
        clients, config, defs, date.fromisoformat(schedule_day), log=lambda _: None
    )
    sfn = clients.client("stepfunctions")
    described = sfn.describe_execution(executionArn=execution.arn)
    machine = json.loads(
        sfn.describe_state_machine(stateMachineArn=described["stateMachineArn"])["definition"]
    )
    bronze = machine["States"]["bronze"]["Parameters"]
    sfn_arguments = resolve_states_array(
        bronze["JobDriver"]["SparkSubmit"]["EntryPointArguments.$"],
        machine,
        json.loads(described["input"]),
    )

    assert schedule_day == DAY == (FIRED - timedelta(days=1)).date().isoformat()
    assert airflow_arguments == sfn_arguments == ["--env", "dev", "--date", DAY]
    # The rest of the request is the one all `emr` commands send.
    spark = scheduled["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"]
    assert airflow_run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"] == spark
    assert bronze["JobDriver"]["SparkSubmit"]["SparkSubmitParameters"] == spark
    assert airflow_run["executionRole"] == scheduled["executionRoleArn"]
    assert bronze["ExecutionRoleArn"] == scheduled["executionRoleArn"]
    assert bronze["ApplicationId"] == airflow_run["applicationId"] == scheduled["applicationId"]
    log_uri = scheduled["configurationOverrides"]["monitoringConfiguration"][
        "s3MonitoringConfiguration"
    ]["logUri"]
    assert (
        bronze["ConfigurationOverrides"]["MonitoringConfiguration"]["S3MonitoringConfiguration"][
            "LogUri"
        ]
        == log_uri
    )
    assert (
        airflow_run["configurationOverrides"]["monitoringConfiguration"][
            "s3MonitoringConfiguration"
        ]["logUri"]
        == log_uri
    )
