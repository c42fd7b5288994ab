"""EMR Serverless: the application (created once, reused by name), the daily job run (one per day,
never two), waiting for it with backoff and a deadline, and backfills with bounded parallelism.

Submitting the same day twice must not start two runs. The request carries an idempotency token
(`clientToken`, from job name + env + date), but AWS honours it only for a limited time (and moto
not at all), so before starting a run we also look for a run of the same name
(`<job>-<YYYY-MM-DD>`) that is queued, running or succeeded, and reuse it. Failed and cancelled runs
do not count: submitting again retries the day. `rerun=True` ignores a succeeded run (to re-process
a day on purpose) but still never starts a second run while one is in flight.

Functions that talk to EMR Serverless take the boto3 client itself (`es`), so tests can wrap it.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from lakehouse.core.config import Config, ConfigError, join_uri
from lakehouse.emr.bundle import NAMESPACE_ENV, TOPIC_ENV, BundleLayout, spark_submit_args
from lakehouse.emr.clients import Request
from lakehouse.emr.definitions import EmrDefinitions
from lakehouse.emr.wait import Backoff, WaitTimeout, print_change, wait_for_state

LIVE_APPLICATION_STATES = ["CREATING", "CREATED", "STARTING", "STARTED", "STOPPING", "STOPPED"]
IN_FLIGHT_RUN_STATES = ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED", "CANCELLING"]
BLOCKING_RUN_STATES = [*IN_FLIGHT_RUN_STATES, "SUCCESS"]
FINAL_RUN_STATES = {"SUCCESS", "FAILED", "CANCELLED"}
ALL_RUN_STATES = [*BLOCKING_RUN_STATES, "FAILED", "CANCELLED"]
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# ---------------------------------------------------------------- request builders (pure)


def application_token(config: Config, defs: EmrDefinitions) -> str:
    """CreateApplication's idempotency token: one per application name (names are per env)."""
    return _token(f"create-application-{defs.serverless.application.name}")


def create_application_request(config: Config, defs: EmrDefinitions) -> Request:
    """CreateApplication from `emr/serverless.yaml`: release, initial and maximum capacity,
    auto-start and auto-stop (idle timeout)."""
    app = defs.serverless.application

    def worker_config(cpu: str, memory: str, disk: str | None) -> dict[str, str]:
        out = {"cpu": cpu, "memory": memory}
        if disk is not None:
            out["disk"] = disk
        return out

    params: dict[str, Any] = {
        "name": app.name,
        "releaseLabel": app.release_label,
        "type": app.type,
        "architecture": app.architecture,
        "clientToken": application_token(config, defs),
        "initialCapacity": {
            kind: {
                "workerCount": w.worker_count,
                "workerConfiguration": worker_config(w.cpu, w.memory, w.disk),
            }
            for kind, w in sorted(app.initial_capacity.items())
        },
        "maximumCapacity": worker_config(
            app.maximum_capacity.cpu, app.maximum_capacity.memory, app.maximum_capacity.disk
        ),
        "autoStartConfiguration": {"enabled": app.auto_start},
        "autoStopConfiguration": {
            "enabled": True,
            "idleTimeoutMinutes": app.auto_stop_idle_minutes,
        },
        "tags": {"project": config.project, "env": config.env, **defs.account.tags},
    }
    if app.subnet_ids:
        params["networkConfiguration"] = {
            "subnetIds": list(app.subnet_ids),
            "securityGroupIds": list(app.security_group_ids),
        }
    return Request("emr-serverless", "create_application", params)


def list_applications_request() -> Request:
    return Request("emr-serverless", "list_applications", {"states": LIVE_APPLICATION_STATES})


def run_name(defs: EmrDefinitions, day: date) -> str:
    """The job run's name, which identifies the day: `daily-pipeline-2024-01-03`."""
    return f"{defs.serverless.job.name}-{day.isoformat()}"


def client_token(defs: EmrDefinitions, env: str, day: date, earlier_runs: int = 0) -> str:
    """The idempotency token of the day's run: job name + env + date, plus the attempt number
    once the day has earlier runs (a failed or re-run day must not reuse the token of a run AWS
    still remembers, or it would get that old run back instead of a new one)."""
    base = f"{defs.serverless.job.name}-{env}-{day.isoformat()}"
    return _token(base if earlier_runs == 0 else f"{base}-attempt{earlier_runs + 1}")


