"""The Airflow DAGs of the lakehouse (Airflow 3 with the Amazon provider), built from the
specification `lakehouse.emr.airflow` renders; the DAG files in `orchestration/airflow/` only call
`daily_dag(SPEC)` and `maintenance_dag(SPEC)`.

The daily DAG, at the time of the built-in schedule (02:00 UTC), at most `max_active_runs` days in
flight (`airflow backfill create` for ranges; `catchup` off by default, since the jobs catch up
missed landing days themselves, `bronze.catch_up_max_days`): one task per pipeline step,
bronze -> silver -> quality -> gold, each `jobs/<step>.py --env ENV --date D`, where D is the UTC
day before the run's logical date (the day the schedule would process), or `date` of the run's
configuration
(`airflow dags trigger lakehouse_daily -c '{"date": "2024-01-03"}'`).

- On EMR Serverless (default): `LakehouseServerlessStepOperator`, the provider's
  `EmrServerlessStartJobOperator` (deferrable) with the parameters every `emr` command sends.
  Its client token comes from the DAG run and the task, never the try, and the run is tagged
  with it: a retried task first looks for the job run an earlier try of the same DAG run started
  and, when it is queued, running or succeeded, waits for that run instead of starting another
  (EMR honours a client token only for a while, and moto not at all). A failed earlier run is
  retried with a new token (`-attempt2`, ...), as `lakehouse emr run` does.
- On the EMR on EC2 cluster (`target: cluster`): `LakehouseAddStepOperator` per step (the
  provider's `EmrAddStepsOperator`, waiting for its step, deferrable), which adds nothing when the
  cluster already has the step pending or running (it waits for it) or completed; a retry after a
  failed step adds it again.

Every task: `retries` retries with exponential backoff (`retry_backoff_rate`, capped), at most
`task_timeout_minutes` (`execution_timeout`). A failed task publishes the outcome to the SNS topic
and CloudWatch as the jobs do (`lakehouse.emr.notify`); the jobs publish their own outcome too,
with their ledger. A successful run publishes the pipeline's outcome with each step's seconds. A
run not finished by the deadline of `emr/monitoring.yaml` (1 h 59 min after 02:00) raises an
Airflow deadline alert that publishes a message (the built-in late-run alarm fires as well).

The weekly maintenance DAG runs `jobs/maintain.py` at the maintenance schedule's time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.operators.emr import (
    EmrAddStepsOperator,
    EmrServerlessStartJobOperator,
)
from airflow.providers.amazon.aws.triggers.emr import (
    EmrAddStepsTrigger,
    EmrServerlessStartJobTrigger,
)
from airflow.sdk import DAG, CronTriggerTimetable, DeadlineAlert, DeadlineReference, SyncCallback

from lakehouse.emr.notify import JobOutcome, one_line, publish_outcome, render_message
from lakehouse.emr.orchestration import day_of_run
from lakehouse.emr.serverless import BLOCKING_RUN_STATES, _token

TOKEN_TAG = "lakehouse-client-token"
LIVE_STEP_STATES = ["PENDING", "CANCEL_PENDING", "RUNNING", "COMPLETED"]
WAITER_DELAY_SECONDS = 60
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lakehouse_date(dag_run: Any) -> str:
    """The day a DAG run processes, YYYY-MM-DD (the DAGs' `lakehouse_date` macro)."""
    conf = getattr(dag_run, "conf", None) or {}
    return day_of_run(dag_run.logical_date, dag_run.run_after, conf.get("date")).isoformat()


def task_token(dag_id: str, run_id: str, task_id: str) -> str:
    """The client token of a task's job run: one per DAG run and task, the same for every try."""
    return _token(f"airflow-{dag_id}-{run_id}-{task_id}")


class _Callback:
    """A task or DAG callback bound to the spec, with a short repr (Airflow logs callbacks)."""

    def __init__(self, function: Any, spec: dict[str, Any]) -> None:
        self.function, self.spec = function, spec

    def __call__(self, context: Any) -> None:
        self.function(self.spec, context)

    def __repr__(self) -> str:
        return f"{self.function.__name__}(env={self.spec['env']})"


class _HookClients:
    """`publish_outcome`'s clients, from an Airflow AWS connection."""

    def __init__(self, aws_conn_id: str | None) -> None:
        self.aws_conn_id = aws_conn_id

    def client(self, service: str) -> Any:
        return AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type=service).get_conn()


