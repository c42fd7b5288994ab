"""EMR on EC2: the cluster (instance fleets, managed scaling, auto-termination, Delta and Glue
configurations, security configuration) and the daily pipeline as ordered spark-submit steps.

Steps use `ActionOnFailure=CANCEL_AND_WAIT` by default: a failed step cancels the steps after it
(gold never runs on a silver that failed) and leaves the cluster up so its logs and state can be
inspected and a fixed day re-submitted; the idle auto-termination policy then shuts it down.
`TERMINATE_CLUSTER` would throw that away and kill any other work on a shared cluster, and
`CONTINUE` would run later layers on bad input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from lakehouse.core.config import Config, ConfigError, join_uri
from lakehouse.emr.bundle import NAMESPACE_ENV, TOPIC_ENV, BundleLayout, spark_submit_args
from lakehouse.emr.clients import AwsClients, Request, error_code
from lakehouse.emr.definitions import ConfigurationDef, EmrDefinitions, FleetDef
from lakehouse.emr.wait import Backoff, WaitTimeout, print_change, wait_for_state

ACTIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
LIVE_STEP_STATES = ["PENDING", "CANCEL_PENDING", "RUNNING", "COMPLETED"]
FINAL_STEP_STATES = {"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"}


# ---------------------------------------------------------------- request builders (pure)


def security_configuration(defs: EmrDefinitions) -> dict[str, Any]:
    """The security configuration document: SSE-KMS for EMRFS data in S3, KMS-encrypted local
    disks (EBS included), and TLS in transit with PEM certificates from S3."""
    key = defs.account.kms_key_arn
    return {
        "EncryptionConfiguration": {
            "EnableInTransitEncryption": True,
            "EnableAtRestEncryption": True,
            "InTransitEncryptionConfiguration": {
                "TLSCertificateConfiguration": {
                    "CertificateProviderType": "PEM",
                    "S3Object": defs.cluster.security.certificates_s3_uri,
                }
            },
            "AtRestEncryptionConfiguration": {
                "S3EncryptionConfiguration": {"EncryptionMode": "SSE-KMS", "AwsKmsKey": key},
                "LocalDiskEncryptionConfiguration": {
                    "EncryptionKeyProviderType": "AwsKms",
                    "AwsKmsKey": key,
                    "EnableEbsEncryption": True,
                },
            },
        }
    }


def security_configuration_name(defs: EmrDefinitions) -> str:
    """`<name>-<hash of the document>`: security configurations cannot be changed, so a changed
    definition gets a new one and an unchanged one is reused."""
    document = json.dumps(security_configuration(defs), sort_keys=True)
    return f"{defs.cluster.security.name}-{hashlib.sha256(document.encode()).hexdigest()[:10]}"


def create_security_configuration_request(defs: EmrDefinitions) -> Request:
    return Request(
        "emr",
        "create_security_configuration",
        {
            "Name": security_configuration_name(defs),
            "SecurityConfiguration": json.dumps(security_configuration(defs), sort_keys=True),
        },
    )


def _configuration(c: ConfigurationDef) -> dict[str, Any]:
    out: dict[str, Any] = {"Classification": c.classification}
    if c.properties:
        out["Properties"] = dict(c.properties)
    if c.configurations:
        out["Configurations"] = [_configuration(sub) for sub in c.configurations]
    return out


def cluster_configurations(defs: EmrDefinitions) -> list[dict[str, Any]]:
    """The YAML's configurations plus `spark-env` pointing PySpark at the bundle's Python."""
    if any(c.classification == "spark-env" for c in defs.cluster.configurations):
        raise ConfigError(
            "emr/cluster.yaml: key 'configurations': do not set 'spark-env' here; the Python is "
            "set from 'python' in emr/bundle.yaml"
        )
    python = defs.bundle.python
    spark_env = ConfigurationDef(
        classification="spark-env",
        configurations=(
            ConfigurationDef(
                classification="export",
                properties={"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python},
            ),
        ),
    )
    return [_configuration(c) for c in (*defs.cluster.configurations, spark_env)]


def _fleet(name: str, kind: str, fleet: FleetDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Name": name,
        "InstanceFleetType": kind,
        "TargetOnDemandCapacity": fleet.on_demand,
        "TargetSpotCapacity": fleet.spot,
        "InstanceTypeConfigs": [
            {
                "InstanceType": t.type,
                "WeightedCapacity": t.weight,
                "EbsConfiguration": {
                    "EbsBlockDeviceConfigs": [
                        {
                            "VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": t.ebs_gb},
                            "VolumesPerInstance": 1,
                        }
                    ],
                    "EbsOptimized": True,
                },
            }
            for t in fleet.instance_types
        ],
    }
    if fleet.spot_options is not None:
        spot = fleet.spot_options
        out["LaunchSpecifications"] = {
            "SpotSpecification": {
                "TimeoutDurationMinutes": spot.timeout_minutes,
                "TimeoutAction": spot.timeout_action,
                "AllocationStrategy": spot.allocation_strategy,
            }
        }
    return out


def run_job_flow_request(config: Config, defs: EmrDefinitions) -> Request:
    """The RunJobFlow request: fleets, managed scaling, auto-termination, configurations,
    security configuration and logs, all from `emr/cluster.yaml` and `conf/<env>.yaml`."""
    assert config.aws is not None
    c = defs.cluster
    scaling = c.managed_scaling
    tags = {"project": config.project, "env": config.env, **defs.account.tags}
    params: dict[str, Any] = {
        "Name": c.name,
        "ReleaseLabel": c.release_label,
        "LogUri": join_uri(config.aws.logs_uri, "cluster") + "/",
        "Applications": [{"Name": a} for a in c.applications],
        "Configurations": cluster_configurations(defs),
        "Instances": {
            "InstanceFleets": [
                _fleet("primary", "MASTER", c.fleets.primary),
                _fleet("core", "CORE", c.fleets.core),
                _fleet("task", "TASK", c.fleets.task),
            ],
            "Ec2SubnetIds": list(c.subnet_ids),
            "KeepJobFlowAliveWhenNoSteps": True,
            "TerminationProtected": False,
        },
        "ManagedScalingPolicy": {
            "ComputeLimits": {
                "UnitType": scaling.unit_type,
                "MinimumCapacityUnits": scaling.minimum_units,
                "MaximumCapacityUnits": scaling.maximum_units,
                "MaximumOnDemandCapacityUnits": scaling.maximum_on_demand_units,
                "MaximumCoreCapacityUnits": scaling.maximum_core_units,
            }
        },
        "AutoTerminationPolicy": {"IdleTimeout": c.idle_timeout_seconds},
        "SecurityConfiguration": security_configuration_name(defs),
        "ServiceRole": c.service_role,
        "JobFlowRole": c.instance_profile,
        "EbsRootVolumeSize": c.ebs_root_volume_gb,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }
    return Request("emr", "run_job_flow", params)


def step_name(job: str, day: date) -> str:
    return f"{job} {day.isoformat()}"


def step_requests_params(
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    day: date,
    jobs: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The daily steps (or those of `jobs`), in order: `spark-submit --deploy-mode cluster` of
    each job through command-runner.jar, the bundle attached by `--py-files` and `--jars`."""
    return [
        step_params(
            defs, layout, step_name(job, day), job, ["--env", config.env, "--date", day.isoformat()]
        )
        for job in (defs.cluster.step_jobs if jobs is None else jobs)
    ]