def _token(text: str) -> str:
    """A valid clientToken ([A-Za-z0-9._-], at most 64): readable when short, hashed if long."""
    safe = _TOKEN_UNSAFE.sub("-", text)
    if len(safe) <= 64:
        return safe
    return f"{safe[:47]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def spark_submit_parameters(
    defs: EmrDefinitions,
    layout: BundleLayout,
    extra_jars: Sequence[str] = (),
    extra_conf: Mapping[str, str] | None = None,
) -> str:
    """The run's sparkSubmitParameters: the bundle (`--py-files`, `--jars` with Deequ and the
    cluster's Delta jars, then `extra_jars`), Delta and Glue settings, the bundle's Python and
    the notification target for the driver, then `extra_conf` (a job's own, e.g. the stream's)."""
    python = defs.bundle.python
    conf = {
        **defs.serverless.job.spark_conf,
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": python,
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": python,
        "spark.executorEnv.PYSPARK_PYTHON": python,
        f"spark.emr-serverless.driverEnv.{TOPIC_ENV}": defs.account.sns_topic_arn,
        f"spark.emr-serverless.driverEnv.{NAMESPACE_ENV}": defs.account.metrics_namespace,
        **(extra_conf or {}),
    }
    args = spark_submit_args(layout, [*defs.serverless.job.extra_jars, *extra_jars], conf)
    spaced = [a for a in args if any(ch.isspace() for ch in a)]
    if spaced:
        raise ConfigError(f"emr/serverless.yaml: spark setting with whitespace: {spaced[0]!r}")
    return " ".join(args)


def start_job_run_params(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    *,
    name: str,
    token: str,
    arguments: list[str],
    entry_point: str | None = None,
) -> dict[str, Any]:
    """StartJobRun parameters (the API's own names, as EventBridge Scheduler's universal target
    also wants them) of `jobs/<entry_point>.py` (default: the daily job's)."""
    assert config.aws is not None
    job = defs.serverless.job
    return {
        "applicationId": application_id,
        "clientToken": token,
        "executionRoleArn": defs.account.job_role_arn,
        "name": name,
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": layout.job_uri(entry_point or job.entry_point),
                "entryPointArguments": arguments,
                "sparkSubmitParameters": spark_submit_parameters(defs, layout),
            }
        },
        "configurationOverrides": {
            "monitoringConfiguration": {
                "s3MonitoringConfiguration": {
                    "logUri": join_uri(config.aws.logs_uri, "serverless") + "/"
                },
                "cloudWatchLoggingConfiguration": {
                    "enabled": True,
                    "logGroupName": defs.account.log_group,
                },
            }
        },
        "retryPolicy": {"maxAttempts": job.max_attempts},
        "executionTimeoutMinutes": job.execution_timeout_minutes,
    }


def daily_run_request(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    day: date,
    earlier_runs: int = 0,
) -> Request:
    """StartJobRun of the daily pipeline for `day`: `jobs/<entry_point>.py --env ENV --date D`."""
    params = start_job_run_params(
        config,
        defs,
        layout,
        application_id,
        name=run_name(defs, day),
        token=client_token(defs, config.env, day, earlier_runs),
        arguments=["--env", config.env, "--date", day.isoformat()],
    )
    return Request("emr-serverless", "start_job_run", params)


def run_plan(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, days: Iterable[date], wait: bool
) -> list[Request]:
    """What `run` / `backfill` send, for `--dry-run`."""
    name = defs.serverless.application.name
    app_id = f"<id of application {name!r}>"
    plan = [
        list_applications_request(),
        create_application_request(config, defs).only_if(
            f"only if no application is named {name!r}"
        ),
    ]
    for day in days:
        plan.append(
            Request(
                "emr-serverless",
                "list_job_runs",
                {"applicationId": app_id, "states": BLOCKING_RUN_STATES},
            )
        )
        plan.append(
            daily_run_request(config, defs, layout, app_id, day).only_if(
                f"only if no run named {run_name(defs, day)!r} is queued, running or succeeded"
            )
        )
        if wait:
            run_id = f"<id of run {run_name(defs, day)!r}>"
            plan.append(
                Request(
                    "emr-serverless", "get_job_run", {"applicationId": app_id, "jobRunId": run_id}
                ).only_if("repeated with capped exponential backoff until the run is final")
            )
            plan.append(
                Request(
                    "emr-serverless",
                    "cancel_job_run",
                    {"applicationId": app_id, "jobRunId": run_id},
                ).only_if("only if the deadline passes first")
            )
    return plan


# ---------------------------------------------------------------- actions


def find_application(es: Any, name: str) -> str | None:
    """The id of the (not terminated) application called `name`, if any."""
    paginator = es.get_paginator("list_applications")
    for page in paginator.paginate(**list_applications_request().params):
        for app in page.get("applications", []):
            if app["name"] == name:
                return str(app["id"])
    return None


def ensure_application(
    es: Any, config: Config, defs: EmrDefinitions, log: Callable[[str], None] = print
) -> str:
    """Reuse the application with the configured name, or create it; return its id."""
    name = defs.serverless.application.name
    found = find_application(es, name)
    if found is not None:
        return found
    request = create_application_request(config, defs)
    response = es.create_application(**request.params)
    log(f"created EMR Serverless application {name}: {response['applicationId']}")
    return str(response["applicationId"])


@dataclass(frozen=True)
class RunRef:
    """A job run of one day: its id, its state when seen, and whether this call started it."""

    run_id: str
    state: str
    started: bool


def find_runs(es: Any, application_id: str, name: str, states: list[str]) -> list[dict[str, Any]]:
    """Runs of the application with this name, in the given states."""
    runs = []
    paginator = es.get_paginator("list_job_runs")
    for page in paginator.paginate(applicationId=application_id, states=states):
        runs += [r for r in page.get("jobRuns", []) if r.get("name") == name]
    return runs