# ---------------------------------------------------------------- operators


class LakehouseServerlessStepOperator(EmrServerlessStartJobOperator):
    """`EmrServerlessStartJobOperator` that never leaves two job runs of one task and DAG run
    (see the module docstring)."""

    def execute(self, context: Any, event: dict[str, Any] | None = None) -> str | None:
        dag_run = context["dag_run"]
        base = task_token(dag_run.dag_id, dag_run.run_id, context["ti"].task_id)
        mine = self._runs_tagged(base)
        live = [r for r in mine if r["state"] in BLOCKING_RUN_STATES]
        if live:
            run = live[0]
            self.job_id = run["id"]
            self.log.info(
                "job run %s (%s) was started by an earlier try of this task: not starting another",
                run["id"],
                run["state"],
            )
            if run["state"] == "SUCCESS" or not self.wait_for_completion:
                return str(run["id"])
            return self._wait_for(str(run["id"]))
        earlier = len(mine)
        self.client_request_token = base if earlier == 0 else _token(f"{base}-attempt{earlier + 1}")
        config: dict[str, Any] = dict(getattr(self, "config", None) or {})
        self.config = {**config, "tags": {**config.get("tags", {}), TOKEN_TAG: base}}
        result: str | None = super().execute(context, event)
        return result

    def _runs_tagged(self, token: str) -> list[dict[str, Any]]:
        """This application's runs named like this task's that carry its token tag."""
        es = self.hook.conn
        found = []
        for page in es.get_paginator("list_job_runs").paginate(applicationId=self.application_id):
            for summary in page.get("jobRuns", []):
                if summary.get("name") != self.name:
                    continue
                run = es.get_job_run(applicationId=self.application_id, jobRunId=summary["id"])
                if (run["jobRun"].get("tags") or {}).get(TOKEN_TAG) == token:
                    found.append(summary)
        return found

    def _wait_for(self, job_id: str) -> str:
        if self.deferrable:
            self.defer(
                trigger=EmrServerlessStartJobTrigger(
                    application_id=self.application_id,
                    job_id=job_id,
                    waiter_delay=self.waiter_delay,
                    waiter_max_attempts=self.waiter_max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.waiter_max_attempts * self.waiter_delay),
            )
        waiter = self.hook.get_waiter("serverless_job_completed")
        waiter.wait(
            applicationId=self.application_id,
            jobRunId=job_id,
            WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
        )
        return job_id


class LakehouseAddStepOperator(EmrAddStepsOperator):
    """`EmrAddStepsOperator` that waits for its step and never adds one the cluster already has:
    a step of the same name pending or running is waited for, a completed one is done; a failed
    or cancelled one is added again (what a retry is for), as `lakehouse emr steps` does."""

    def execute(self, context: Any) -> list[str]:
        job_flow_id = self.job_flow_id or self.hook.get_cluster_id_by_name(
            str(self.job_flow_name), self.cluster_states
        )
        if job_flow_id:
            names = {s["Name"] for s in self.steps}
            emr = self.hook.conn
            have = [
                s
                for page in emr.get_paginator("list_steps").paginate(
                    ClusterId=job_flow_id, StepStates=LIVE_STEP_STATES
                )
                for s in page["Steps"]
                if s["Name"] in names
            ]
            if have:
                ids = [s["Id"] for s in have]
                self.log.info("cluster %s already has steps %s: adding none", job_flow_id, ids)
                context["ti"].xcom_push(key="job_flow_id", value=job_flow_id)
                open_ids = [s["Id"] for s in have if s["Status"]["State"] != "COMPLETED"]
                if open_ids:
                    self._wait_for(job_flow_id, open_ids)
                return ids
        result: list[str] = super().execute(context)
        return result

    def _wait_for(self, job_flow_id: str, step_ids: list[str]) -> None:
        if self.deferrable:
            self.defer(
                trigger=EmrAddStepsTrigger(
                    job_flow_id=job_flow_id,
                    step_ids=step_ids,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                    waiter_max_attempts=self.waiter_max_attempts,
                    waiter_delay=self.waiter_delay,
                ),
                method_name="execute_complete",
            )
        waiter = self.hook.conn.get_waiter("step_complete")
        for step_id in step_ids:
            waiter.wait(
                ClusterId=job_flow_id,
                StepId=step_id,
                WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
            )