def step_params(
    defs: EmrDefinitions,
    layout: BundleLayout,
    name: str,
    job: str,
    arguments: list[str],
    extra_jars: Sequence[str] = (),
    extra_conf: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One step `name`: `spark-submit --deploy-mode cluster jobs/<job>.py <arguments>` through
    command-runner.jar, the bundle (and `extra_jars`) attached, the notification target in the
    driver's env, then `extra_conf` (a job's own, e.g. the stream's)."""
    conf = {
        **defs.cluster.step_spark_conf,
        f"spark.yarn.appMasterEnv.{TOPIC_ENV}": defs.account.sns_topic_arn,
        f"spark.yarn.appMasterEnv.{NAMESPACE_ENV}": defs.account.metrics_namespace,
        **(extra_conf or {}),
    }
    attach = spark_submit_args(layout, list(extra_jars), conf)
    return {
        "Name": name,
        "ActionOnFailure": defs.cluster.step_action_on_failure,
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "cluster",
                *attach,
                layout.job_uri(job),
                *arguments,
            ],
        },
    }


def add_steps_request(
    cluster_id: str,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    day: date,
    jobs: Sequence[str] | None = None,
) -> Request:
    steps = step_requests_params(config, defs, layout, day, jobs)
    return Request("emr", "add_job_flow_steps", {"JobFlowId": cluster_id, "Steps": steps})