def submit_daily_run(
    es: Any,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    day: date,
    *,
    rerun: bool = False,
    log: Callable[[str], None] = print,
) -> RunRef:
    """Start the day's run unless one of the same name is queued, running or (unless `rerun`)
    succeeded, in which case that run is returned and nothing is started."""
    return submit_named_run(
        es,
        application_id,
        run_name(defs, day),
        lambda earlier: daily_run_request(config, defs, layout, application_id, day, earlier),
        rerun=rerun,
        log=log,
    )


def submit_named_run(
    es: Any,
    application_id: str,
    name: str,
    request: Callable[[int], Request],
    *,
    rerun: bool = False,
    log: Callable[[str], None] = print,
) -> RunRef:
    """Start the run `request(earlier runs of the name)` unless a run called `name` is queued,
    running or (unless `rerun`) succeeded: then that run is returned and nothing is started."""
    blocking = IN_FLIGHT_RUN_STATES if rerun else BLOCKING_RUN_STATES
    existing = find_runs(es, application_id, name, blocking)
    if existing:
        run = existing[0]
        log(f"run {name} already exists: {run['id']} ({run['state']}); not starting another")
        return RunRef(str(run["id"]), str(run["state"]), started=False)
    earlier = len(find_runs(es, application_id, name, ALL_RUN_STATES))
    response = es.start_job_run(**request(earlier).params)
    run_id = str(response["jobRunId"])
    log(f"started run {name}: {run_id}")
    return RunRef(run_id, "SUBMITTED", started=True)


def run_state(es: Any, application_id: str, run_id: str) -> str:
    return str(es.get_job_run(applicationId=application_id, jobRunId=run_id)["jobRun"]["state"])


def wait_for_run(
    es: Any,
    application_id: str,
    run_id: str,
    backoff: Backoff,
    *,
    what: str | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    on_change: Callable[[str, str], None] = print_change,
) -> str:
    """Wait for the run to finish and return its final state. On the deadline the run is
    cancelled and `WaitTimeout` raised."""
    kwargs: dict[str, Any] = {"on_change": on_change}
    if sleep is not None:
        kwargs["sleep"] = sleep
    if clock is not None:
        kwargs["clock"] = clock
    label = what or f"run {run_id}"
    try:
        return wait_for_state(
            label,
            lambda: run_state(es, application_id, run_id),
            FINAL_RUN_STATES,
            backoff,
            **kwargs,
        )
    except WaitTimeout:
        es.cancel_job_run(applicationId=application_id, jobRunId=run_id)
        on_change(label, "CANCELLED by lakehouse: deadline reached")
        raise


def backfill(
    es: Any,
    submit: Callable[[date], RunRef],
    application_id: str,
    days: Iterable[date],
    parallel: int,
    backoff: Backoff,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    on_change: Callable[[str, str], None] = print_change,
) -> dict[date, str]:
    """Run `submit(day)` for each day with at most `parallel` runs in flight: when that many are
    running, poll them (backoff between rounds) and submit the next day only once one finishes.
    Returns each day's final state. On the deadline every run still in flight is cancelled and
    `WaitTimeout` raised."""
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    pending = deque(days)
    in_flight: dict[str, date] = {}
    last_state: dict[str, str] = {}
    results: dict[date, str] = {}
    start = clock()
    deadline = start + backoff.deadline_s
    next_delay = backoff.delays()
    while pending or in_flight:
        while pending and len(in_flight) < parallel:
            day = pending.popleft()
            ref = submit(day)
            if ref.state in FINAL_RUN_STATES:
                results[day] = ref.state
            else:
                in_flight[ref.run_id] = day
        finished = False
        for run_id, day in list(in_flight.items()):
            state = run_state(es, application_id, run_id)
            if state != last_state.get(run_id):
                on_change(f"run {day.isoformat()} ({run_id})", state)
                last_state[run_id] = state
            if state in FINAL_RUN_STATES:
                results[day] = state
                del in_flight[run_id]
                finished = True
        if finished or not in_flight:
            next_delay = backoff.delays()
            continue
        now = clock()
        if now >= deadline:
            for run_id, day in in_flight.items():
                es.cancel_job_run(applicationId=application_id, jobRunId=run_id)
                on_change(f"run {day.isoformat()} ({run_id})", "CANCELLED by lakehouse: deadline")
            raise WaitTimeout(f"backfill ({len(in_flight)} runs)", "RUNNING", now - start)
        sleep(min(next_delay(), deadline - now))
    return results


def summarise(results: Mapping[date, str]) -> str:
    """One line per day, then the count of days that did not succeed."""
    lines = [f"{day.isoformat()}: {state}" for day, state in sorted(results.items())]
    bad = sum(1 for s in results.values() if s != "SUCCESS")
    lines.append(f"{len(results) - bad} of {len(results)} days succeeded")
    return "\n".join(lines)