# ---------------------------------------------------------------- notifications


def _publish(spec: dict[str, Any], outcome: JobOutcome, metrics: bool = True) -> None:
    clients = _HookClients(spec["aws_conn_id"])
    if metrics:
        publish_outcome(
            cast(Any, clients), spec["sns_topic_arn"], outcome, namespace=spec["metrics_namespace"]
        )
        return
    subject, message = render_message(outcome)
    clients.client("sns").publish(
        TopicArn=spec["sns_topic_arn"],
        Subject=subject,
        Message=message,
        MessageAttributes={
            "env": {"DataType": "String", "StringValue": outcome.env},
            "job": {"DataType": "String", "StringValue": outcome.job},
            "status": {"DataType": "String", "StringValue": outcome.status},
        },
    )


def _seconds(ti: Any) -> float:
    if ti.start_date is None:
        return 0.0
    end = ti.end_date or datetime.now(UTC)
    return max(0.0, (end - ti.start_date).total_seconds())


def task_failed(spec: dict[str, Any], context: Any) -> None:
    """A task failed (its run failed or timed out, or could not start): publish it."""
    ti, dag_run = context["ti"], context["dag_run"]
    exc = context.get("exception")
    outcome = JobOutcome(
        env=spec["env"],
        job=ti.task_id,
        run_id=f"airflow {dag_run.run_id}",
        status="FAILED",
        duration_s=_seconds(ti),
        error=one_line(exc) if isinstance(exc, BaseException) else (str(exc) if exc else None),
        failed_step=ti.task_id,
    )
    _publish(spec, outcome)


def run_succeeded(spec: dict[str, Any], context: Any) -> None:
    """The whole DAG run succeeded: publish the pipeline's outcome, with each task's seconds
    where the callback's DAG run can list its task instances (the scheduler's can; Airflow 3's
    task SDK model cannot)."""
    dag_run = context["dag_run"]
    listing = getattr(dag_run, "get_task_instances", None)
    tis = sorted(listing() if listing else [], key=lambda t: t.start_date or _EPOCH)
    steps = {ti.task_id: _seconds(ti) for ti in tis}
    start = dag_run.start_date or datetime.now(UTC)
    outcome = JobOutcome(
        env=spec["env"],
        job="pipeline",
        run_id=f"airflow {dag_run.run_id}",
        status="SUCCEEDED",
        duration_s=(datetime.now(UTC) - start).total_seconds(),
        steps=steps,
    )
    _publish(spec, outcome)


def deadline_missed(context: Any = None, **spec: Any) -> None:
    """The DAG's deadline alert: the day's scheduled run had not finished by the deadline. A
    message only: the late-run alarm of `lakehouse emr monitoring` reads the metrics. The
    context's `dag_run` is Airflow's DAG run response as a dict (`dag_run_id`, `run_type`, ...);
    a backfill or manual run, whose logical date is long past when it starts, has no deadline."""
    run = (context or {}).get("dag_run") or {}
    if not isinstance(run, dict):
        run = {
            "dag_run_id": getattr(run, "run_id", None),
            "run_type": getattr(run, "run_type", None),
        }
    if run.get("run_type") not in (None, "scheduled"):
        return
    outcome = JobOutcome(
        env=spec["env"],
        job="pipeline",
        run_id=f"airflow {run.get('dag_run_id') or '?'}",
        status="LATE",
        duration_s=0.0,
        error=f"not finished {spec['deadline_minutes']:g} minutes after the scheduled time",
    )
    _publish(spec, outcome, metrics=False)


