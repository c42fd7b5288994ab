"""What Airflow (`lakehouse.emr.airflow`) and Step Functions (`lakehouse.emr.stepfunctions`) run,
built from the definitions every `emr` command reads, so the three orchestrators (with the
EventBridge schedule of `lakehouse.emr.schedule`) cannot drift apart:

- the steps: `step_jobs` of `emr/cluster.yaml`, the one list (bronze, silver, quality, gold), each
  `jobs/<step>.py --env ENV --date D` as an EMR Serverless job run (`step_run_params`: the bundle,
  Spark settings, role, logs and notification target of `start_job_run_params`, limited to
  `task_timeout_minutes`, with no EMR retry policy: the orchestrator retries) or as a cluster
  step (`cluster.step_params`);
- the schedules: the cron expressions of `emr/schedule.yaml` (`cron_5_fields`), and the deadline
  of `emr/monitoring.yaml` as a time after the daily run fires (`deadline_after_fire`);
- the processing date: the UTC day before the run fired (`processing_date`, as the schedule's
  `--scheduled-time` gives it), or the day a run was asked for.

Job runs of a step are named `<job>-<step>-<YYYY-MM-DD>` (`daily-pipeline-bronze-2024-01-03`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from lakehouse.core.config import Config, ConfigError
from lakehouse.emr.bundle import BundleLayout
from lakehouse.emr.definitions import EmrDefinitions
from lakehouse.emr.operations import MAINTAIN
from lakehouse.emr.schedule import processing_date
from lakehouse.emr.serverless import start_job_run_params

__all__ = [
    "cron_5_fields",
    "deadline_after_fire",
    "maintenance_run_params",
    "pipeline_steps",
    "processing_date",
    "retry_delays_seconds",
    "step_run_name",
    "step_run_params",
]


def pipeline_steps(defs: EmrDefinitions) -> tuple[str, ...]:
    """The daily pipeline's steps, in order (`step_jobs` of emr/cluster.yaml)."""
    return tuple(defs.cluster.step_jobs)


def step_run_name(defs: EmrDefinitions, step: str, day: str) -> str:
    """The job run of `step` for `day` (a date, or a template that renders to one)."""
    return f"{defs.serverless.job.name}-{step}-{day}"


def step_run_params(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    step: str,
    day: str,
    token: str,
) -> dict[str, Any]:
    """StartJobRun parameters (the API's names) of `jobs/<step>.py --env ENV --date <day>`,
    limited to the orchestration's task timeout."""
    params = start_job_run_params(
        config,
        defs,
        layout,
        application_id,
        name=step_run_name(defs, step, day),
        token=token,
        arguments=["--env", config.env, "--date", day],
        entry_point=step,
    )
    return _orchestrated(defs, params)


def maintenance_run_params(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    name: str,
    token: str,
) -> dict[str, Any]:
    """StartJobRun parameters of the weekly maintenance (`jobs/maintain.py --env ENV`)."""
    params = start_job_run_params(
        config,
        defs,
        layout,
        application_id,
        name=name,
        token=token,
        arguments=["--env", config.env],
        entry_point=MAINTAIN,
    )
    return _orchestrated(defs, params)


def _orchestrated(defs: EmrDefinitions, params: dict[str, Any]) -> dict[str, Any]:
    """A run an orchestrator starts: limited to the task timeout, and not retried by EMR (the
    orchestrator retries the task, `retries` times: EMR's own retry policy on top would multiply
    the attempts)."""
    params["executionTimeoutMinutes"] = defs.orchestration.task_timeout_minutes
    params.pop("retryPolicy", None)
    return params


def cron_5_fields(expression: str) -> str:
    """An EventBridge `cron(min hour day-of-month month day-of-week year)` as the five-field cron
    Airflow reads: `cron(0 2 * * ? *)` -> `0 2 * * *`, `cron(0 4 ? * SUN *)` -> `0 4 * * SUN`.
    Only a year of `*` has a five-field equivalent."""
    text = expression.strip()
    if not (text.startswith("cron(") and text.endswith(")")):
        raise ConfigError(f"not an EventBridge cron expression: {expression!r}")
    fields = text[5:-1].split()
    if len(fields) != 6:
        raise ConfigError(f"{expression!r}: a cron expression has 6 fields, found {len(fields)}")
    minute, hour, dom, month, dow, year = fields
    if year != "*":
        raise ConfigError(f"{expression!r}: a year other than * has no five-field cron")
    if any(ch in f for f in (dom, dow) for ch in "LW#"):
        raise ConfigError(f"{expression!r}: L, W and # have no five-field cron")
    if any(ch.isdigit() for ch in dow):
        # EventBridge counts 1 as Sunday, cron 1 as Monday: names mean the same in both.
        raise ConfigError(f"{expression!r}: name the day of the week (SUN-SAT), not a number")
    return " ".join([minute, hour, dom.replace("?", "*"), month, dow.replace("?", "*")])


def _time_of_day(expression: str) -> timedelta:
    minute, hour = cron_5_fields(expression).split()[:2]
    if not (minute.isdigit() and hour.isdigit()):
        raise ConfigError(f"{expression!r}: the deadline needs one fixed time of day")
    return timedelta(hours=int(hour), minutes=int(minute))


def deadline_after_fire(defs: EmrDefinitions) -> timedelta:
    """How long after the daily run fires it must have finished: from the schedule's time of day
    to the deadline heartbeat's (02:00 -> 03:59 UTC: 1 h 59 min)."""
    fire = _time_of_day(defs.schedule.expression)
    deadline = _time_of_day(defs.monitoring.deadline.expression)
    return (deadline - fire) % timedelta(days=1)


def retry_delays_seconds(defs: EmrDefinitions) -> list[float]:
    """The wait before each retry: `retry_delay_seconds`, times `retry_backoff_rate` at each
    further retry, capped at `max_retry_delay_seconds` (what Step Functions' Retry does)."""
    o = defs.orchestration
    return [
        min(o.retry_delay_seconds * o.retry_backoff_rate**i, float(o.max_retry_delay_seconds))
        for i in range(o.retries)
    ]


def day_of_run(logical_date: datetime | None, run_after: datetime, requested: str | None) -> date:
    """The day an orchestrated run processes: the day asked for (`requested`, YYYY-MM-DD) when
    there is one, else the UTC day before the run's logical date (the time it was scheduled to
    fire), or before the time it was triggered when it has none (a manual Airflow 3 run)."""
    if requested:
        try:
            return date.fromisoformat(str(requested))
        except ValueError as exc:
            raise ConfigError(f"date {requested!r} is not YYYY-MM-DD") from exc
    fired = logical_date if logical_date is not None else run_after
    return processing_date(fired.isoformat())