def list_active_clusters_request() -> Request:
    return Request("emr", "list_clusters", {"ClusterStates": ACTIVE_CLUSTER_STATES})


# ---------------------------------------------------------------- plans for --dry-run


def up_plan(config: Config, defs: EmrDefinitions) -> list[Request]:
    name = defs.cluster.name
    sc = security_configuration_name(defs)
    return [
        list_active_clusters_request(),
        Request("emr", "describe_security_configuration", {"Name": sc}).only_if(
            f"only if no active cluster is named {name!r}"
        ),
        create_security_configuration_request(defs).only_if(
            f"only if security configuration {sc!r} does not exist"
        ),
        run_job_flow_request(config, defs).only_if(f"only if no active cluster is named {name!r}"),
    ]


def down_plan(defs: EmrDefinitions, cluster_id: str | None) -> list[Request]:
    plan = [] if cluster_id else [list_active_clusters_request()]
    target = cluster_id or f"<id of the active cluster named {defs.cluster.name!r}>"
    plan.append(Request("emr", "terminate_job_flows", {"JobFlowIds": [target]}))
    return plan


def steps_plan(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, day: date, cluster_id: str | None
) -> list[Request]:
    plan = [] if cluster_id else [list_active_clusters_request()]
    target = cluster_id or f"<id of the active cluster named {defs.cluster.name!r}>"
    plan.append(Request("emr", "list_steps", {"ClusterId": target, "StepStates": LIVE_STEP_STATES}))
    plan.append(
        add_steps_request(target, config, defs, layout, day).only_if(
            f"only if no step of {day.isoformat()} is pending, running or done"
        )
    )
    return plan


# ---------------------------------------------------------------- actions


def find_active_cluster(clients: AwsClients, name: str) -> str | None:
    """The id of the active (starting, running or waiting) cluster called `name`, if any."""
    paginator = clients.client("emr").get_paginator("list_clusters")
    for page in paginator.paginate(**list_active_clusters_request().params):
        for cluster in page.get("Clusters", []):
            if cluster["Name"] == name:
                return str(cluster["Id"])
    return None


def ensure_security_configuration(clients: AwsClients, defs: EmrDefinitions) -> str:
    """Create the security configuration unless one with the same name (and so the same
    content) exists; return its name."""
    name = security_configuration_name(defs)
    try:
        clients.call(Request("emr", "describe_security_configuration", {"Name": name}))
        return name
    except ClientError as exc:
        if error_code(exc) not in ("InvalidRequestException", "ResourceNotFoundException"):
            raise
    clients.call(create_security_configuration_request(defs))
    return name


def cluster_up(
    clients: AwsClients, config: Config, defs: EmrDefinitions, log: Callable[[str], None] = print
) -> str:
    """Start the cluster, or reuse the active one with the same name; return its id."""
    existing = find_active_cluster(clients, defs.cluster.name)
    if existing is not None:
        log(f"cluster {defs.cluster.name} is already up: {existing}")
        return existing
    sc = ensure_security_configuration(clients, defs)
    response = clients.call(run_job_flow_request(config, defs))
    cluster_id = str(response["JobFlowId"])
    log(f"cluster {defs.cluster.name} starting: {cluster_id} (security configuration {sc})")
    return cluster_id


def resolve_cluster(clients: AwsClients, defs: EmrDefinitions, cluster_id: str | None) -> str:
    if cluster_id:
        return cluster_id
    found = find_active_cluster(clients, defs.cluster.name)
    if found is None:
        raise LookupError(
            f"no active cluster named {defs.cluster.name!r}; start one with "
            "`lakehouse emr cluster up` or pass --cluster-id"
        )
    return found


def cluster_down(
    clients: AwsClients,
    defs: EmrDefinitions,
    cluster_id: str | None = None,
    log: Callable[[str], None] = print,
) -> str | None:
    """Terminate the given cluster, or the active one with the configured name."""
    target = cluster_id or find_active_cluster(clients, defs.cluster.name)
    if target is None:
        log(f"no active cluster named {defs.cluster.name}: nothing to terminate")
        return None
    clients.call(Request("emr", "terminate_job_flows", {"JobFlowIds": [target]}))
    log(f"terminating cluster {target}")
    return target