# ---------------------------------------------------------------- DAGs


def _default_args(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": "lakehouse",
        "retries": spec["retries"],
        "retry_delay": timedelta(seconds=spec["retry_delay_seconds"]),
        "retry_exponential_backoff": spec["retry_backoff_rate"],
        "max_retry_delay": timedelta(seconds=spec["max_retry_delay_seconds"]),
        "execution_timeout": timedelta(minutes=spec["task_timeout_minutes"]),
        "on_failure_callback": _Callback(task_failed, spec),
        "aws_conn_id": spec["aws_conn_id"],
    }


def _start_date(spec: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(spec["start_date"]).replace(tzinfo=UTC)


def _waiter_attempts(spec: dict[str, Any]) -> int:
    return max(1, int(spec["task_timeout_minutes"] * 60 // WAITER_DELAY_SECONDS))


def _serverless_task(spec: dict[str, Any], task_id: str, run: dict[str, Any]) -> Any:
    extra = {k: run[k] for k in ("retryPolicy", "executionTimeoutMinutes") if k in run}
    return LakehouseServerlessStepOperator(
        task_id=task_id,
        application_id=run["applicationId"],
        execution_role_arn=run["executionRoleArn"],
        job_driver=run["jobDriver"],
        configuration_overrides=run["configurationOverrides"],
        name=run["name"],
        config=extra,
        deferrable=spec["deferrable"],
        waiter_delay=WAITER_DELAY_SECONDS,
        waiter_max_attempts=_waiter_attempts(spec),
    )


def daily_dag(spec: dict[str, Any]) -> DAG:
    """The daily pipeline DAG (see the module docstring)."""
    with DAG(
        dag_id=spec["dag_id"],
        description=f"Lakehouse daily pipeline ({spec['env']}): bronze, silver, quality, gold",
        schedule=CronTriggerTimetable(spec["schedule"], timezone=spec["timezone"]),
        start_date=_start_date(spec),
        catchup=spec["catchup"],
        max_active_runs=spec["max_active_runs"],
        default_args=_default_args(spec),
        user_defined_macros={"lakehouse_date": lakehouse_date},
        on_success_callback=_Callback(run_succeeded, spec),
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
            interval=timedelta(minutes=spec["deadline_minutes"]),
            callback=SyncCallback(
                deadline_missed,
                kwargs={
                    k: spec[k]
                    for k in (
                        "env",
                        "aws_conn_id",
                        "sns_topic_arn",
                        "metrics_namespace",
                        "deadline_minutes",
                    )
                },
            ),
        ),
        tags=["lakehouse", spec["env"]],
    ) as dag:
        previous = None
        for step in spec["steps"]:
            name = step["step"]
            if spec["target"] == "serverless":
                task = _serverless_task(spec, name, step["run"])
            else:
                task = LakehouseAddStepOperator(
                    task_id=name,
                    job_flow_name=spec["cluster_name"],
                    cluster_states=["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"],
                    steps=[step["cluster_step"]],
                    wait_for_completion=True,
                    deferrable=spec["deferrable"],
                    waiter_delay=WAITER_DELAY_SECONDS,
                    waiter_max_attempts=_waiter_attempts(spec),
                )
            if previous is not None:
                previous >> task
            previous = task
    return dag


def maintenance_dag(spec: dict[str, Any]) -> DAG | None:
    """The weekly maintenance DAG (None when emr/schedule.yaml defines no maintenance)."""
    m = spec.get("maintenance")
    if not m:
        return None
    with DAG(
        dag_id=spec["maintenance_dag_id"],
        description=f"Lakehouse weekly maintenance ({spec['env']}): OPTIMIZE, VACUUM, quality",
        schedule=CronTriggerTimetable(m["schedule"], timezone=spec["timezone"]),
        start_date=_start_date(spec),
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(spec),
        tags=["lakehouse", spec["env"]],
    ) as dag:
        _serverless_task(spec, "maintain", m["run"])
    return dag
