"""The DAG bundle parses as Airflow parses it, and each DAG is what emr/*.yaml says: the tasks and
their order, the schedule, retries, timeouts and the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

STEPS = ["bronze", "silver", "quality", "gold"]


def test_the_dag_bundle_imports_without_errors(bundle_dagbag: Any, dagbag: Any) -> None:
    assert bundle_dagbag.import_errors == {}
    assert sorted(bundle_dagbag.dag_ids) == ["lakehouse_daily", "lakehouse_maintenance"]
    assert dagbag.import_errors == {}


def test_on_the_cluster_each_step_is_one_task_that_adds_it_and_waits(dagbag: Any) -> None:
    dag = dagbag.get_dag("lakehouse_daily_cluster")

    assert [t.task_id for t in dag.topological_sort()] == STEPS
    silver = dag.get_task("silver")
    assert type(silver).__name__ == "LakehouseAddStepOperator"
    assert silver.job_flow_name == "lakehouse-dev"
    assert [s["Name"] for s in silver.steps] == ["silver {{ lakehouse_date(dag_run) }}"]
    assert silver.deferrable is True  # waits in the triggerer for its step
    assert silver.waiter_delay * silver.waiter_max_attempts == 2 * 3600
    assert silver.retries == 3


def test_the_daily_dag_runs_the_four_steps_in_order(dagbag: Any) -> None:
    dag = dagbag.get_dag("lakehouse_daily")

    assert [t.task_id for t in dag.topological_sort()] == STEPS
    for before, after in pairwise(STEPS):
        assert dag.get_task(after).upstream_task_ids == {before}
    assert dag.get_task("bronze").upstream_task_ids == set()
    assert {type(t).__name__ for t in dag.tasks} == {"LakehouseServerlessStepOperator"}


def test_the_daily_dag_fires_when_the_built_in_schedule_does(dagbag: Any) -> None:
    dag = dagbag.get_dag("lakehouse_daily")

    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert dag.timetable.expression == "0 2 * * *"  # emr/schedule.yaml: cron(0 2 * * ? *)
    assert str(dag.timetable.timezone) == "UTC"
    assert dag.start_date == datetime(2024, 1, 1, tzinfo=UTC)
    assert dag.catchup is False  # unpausing must not replay every day since start_date
    assert dag.max_active_runs == 1


def test_every_task_retries_three_times_with_backoff_within_two_hours(dagbag: Any) -> None:
    for dag_id in ("lakehouse_daily", "lakehouse_maintenance"):
        for task in dagbag.get_dag(dag_id).tasks:
            assert task.retries == 3
            assert task.retry_delay == timedelta(minutes=5)
            assert task.retry_exponential_backoff == 2.0
            assert task.max_retry_delay == timedelta(minutes=30)
            assert task.execution_timeout == timedelta(hours=2)
            assert task.deferrable is True
            assert task.waiter_delay * task.waiter_max_attempts == 2 * 3600
            assert task.on_failure_callback, task.task_id


def test_the_daily_run_must_finish_by_the_monitoring_deadline(dagbag: Any) -> None:
    dag = dagbag.get_dag("lakehouse_daily")

    (alert,) = dag.deadline
    assert type(alert.reference).__name__ == "DagRunLogicalDateDeadline"
    # emr/monitoring.yaml's heartbeat at 03:59 UTC, the run fired at 02:00 UTC.
    assert alert.interval == timedelta(hours=1, minutes=59)
    assert alert.callback.path == "lakehouse.emr.airflow_dags.deadline_missed"
    assert alert.callback.kwargs == {
        "env": "dev",
        "aws_conn_id": "aws_default",
        "sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs",
        "metrics_namespace": "Lakehouse",
        "deadline_minutes": 119.0,
    }


def test_each_task_submits_its_own_job_with_the_processing_date(
    dagbag: Any, lakehouse_dev: dict[str, Any]
) -> None:
    dag = dagbag.get_dag("lakehouse_daily")
    artifacts = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"

    for step in STEPS:
        task = dag.get_task(step)
        assert task.application_id == lakehouse_dev["app_id"]
        assert task.execution_role_arn == "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"
        assert task.name == f"daily-pipeline-{step}-{{{{ lakehouse_date(dag_run) }}}}"
        submit = task.job_driver["sparkSubmit"]
        assert submit["entryPoint"] == f"{artifacts}/jobs/{step}.py"
        assert submit["entryPointArguments"] == [
            "--env",
            "dev",
            "--date",
            "{{ lakehouse_date(dag_run) }}",
        ]
        # No EMR retry policy: Airflow retries the task (three times), EMR would multiply that.
        assert task.config == {"executionTimeoutMinutes": 120}


def test_the_maintenance_dag_runs_weekly_on_sunday(dagbag: Any) -> None:
    dag = dagbag.get_dag("lakehouse_maintenance")

    assert [t.task_id for t in dag.tasks] == ["maintain"]
    assert dag.timetable.expression == "0 4 * * SUN"  # emr/schedule.yaml: cron(0 4 ? * SUN *)
    assert dag.catchup is False
    (task,) = dag.tasks
    assert task.job_driver["sparkSubmit"]["entryPoint"].endswith("/jobs/maintain.py")
    assert task.job_driver["sparkSubmit"]["entryPointArguments"] == ["--env", "dev"]


def test_the_bundle_carries_its_own_lakehouse_package(airflow_db: Any) -> None:
    """An Airflow without the lakehouse installed (MWAA) parses the bundle: its DAGs import the
    package from inside the zip."""
    import subprocess
    import sys

    from conftest import DAGS

    script = f"""
import sys
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("/lib")]
try:
    import lakehouse
    raise SystemExit("lakehouse importable outside the bundle: " + lakehouse.__file__)
except ImportError:
    pass
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(DAGS / "lakehouse_dags.zip")!r})
import lakehouse.emr.airflow_dags as dags
print(sorted(bag.dag_ids), bag.import_errors, dags.__file__.split("/")[-4:])
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == (
        "['lakehouse_daily', 'lakehouse_maintenance'] {} "
        "['lakehouse_dags.zip', 'lakehouse', 'emr', 'airflow_dags.py']"
    )
