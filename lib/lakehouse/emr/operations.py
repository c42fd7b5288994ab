"""Operations jobs on EMR: maintenance (`jobs/maintain.py`: OPTIMIZE, VACUUM, the full quality
scan), erasure (`jobs/erase.py --customer ID`) and backfill (`jobs/backfill.py --from --to`: the
local `lakehouse backfill`, reprocessing and diff), as EMR Serverless job runs or as steps of the
EMR on EC2 cluster, submitted by `lakehouse emr maintain` / `erase` / `backfill`; maintenance also
runs weekly from its own schedule (`lakehouse.emr.schedule`).

Like the daily run, an operations job is identified by its name (`maintenance-2024-01-07`,
`erasure-<request id>`, `backfill-2024-01-01-2024-01-31`): submitting it again while a run or step
of that name is queued, running or done starts nothing (a failed one may be submitted again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from lakehouse.core.config import Config, ConfigError
from lakehouse.emr import cluster, serverless
from lakehouse.emr.bundle import BundleLayout
from lakehouse.emr.clients import AwsClients, Request
from lakehouse.emr.definitions import EmrDefinitions

MAINTAIN, ERASE, BACKFILL, STREAM = "maintain", "erase", "backfill", "stream"


@dataclass(frozen=True)
class OpsJob:
    """One operations job: `jobs/<entry_point>.py <arguments>`, identified by `name`."""

    entry_point: str
    name: str
    arguments: tuple[str, ...]


def maintenance_job(config: Config, day: date, no_quality: bool = False) -> OpsJob:
    """The maintenance of `day` (one per day at most)."""
    extra = ("--no-quality",) if no_quality else ()
    return OpsJob(MAINTAIN, f"maintenance-{day.isoformat()}", ("--env", config.env, *extra))


def erasure_job(
    config: Config, customer_id: str, request_id: str, reason: str | None = None
) -> OpsJob:
    """The erasure request `request_id` of customer `customer_id` (identifiers only: the reason
    is free text the audit table keeps, and must hold no personal data)."""
    arguments = ["--env", config.env, "--customer", customer_id, "--request-id", request_id]
    if reason:
        arguments += ["--reason", reason]
    return OpsJob(ERASE, f"erasure-{request_id}", tuple(arguments))


def backfill_job(config: Config, first: date, last: date, dry_run: bool = False) -> OpsJob:
    """The backfill of ingest dates `first`..`last` (`lakehouse backfill`: reprocess the landing
    files of the range on a scratch copy, diff, publish unless `dry_run`), as one job."""
    span = f"{first.isoformat()}-{last.isoformat()}"
    arguments = ["--env", config.env, "--from", first.isoformat(), "--to", last.isoformat()]
    if dry_run:
        return OpsJob(BACKFILL, f"backfill-{span}-dry-run", (*arguments, "--dry-run"))
    return OpsJob(BACKFILL, f"backfill-{span}", tuple(arguments))


def stream_job(config: Config) -> OpsJob:
    """The streaming ingestion (`lakehouse stream` with conf/<env>.yaml's `stream` section),
    running until cancelled: one per stream name (`stream-<name>`)."""
    return OpsJob(STREAM, f"stream-{config.stream.name}", ("--env", config.env))


def _streaming_extras(config: Config, defs: EmrDefinitions) -> tuple[list[str], dict[str, str]]:
    """What the stream adds to a job's spark-submit: the Kinesis connector EMR ships when the
    stream reads Kinesis (the Kafka connector is among the bundle's jars), and the streaming
    settings of emr/streaming.yaml."""
    kinesis = config.stream.source_type == "kinesis"
    jars = [defs.streaming.kinesis_connector_jar] if kinesis else []
    conf = dict(defs.streaming.spark_conf)
    spaced = [f"{k}={v}" for k, v in conf.items() if any(c.isspace() for c in k + v)]
    if spaced:
        raise ConfigError(f"emr/streaming.yaml: spark setting with whitespace: {spaced[0]!r}")
    return jars, conf


# ---------------------------------------------------------------- EMR Serverless


def run_request(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    job: OpsJob,
    earlier_runs: int = 0,
) -> Request:
    """StartJobRun of `job`; its token is the job's name and env (and the attempt, once runs of
    that name exist), so a repeated request within AWS's token window starts nothing new."""
    base = f"{job.name}-{config.env}"
    token = serverless._token(base if earlier_runs == 0 else f"{base}-attempt{earlier_runs + 1}")
    params = serverless.start_job_run_params(
        config,
        defs,
        layout,
        application_id,
        name=job.name,
        token=token,
        arguments=list(job.arguments),
        entry_point=job.entry_point,
    )
    if job.entry_point == STREAM:
        params = _streaming_run(config, defs, layout, params)
    return Request("emr-serverless", "start_job_run", params)


def _streaming_run(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, params: dict[str, Any]
) -> dict[str, Any]:
    """A STREAMING job run (EMR Serverless 7.1+): restarted from its checkpoint after a failure,
    up to `max_failed_attempts_per_hour`; no execution timeout (it runs until cancelled)."""
    submit = dict(params["jobDriver"]["sparkSubmit"])
    jars, conf = _streaming_extras(config, defs)
    submit["sparkSubmitParameters"] = serverless.spark_submit_parameters(defs, layout, jars, conf)
    streaming = {k: v for k, v in params.items() if k != "executionTimeoutMinutes"}
    streaming["mode"] = "STREAMING"
    streaming["retryPolicy"] = {
        "maxFailedAttemptsPerHour": defs.streaming.serverless.max_failed_attempts_per_hour
    }
    streaming["jobDriver"] = {"sparkSubmit": submit}
    return streaming


def run_plan(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, job: OpsJob
) -> list[Request]:
    """What submitting `job` to EMR Serverless sends, for `--dry-run`."""
    name = defs.serverless.application.name
    app_id = f"<id of application {name!r}>"
    return [
        serverless.list_applications_request(),
        serverless.create_application_request(config, defs).only_if(
            f"only if no application is named {name!r}"
        ),
        Request(
            "emr-serverless",
            "list_job_runs",
            {"applicationId": app_id, "states": serverless.BLOCKING_RUN_STATES},
        ),
        run_request(config, defs, layout, app_id, job).only_if(
            f"only if no run named {job.name!r} is queued, running or succeeded"
        ),
    ]


def submit_run(
    es: Any,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    application_id: str,
    job: OpsJob,
    rerun: bool = False,
    log: Callable[[str], None] = print,
) -> serverless.RunRef:
    """Start `job` on the application unless a run of its name is queued, running or (unless
    `rerun`) succeeded."""
    return serverless.submit_named_run(
        es,
        application_id,
        job.name,
        lambda earlier: run_request(config, defs, layout, application_id, job, earlier),
        rerun=rerun,
        log=log,
    )


# ---------------------------------------------------------------- EMR on EC2


def step_params(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, job: OpsJob
) -> dict[str, Any]:
    """The cluster step of `job` (spark-submit in cluster mode, like the daily steps)."""
    if job.entry_point == STREAM:
        return _streaming_step(config, defs, layout, job)
    return cluster.step_params(defs, layout, job.name, job.entry_point, list(job.arguments))


def _streaming_step(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, job: OpsJob
) -> dict[str, Any]:
    """The stream as a cluster step that hands the application to YARN and ends
    (`spark.yarn.submit.waitAppCompletion=false`): a step that ran as long as the stream would
    hold the cluster's step queue, and the daily steps behind it would never start. A failure
    continues (`streaming.cluster.action_on_failure`)."""
    jars, conf = _streaming_extras(config, defs)
    conf = {"spark.yarn.submit.waitAppCompletion": "false", **conf}
    step = cluster.step_params(
        defs, layout, job.name, job.entry_point, list(job.arguments), jars, conf
    )
    return {**step, "ActionOnFailure": defs.streaming.cluster.action_on_failure}


def step_plan(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    job: OpsJob,
    cluster_id: str | None,
) -> list[Request]:
    """What submitting `job` as a cluster step sends, for `--dry-run`."""
    plan = [] if cluster_id else [cluster.list_active_clusters_request()]
    target = cluster_id or f"<id of the active cluster named {defs.cluster.name!r}>"
    plan.append(
        Request("emr", "list_steps", {"ClusterId": target, "StepStates": cluster.LIVE_STEP_STATES})
    )
    plan.append(
        Request(
            "emr",
            "add_job_flow_steps",
            {"JobFlowId": target, "Steps": [step_params(config, defs, layout, job)]},
        ).only_if(f"only if no step named {job.name!r} is pending, running or done")
    )
    return plan


def submit_step(
    clients: AwsClients,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    job: OpsJob,
    cluster_id: str | None = None,
    rerun: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[str, str]:
    """Add `job`'s step to the cluster unless a step of its name is pending, running or (unless
    `rerun`) done there; returns the cluster id and the step id."""
    target = cluster.resolve_cluster(clients, defs, cluster_id)
    blocking = [s for s in cluster.LIVE_STEP_STATES if not (rerun and s == "COMPLETED")]
    paginator = clients.client("emr").get_paginator("list_steps")
    for page in paginator.paginate(ClusterId=target, StepStates=blocking):
        for step in page.get("Steps", []):
            if step["Name"] == job.name:
                log(f"step {job.name} already on cluster {target}: {step['Id']}; not submitting")
                return target, str(step["Id"])
    request = Request(
        "emr",
        "add_job_flow_steps",
        {"JobFlowId": target, "Steps": [step_params(config, defs, layout, job)]},
    )
    step_id = str(clients.call(request)["StepIds"][0])
    log(f"submitted step {step_id}: {job.name}")
    return target, step_id
