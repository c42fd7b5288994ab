"""EMR on EC2 against a moto server: the cluster request, the security configuration, the daily
steps in order, and waiting for them.

moto keeps a cluster's release, applications, configurations, log URI and security configuration,
but drops `InstanceFleets`, `ManagedScalingPolicy` and `AutoTerminationPolicy` from RunJobFlow (and
has no Put/GetManagedScalingPolicy at all). The real code sends fleets, scaling and auto-termination
in the RunJobFlow request itself; these tests read them from the request as sent over HTTP
(botocore's `before-send` hook) and the rest from moto.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

import moto_server
from lakehouse.core.config import Config
from lakehouse.emr import cluster
from lakehouse.emr.bundle import bundle_layout
from lakehouse.emr.clients import AwsClients
from lakehouse.emr.definitions import load_definitions
from lakehouse.emr.wait import Backoff, WaitTimeout
from moto_server import aws_clients, backend, capture

moto_url = moto_server.moto_url
moto = moto_server.moto
dev_config = moto_server.dev_config

DAY = date(2024, 1, 3)
ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"
PYFILES = f"{ARTIFACTS}/pyfiles.zip"
# The bundle's jars: Deequ, and the Kafka connector (`lakehouse stream`) with what it needs.
BUNDLE_JARS = ",".join(
    f"{ARTIFACTS}/jars/{jar}"
    for jar in (
        "deequ-2.0.7-spark-3.5.jar",
        "spark-sql-kafka-0-10_2.12-3.5.7.jar",
        "spark-token-provider-kafka-0-10_2.12-3.5.7.jar",
        "kafka-clients-3.4.1.jar",
        "commons-pool2-2.11.1.jar",
    )
)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs"
KMS = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def _up(config: Config) -> tuple[AwsClients, str, list[dict]]:
    clients = aws_clients(config)
    sent = capture(clients.client("emr"), "RunJobFlow")
    cluster_id = cluster.cluster_up(clients, config, load_definitions("dev"), log=lambda _: None)
    return clients, cluster_id, sent


def test_cluster_request_carries_fleets_scaling_and_auto_termination(dev_config: Config) -> None:
    _, _, sent = _up(dev_config)

    assert len(sent) == 1
    request = sent[0]
    fleets = {f["InstanceFleetType"]: f for f in request["Instances"]["InstanceFleets"]}
    assert [f["Name"] for f in request["Instances"]["InstanceFleets"]] == [
        "primary",
        "core",
        "task",
    ]
    assert (fleets["MASTER"]["TargetOnDemandCapacity"], fleets["MASTER"]["TargetSpotCapacity"]) == (
        1,
        0,
    )
    assert (fleets["CORE"]["TargetOnDemandCapacity"], fleets["CORE"]["TargetSpotCapacity"]) == (
        2,
        0,
    )
    assert (fleets["TASK"]["TargetOnDemandCapacity"], fleets["TASK"]["TargetSpotCapacity"]) == (
        0,
        4,
    )
    assert [
        (t["InstanceType"], t["WeightedCapacity"]) for t in fleets["TASK"]["InstanceTypeConfigs"]
    ] == [
        ("r6i.2xlarge", 2),
        ("r5.2xlarge", 2),
        ("r5a.2xlarge", 2),
        ("m6i.2xlarge", 2),
        ("r6i.4xlarge", 4),
    ]
    assert fleets["TASK"]["LaunchSpecifications"] == {
        "SpotSpecification": {
            "TimeoutDurationMinutes": 10,
            "TimeoutAction": "SWITCH_TO_ON_DEMAND",
            "AllocationStrategy": "price-capacity-optimized",
        }
    }
    assert "LaunchSpecifications" not in fleets["MASTER"]
    assert "LaunchSpecifications" not in fleets["CORE"]
    assert request["ManagedScalingPolicy"] == {
        "ComputeLimits": {
            "UnitType": "InstanceFleetUnits",
            "MinimumCapacityUnits": 3,
            "MaximumCapacityUnits": 12,
            "MaximumOnDemandCapacityUnits": 4,
            "MaximumCoreCapacityUnits": 2,
        }
    }
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert request["Instances"]["Ec2SubnetIds"] == [
        "subnet-0aaa1111bbbb2222c",
        "subnet-0ddd3333eeee4444f",
    ]
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True


def test_cluster_has_release_delta_glue_python_logs_and_security(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)

    described = clients.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert described["Name"] == "lakehouse-dev"
    assert described["ReleaseLabel"] == "emr-7.12.0"
    assert described["LogUri"] == "s3://lakehouse-dev-logs/emr/cluster/"
    assert sorted(a["Name"] for a in described["Applications"]) == ["Hadoop", "Spark"]
    configurations = {c["Classification"]: c for c in described["Configurations"]}
    assert configurations["delta-defaults"]["Properties"] == {"delta.enabled": "true"}
    assert configurations["spark-hive-site"]["Properties"] == {
        "hive.metastore.client.factory.class": (
            "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
        )
    }
    assert configurations["spark-defaults"]["Properties"]["spark.sql.extensions"] == (
        "io.delta.sql.DeltaSparkSessionExtension"
    )
    assert configurations["spark-env"]["Configurations"] == [
        {
            "Classification": "export",
            "Properties": {
                "PYSPARK_PYTHON": "/usr/bin/python3.11",
                "PYSPARK_DRIVER_PYTHON": "/usr/bin/python3.11",
            },
        }
    ]

    name = described["SecurityConfiguration"]
    assert name.startswith("lakehouse-") and len(name) == len("lakehouse-") + 10
    document = json.loads(
        clients.client("emr").describe_security_configuration(Name=name)["SecurityConfiguration"]
    )
    encryption = document["EncryptionConfiguration"]
    assert encryption["EnableAtRestEncryption"] is True
    assert encryption["EnableInTransitEncryption"] is True
    assert encryption["AtRestEncryptionConfiguration"] == {
        "S3EncryptionConfiguration": {"EncryptionMode": "SSE-KMS", "AwsKmsKey": KMS},
        "LocalDiskEncryptionConfiguration": {
            "EncryptionKeyProviderType": "AwsKms",
            "AwsKmsKey": KMS,
            "EnableEbsEncryption": True,
        },
    }
    assert encryption["InTransitEncryptionConfiguration"] == {
        "TLSCertificateConfiguration": {
            "CertificateProviderType": "PEM",
            "S3Object": "s3://lakehouse-dev-artifacts/security/emr-certs.zip",
        }
    }


def test_cluster_up_twice_reuses_the_running_cluster(dev_config: Config) -> None:
    clients, first, _ = _up(dev_config)
    emr = clients.client("emr")
    runs = capture(emr, "RunJobFlow")
    security = capture(emr, "CreateSecurityConfiguration")

    second = cluster.cluster_up(clients, dev_config, load_definitions("dev"), log=lambda _: None)

    assert second == first
    assert runs == []
    assert security == []
    assert [c["Id"] for c in emr.list_clusters()["Clusters"]] == [first]


def test_an_existing_security_configuration_is_reused(dev_config: Config) -> None:
    clients = aws_clients(dev_config)
    defs = load_definitions("dev")
    created = capture(clients.client("emr"), "CreateSecurityConfiguration")

    first = cluster.ensure_security_configuration(clients, defs)
    second = cluster.ensure_security_configuration(clients, defs)

    assert first == second == cluster.security_configuration_name(defs)
    assert [c["Name"] for c in created] == [first]


def test_steps_run_the_layers_in_order_and_stop_on_failure(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)
    defs = load_definitions("dev")
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")

    target, step_ids = cluster.submit_steps(
        clients, dev_config, defs, layout, DAY, log=lambda _: None
    )

    assert target == cluster_id
    emr = clients.client("emr")
    steps = [emr.describe_step(ClusterId=cluster_id, StepId=s)["Step"] for s in step_ids]
    assert [s["Name"] for s in steps] == [
        "bronze 2024-01-03",
        "silver 2024-01-03",
        "quality 2024-01-03",
        "gold 2024-01-03",
    ]
    assert {s["ActionOnFailure"] for s in steps} == {"CANCEL_AND_WAIT"}
    assert {s["Config"]["Jar"] for s in steps} == {"command-runner.jar"}
    assert steps[2]["Config"]["Args"] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--py-files",
        PYFILES,
        "--jars",
        BUNDLE_JARS,
        "--conf",
        "spark.dynamicAllocation.enabled=true",
        "--conf",
        "spark.yarn.appMasterEnv.LAKEHOUSE_METRICS_NAMESPACE=Lakehouse",
        "--conf",
        f"spark.yarn.appMasterEnv.LAKEHOUSE_SNS_TOPIC_ARN={TOPIC}",
        f"{ARTIFACTS}/jobs/quality.py",
        "--env",
        "dev",
        "--date",
        "2024-01-03",
    ]


def test_steps_of_a_day_are_not_submitted_twice(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)
    defs = load_definitions("dev")
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    _, first = cluster.submit_steps(clients, dev_config, defs, layout, DAY, log=lambda _: None)

    _, second = cluster.submit_steps(clients, dev_config, defs, layout, DAY, log=lambda _: None)

    assert sorted(second) == sorted(first)
    assert len(clients.client("emr").list_steps(ClusterId=cluster_id)["Steps"]) == 4


def test_waiting_for_steps_reports_the_failed_layer(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)
    defs = load_definitions("dev")
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    _, step_ids = cluster.submit_steps(clients, dev_config, defs, layout, DAY, log=lambda _: None)
    # moto never moves steps out of PENDING/RUNNING: the test sets what EMR would do when silver
    # fails under CANCEL_AND_WAIT (bronze done, silver failed, the later steps cancelled).
    steps = {s.id: s for s in backend("emr").clusters[cluster_id].steps}
    for step_id, state in zip(
        step_ids, ["COMPLETED", "FAILED", "CANCELLED", "CANCELLED"], strict=True
    ):
        steps[step_id].state = state
    changes: list[str] = []

    states = cluster.wait_for_steps(
        clients,
        cluster_id,
        step_ids,
        Backoff(initial_s=1, max_s=4, factor=2, deadline_s=60),
        sleep=lambda _: None,
        on_change=lambda _, s: changes.append(s),
    )

    assert list(states.values()) == ["COMPLETED", "FAILED", "CANCELLED", "CANCELLED"]
    assert changes == [
        "bronze 2024-01-03=COMPLETED, silver 2024-01-03=FAILED, "
        "quality 2024-01-03=CANCELLED, gold 2024-01-03=CANCELLED"
    ]


def test_a_failed_day_is_submitted_again_from_its_failed_step(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)
    defs = load_definitions("dev")
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    steps = backend("emr").clusters[cluster_id].steps
    # moto never moves steps: each wait's sleep plays what EMR would do with the steps in flight.
    # The first attempt fails in silver (later steps cancelled), the retry completes.
    outcomes = [
        {"bronze": "COMPLETED", "silver": "FAILED", "quality": "CANCELLED", "gold": "CANCELLED"},
        {"silver": "COMPLETED", "quality": "COMPLETED", "gold": "COMPLETED"},
    ]
    sleeps: list[float] = []
    live_twice: list[str] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        live = [s for s in steps if s.state in ("PENDING", "RUNNING")]
        names = [s.name for s in live]
        live_twice.extend(n for n in set(names) if names.count(n) > 1)
        if live:
            outcome = outcomes.pop(0)
            for step in live:
                step.state = outcome[step.name.split()[0]]

    states = cluster.run_steps(
        clients,
        dev_config,
        defs,
        layout,
        DAY,
        cluster_id,
        Backoff(initial_s=1, max_s=4, factor=2, deadline_s=600),
        sleep=sleep,
        log=lambda _: None,
        on_change=lambda *_: None,
    )

    assert list(states.values()) == ["COMPLETED"] * 4
    assert [s.name.split()[0] for s in steps] == [
        "bronze", "silver", "quality", "gold", "silver", "quality", "gold"
    ]  # fmt: skip
    assert [s.state for s in steps] == [
        "COMPLETED", "FAILED", "CANCELLED", "CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED"
    ]  # fmt: skip
    assert sleeps == [1, 60, 1]  # wait, the retry's delay (step_retry_delay_seconds), wait
    assert live_twice == []
    # The retry kept bronze's completed step: the ids returned are bronze's first, the rest new.
    assert list(states) == [steps[0].id, *(s.id for s in steps[4:])]


def test_retries_stop_after_the_configured_count(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)
    defs = load_definitions("dev")
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    steps = backend("emr").clusters[cluster_id].steps
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # bronze fails at every attempt
        sleeps.append(seconds)
        for step in steps:
            if step.state in ("PENDING", "RUNNING"):
                step.state = "FAILED" if step.name.startswith("bronze") else "CANCELLED"

    states = cluster.run_steps(
        clients,
        dev_config,
        defs,
        layout,
        DAY,
        cluster_id,
        Backoff(initial_s=1, max_s=4, factor=2, deadline_s=600),
        sleep=sleep,
        log=lambda _: None,
        on_change=lambda *_: None,
    )

    assert list(states.values()) == ["FAILED", "CANCELLED", "CANCELLED", "CANCELLED"]
    assert len(steps) == 4 * (defs.cluster.step_retries + 1) == 12
    assert sleeps == [1, 60, 1, 120, 1]  # the delay doubles at each retry


def test_waiting_for_steps_gives_up_at_the_deadline(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)
    defs = load_definitions("dev")
    layout = bundle_layout("s3://lakehouse-dev-artifacts/lakehouse", defs.bundle, "0.1.0")
    _, step_ids = cluster.submit_steps(clients, dev_config, defs, layout, DAY, log=lambda _: None)
    # moto has no CancelSteps: the hook answers it, and the test checks the request that was sent.
    cancel = capture(clients.client("emr"), "CancelSteps", answer={"CancelStepsInfoList": []})
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    # moto leaves the first step RUNNING and the others PENDING forever: the deadline must end it.
    with pytest.raises(WaitTimeout):
        cluster.wait_for_steps(
            clients,
            cluster_id,
            step_ids,
            Backoff(initial_s=10, max_s=30, factor=2, deadline_s=100),
            sleep=sleep,
            clock=lambda: now[0],
            on_change=lambda *_: None,
        )

    assert sleeps == [10, 20, 30, 30, 10]
    assert cancel == [
        {"ClusterId": cluster_id, "StepIds": step_ids, "StepCancellationOption": "SEND_INTERRUPT"}
    ]


def test_cluster_down_terminates_the_cluster_by_name(dev_config: Config) -> None:
    clients, cluster_id, _ = _up(dev_config)

    terminated = cluster.cluster_down(clients, load_definitions("dev"), log=lambda _: None)

    assert terminated == cluster_id
    state = clients.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    assert state["State"] in {"TERMINATING", "TERMINATED"}
    assert cluster.find_active_cluster(clients, "lakehouse-dev") is None