def submit_steps(
    clients: AwsClients,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    day: date,
    cluster_id: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[str, list[str]]:
    """Add the day's steps to the cluster, except those already pending, running or done there:
    after a failure (the failed step and the ones CANCEL_AND_WAIT cancelled) only the steps from
    the failed one on are added again. Returns the cluster id and the step ids in pipeline order."""
    target = resolve_cluster(clients, defs, cluster_id)
    wanted = [step_name(job, day) for job in defs.cluster.step_jobs]
    existing: dict[str, str] = {}
    paginator = clients.client("emr").get_paginator("list_steps")
    for page in paginator.paginate(ClusterId=target, StepStates=LIVE_STEP_STATES):
        for step in page.get("Steps", []):
            if step["Name"] in wanted:
                existing.setdefault(step["Name"], step["Id"])
    missing = [job for job, name in zip(defs.cluster.step_jobs, wanted, strict=True)
               if name not in existing]  # fmt: skip
    if not missing:
        log(f"steps of {day.isoformat()} already on cluster {target}: not submitting again")
        return target, [existing[n] for n in wanted]
    first = defs.cluster.step_jobs.index(missing[0])
    if len(missing) != len(wanted) - first:
        raise RuntimeError(
            f"steps of {day.isoformat()} on cluster {target} are out of order (missing "
            f"{', '.join(missing)} while a later one is live): cancel them, then submit again"
        )
    response = clients.call(add_steps_request(target, config, defs, layout, day, missing))
    added = dict(zip([step_name(j, day) for j in missing], response["StepIds"], strict=True))
    for name, step_id in added.items():
        log(f"submitted step {step_id}: {name}")
    return target, [existing.get(n) or str(added[n]) for n in wanted]


def run_steps(
    clients: AwsClients,
    config: Config,
    defs: EmrDefinitions,
    layout: BundleLayout,
    day: date,
    cluster_id: str | None,
    backoff: Backoff,
    *,
    sleep: Callable[[float], None],
    log: Callable[[str], None] = print,
    **wait_kwargs: Any,
) -> dict[str, str]:
    """Submit the day's steps and wait for them; a failed day is submitted again from its failed
    step, at most `step_retries` times, after `step_retry_delay_seconds` doubled at each retry
    (`submit_steps` never adds a step of the day that is pending, running or done). Returns the
    final state of each step of the last attempt, by step id."""
    retries, delay = defs.cluster.step_retries, defs.cluster.step_retry_delay_seconds
    for attempt in range(retries + 1):
        target, step_ids = submit_steps(clients, config, defs, layout, day, cluster_id, log)
        states = wait_for_steps(clients, target, step_ids, backoff, sleep=sleep, **wait_kwargs)
        if all(state == "COMPLETED" for state in states.values()) or attempt == retries:
            return states
        wait_s = delay * 2**attempt
        log(f"steps of {day.isoformat()} failed; retry {attempt + 1} of {retries} in {wait_s:g} s")
        sleep(wait_s)
    raise AssertionError("unreachable")


def wait_for_steps(
    clients: AwsClients,
    cluster_id: str,
    step_ids: Sequence[str],
    backoff: Backoff,
    **wait_kwargs: Any,
) -> dict[str, str]:
    """Wait until every step is final; on the deadline, cancel those still pending or running and
    re-raise. Returns each step's final state."""
    emr = clients.client("emr")
    states: dict[str, str] = {}

    def poll() -> str:
        for step_id in step_ids:
            step = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
            states[step_id] = f"{step['Name']}={step['Status']['State']}"
        return ", ".join(states[s] for s in step_ids)

    def all_final(summary: str) -> bool:
        return all(part.rsplit("=", 1)[1] in FINAL_STEP_STATES for part in summary.split(", "))

    wait_kwargs.setdefault("on_change", print_change)
    try:
        wait_for_state(f"cluster {cluster_id} steps", poll, all_final, backoff, **wait_kwargs)
    except WaitTimeout as timeout:
        open_ids = [s for s in step_ids if states[s].rsplit("=", 1)[1] not in FINAL_STEP_STATES]
        if open_ids:
            cancel = Request(
                "emr",
                "cancel_steps",
                {
                    "ClusterId": cluster_id,
                    "StepIds": open_ids,
                    "StepCancellationOption": "SEND_INTERRUPT",
                },
            )
            try:
                clients.call(cancel)
            except ClientError as exc:
                # The timeout stays the error reported; the failed cancel is noted on it.
                timeout.add_note(f"cancelling steps {', '.join(open_ids)} failed too: {exc}")
        raise
    return {s: states[s].rsplit("=", 1)[1] for s in step_ids}
