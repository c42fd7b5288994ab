"""The least-privilege IAM documents: valid JSON, no wildcard actions, every resource inside the
environment's configured prefixes, and the committed copies in emr/iam/<env>/ up to date."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakehouse.core.config import PROJECT_ROOT, load_config
from lakehouse.emr.definitions import EmrDefinitions, load_definitions
from lakehouse.emr.iam import airflow_role_policy, render_policies
from lakehouse.state.catalog import LAYERS

ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z]+$")
EMR_DIR = PROJECT_ROOT / "emr"


def _yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def _with_airflow_target(defs: EmrDefinitions, target: str) -> EmrDefinitions:
    o = defs.orchestration
    return replace(defs, orchestration=replace(o, airflow=replace(o.airflow, target=target)))


def _rendered(env: str, airflow_target: str) -> dict[str, dict[str, Any]]:
    """The environment's documents, with its Airflow DAGs on EMR Serverless or on the cluster."""
    defs = _with_airflow_target(load_definitions(env), airflow_target)
    return render_policies(load_config(env), defs)


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = document["Statement"]
    return statements


def _s3_scopes(env: str) -> list[tuple[str, str]]:
    """(bucket, prefix) of every S3 location the environment's configuration names, read from the
    YAML files directly rather than through the code under test."""
    conf = {**_yaml(PROJECT_ROOT / "conf" / f"{env}.yaml")}
    uris = [*conf["storage"].values(), conf["aws"]["artifacts_uri"], conf["aws"]["logs_uri"]]
    scopes = []
    for uri in uris:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        scopes.append((bucket, prefix.strip("/")))
    return scopes


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_policy_documents_match_the_configuration(env: str) -> None:
    rendered = render_policies(load_config(env), load_definitions(env))
    folder = EMR_DIR / "iam" / env

    committed = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}

    assert committed == rendered
    assert sorted(committed) == [
        "airflow-role-policy.json",
        "airflow-role-trust.json",
        "instance-role-trust.json",
        "job-role-policy.json",
        "job-role-trust.json",
        "scheduler-role-policy.json",
        "scheduler-role-trust.json",
        "stepfunctions-role-policy.json",
        "stepfunctions-role-trust.json",
    ]


@pytest.mark.parametrize("airflow_target", ["serverless", "cluster"])
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_no_action_is_a_wildcard(env: str, airflow_target: str) -> None:
    for name, document in _rendered(env, airflow_target).items():
        assert document["Version"] == "2012-10-17"
        for statement in _statements(document):
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            for action in actions:
                assert ACTION.match(action), f"{name}: {action!r} is not one explicit action"


@pytest.mark.parametrize("airflow_target", ["serverless", "cluster"])
@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_resource_is_inside_the_configured_scope(env: str, airflow_target: str) -> None:
    account = {**_yaml(EMR_DIR / "account.yaml"), **_yaml(EMR_DIR / f"account.{env}.yaml")}
    cluster = {**_yaml(EMR_DIR / "cluster.yaml"), **_yaml(EMR_DIR / f"cluster.{env}.yaml")}
    machine = _yaml(EMR_DIR / f"orchestration.{env}.yaml")["stepfunctions"]["state_machine_name"]
    region = _yaml(PROJECT_ROOT / "conf" / f"{env}.yaml")["aws"]["region"]
    acct = account["account_id"]
    scopes = _s3_scopes(env)
    object_prefixes = [f"arn:aws:s3:::{b}/{p}/" for b, p in scopes]
    certificates = "arn:aws:s3:::" + cluster["security"]["certificates_s3_uri"].removeprefix(
        "s3://"
    )
    secret = _yaml(PROJECT_ROOT / "conf" / f"{env}.yaml")["secrets"]["pii_hmac_key_secret"]
    # Every database the catalog registers tables in (catalog.LAYERS, with the environment's
    # prefix, read from the YAML) and nothing else.
    prefix = _yaml(PROJECT_ROOT / "conf" / f"{env}.yaml")["catalog"]["database_prefix"]
    assert prefix == f"lakehouse_{env}_"
    databases = [f"{prefix}{layer}" for layer in LAYERS]
    glue = f"arn:aws:glue:{region}:{acct}"
    log_group = f"arn:aws:logs:{region}:{acct}:log-group:/aws/emr-serverless/lakehouse-{env}"
    exact = {
        certificates,
        f"{glue}:catalog",
        *(f"{glue}:database/{db}" for db in databases),
        *(f"{glue}:table/{db}/*" for db in databases),
        log_group,
        f"{log_group}:*",
        account["kms_key_arn"],
        account["sns_topic_arn"],
        account["dlq_arn"],
        account["job_role_arn"],
        # The rule Step Functions manages to learn that a job run ended (.sync), by its AWS name.
        f"arn:aws:events:{region}:{acct}:rule/StepFunctionsGetEventsForEMRServerlessJobRule",
        # This env's state machine (its daily schedule starts it).
        f"arn:aws:states:{region}:{acct}:stateMachine:{machine}",
        # The Kinesis data stream the streaming ingestion reads, and its shards.
        f"arn:aws:kinesis:{region}:{acct}:stream/lakehouse-{env}-clickstream",
        f"arn:aws:kinesis:{region}:{acct}:stream/lakehouse-{env}-clickstream/*",
    }

    this_env = {
        "StringEquals": {
            "aws:ResourceTag/project": "lakehouse",
            "aws:ResourceTag/env": env,
        }
    }

    for document in _rendered(env, airflow_target).values():
        for statement in _statements(document):
            if "Principal" in statement:
                assert statement["Action"] == "sts:AssumeRole"
                continue
            for resource in statement["Resource"]:
                if resource in exact:
                    continue
                if any(resource.startswith(p) and resource.endswith("/*") for p in object_prefixes):
                    continue
                if resource == f"{glue}:database/default":
                    assert statement["Action"] == ["glue:GetDatabase"]
                    continue
                if resource.startswith("arn:aws:s3:::") and "/" not in resource:
                    # A bucket: listing only, and only under this env's prefixes of that bucket.
                    bucket = resource.removeprefix("arn:aws:s3:::")
                    assert statement["Action"] == ["s3:ListBucket"]
                    allowed = [p for b, p in scopes if b == bucket]
                    listed = statement["Condition"]["StringLike"]["s3:prefix"]
                    assert allowed and listed
                    assert all(any(x.startswith(p) for p in allowed) for x in listed)
                    continue
                if resource == f"arn:aws:emr-serverless:{region}:{acct}:/applications/*":
                    # This env's applications only: start runs, start the application, find runs.
                    assert statement["Action"] in (
                        ["emr-serverless:StartJobRun"],
                        [
                            "emr-serverless:GetApplication",
                            "emr-serverless:StartApplication",
                            "emr-serverless:ListJobRuns",
                        ],
                    )
                    assert statement["Condition"] == this_env
                    continue
                if resource == f"arn:aws:emr-serverless:{region}:{acct}:/applications/*/jobruns/*":
                    # Job runs carry no env tags: watching and cancelling them is all that is
                    # allowed, and tagging them with the Airflow operator's token only.
                    if statement["Action"] == ["emr-serverless:TagResource"]:
                        assert statement["Condition"] == {
                            "ForAllValues:StringEquals": {"aws:TagKeys": ["lakehouse-client-token"]}
                        }
                        continue
                    assert statement["Action"] == [
                        "emr-serverless:GetJobRun",
                        "emr-serverless:CancelJobRun",
                    ]
                    continue
                if resource == f"arn:aws:elasticmapreduce:{region}:{acct}:cluster/*":
                    # This env's clusters only, and only to run steps on them.
                    assert statement["Action"] == [
                        "elasticmapreduce:DescribeCluster",
                        "elasticmapreduce:ListSteps",
                        "elasticmapreduce:AddJobFlowSteps",
                        "elasticmapreduce:DescribeStep",
                    ]
                    assert statement["Condition"] == this_env
                    continue
                if resource == f"arn:aws:secretsmanager:{region}:{acct}:secret:{secret}-??????":
                    # The pseudonymisation key's secret: read, and nothing else of the account's.
                    assert statement["Action"] == ["secretsmanager:GetSecretValue"]
                    continue
                if resource == "*" and statement["Action"] == ["elasticmapreduce:ListClusters"]:
                    # No resource type: listing the clusters (to find this env's by name) only.
                    assert airflow_target == "cluster"
                    continue
                if resource == "*":
                    assert statement["Action"] == ["cloudwatch:PutMetricData"]
                    assert statement["Condition"] == {
                        "StringEquals": {"cloudwatch:namespace": "Lakehouse"}
                    }
                    continue
                pytest.fail(f"{env}: resource {resource!r} is outside the configured scope")


def test_dev_job_role_reads_landing_and_writes_only_the_lake() -> None:
    policy = render_policies(load_config("dev"), load_definitions("dev"))["job-role-policy.json"]
    by_sid = {s["Sid"]: s for s in _statements(policy)}

    assert by_sid["ReadBundleAndLanding"]["Action"] == ["s3:GetObject"]
    assert by_sid["ReadBundleAndLanding"]["Resource"] == [
        "arn:aws:s3:::lakehouse-dev-artifacts/lakehouse/*",
        "arn:aws:s3:::lakehouse-dev-landing/landing/*",
    ]
    assert by_sid["ReadWriteLakehouseAndReports"]["Resource"] == [
        "arn:aws:s3:::lakehouse-dev-lake/lakehouse/*",
        "arn:aws:s3:::lakehouse-dev-lake/reports/*",
    ]
    assert by_sid["ListLakehouseDevLake"]["Condition"] == {
        "StringLike": {"s3:prefix": ["lakehouse", "lakehouse/*", "reports", "reports/*"]}
    }
    writers = [s for s in _statements(policy) if "s3:PutObject" in s["Action"]]
    written = sorted(r for s in writers for r in s["Resource"])
    assert written == [
        "arn:aws:s3:::lakehouse-dev-lake/lakehouse/*",
        "arn:aws:s3:::lakehouse-dev-lake/reports/*",
        "arn:aws:s3:::lakehouse-dev-logs/emr/*",
    ]


def test_the_scheduler_role_starts_this_envs_runs_and_state_machine_only() -> None:
    docs = render_policies(load_config("dev"), load_definitions("dev"))
    policy = docs["scheduler-role-policy.json"]

    assert {s["Sid"]: s["Action"] for s in _statements(policy)} == {
        "StartDailyRun": ["emr-serverless:StartJobRun"],
        "PassJobRoleToEmrServerless": ["iam:PassRole"],
        "StartStateMachine": ["states:StartExecution"],
        "DeadLetters": ["sqs:SendMessage"],
        "DeadlineHeartbeat": ["cloudwatch:PutMetricData"],
    }
    by_sid = {s["Sid"]: s for s in _statements(policy)}
    assert by_sid["StartDailyRun"]["Resource"] == [
        "arn:aws:emr-serverless:eu-west-1:123456789012:/applications/*"
    ]
    assert by_sid["StartDailyRun"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/project": "lakehouse", "aws:ResourceTag/env": "dev"}
    }
    assert by_sid["PassJobRoleToEmrServerless"]["Resource"] == [
        "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"
    ]
    assert by_sid["PassJobRoleToEmrServerless"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }
    # The dev state machine, by its ARN: not prod's, nor its executions (StartExecution is on the
    # state machine).
    assert by_sid["StartStateMachine"]["Resource"] == [
        "arn:aws:states:eu-west-1:123456789012:stateMachine:lakehouse-dev-daily"
    ]
    assert "Condition" not in by_sid["StartStateMachine"]
    assert by_sid["DeadLetters"]["Resource"] == [
        "arn:aws:sqs:eu-west-1:123456789012:lakehouse-dev-scheduler-dlq"
    ]
    assert by_sid["DeadlineHeartbeat"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Lakehouse"}
    }
    (trust,) = _statements(docs["scheduler-role-trust.json"])
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_state_machine_role_runs_the_steps_and_notifies_only() -> None:
    docs = render_policies(load_config("dev"), load_definitions("dev"))
    policy = docs["stepfunctions-role-policy.json"]

    assert {s["Sid"]: s["Action"] for s in _statements(policy)} == {
        "StartStepRuns": ["emr-serverless:StartJobRun"],
        "WatchAndCancelStepRuns": ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
        "PassJobRoleToEmrServerless": ["iam:PassRole"],
        "JobRunEndEvents": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
        "FailureNotifications": ["sns:Publish"],
    }
    by_sid = {s["Sid"]: s for s in _statements(policy)}
    assert by_sid["PassJobRoleToEmrServerless"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }
    assert by_sid["FailureNotifications"]["Resource"] == [
        "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs"
    ]
    (trust,) = _statements(docs["stepfunctions-role-trust.json"])
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_airflow_role_runs_the_steps_of_this_env_and_notifies_only() -> None:
    config, defs = load_config("dev"), load_definitions("dev")
    assert defs.orchestration.airflow.target == "serverless"
    docs = render_policies(config, defs)
    policy = docs["airflow-role-policy.json"]
    serverless = {
        "StartStepRuns": ["emr-serverless:StartJobRun"],
        "StartApplicationsAndFindStepRuns": [
            "emr-serverless:GetApplication",
            "emr-serverless:StartApplication",
            "emr-serverless:ListJobRuns",
        ],
        "WatchAndCancelStepRuns": ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
        "TagStepRunsWithTheirToken": ["emr-serverless:TagResource"],
        "PassJobRoleToEmrServerless": ["iam:PassRole"],
        "RunNotifications": ["sns:Publish"],
        "RunMetrics": ["cloudwatch:PutMetricData"],
    }

    assert {s["Sid"]: s["Action"] for s in _statements(policy)} == serverless
    by_sid = {s["Sid"]: s for s in _statements(policy)}
    assert by_sid["PassJobRoleToEmrServerless"]["Resource"] == [
        "arn:aws:iam::123456789012:role/lakehouse-dev-emr-job"
    ]
    assert by_sid["PassJobRoleToEmrServerless"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }
    dev_applications = {
        "StringEquals": {"aws:ResourceTag/project": "lakehouse", "aws:ResourceTag/env": "dev"}
    }
    assert by_sid["StartStepRuns"]["Condition"] == dev_applications
    assert by_sid["StartApplicationsAndFindStepRuns"]["Condition"] == dev_applications
    # The run's only tag is the token the operator sets (airflow_dags imports Airflow: read it).
    source = (PROJECT_ROOT / "lib" / "lakehouse" / "emr" / "airflow_dags.py").read_text()
    (token_tag,) = [
        node.value.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["TOKEN_TAG"]
        and isinstance(node.value, ast.Constant)
    ]
    assert by_sid["TagStepRunsWithTheirToken"]["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": [token_tag]}
    }
    assert by_sid["RunNotifications"]["Resource"] == [
        "arn:aws:sns:eu-west-1:123456789012:lakehouse-dev-runs"
    ]
    assert by_sid["RunMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "Lakehouse"}
    }
    (trust,) = _statements(docs["airflow-role-trust.json"])
    assert trust["Principal"] == {"Service": ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}

    # The daily steps on the EMR on EC2 cluster (target: cluster): find it by name, and run and
    # watch steps on this env's clusters; the maintenance DAG still runs on EMR Serverless.
    on_cluster = airflow_role_policy(config, _with_airflow_target(defs, "cluster"))
    by_sid = {s["Sid"]: s for s in _statements(on_cluster)}
    assert {sid: s["Action"] for sid, s in by_sid.items()} == {
        **serverless,
        "FindTheCluster": ["elasticmapreduce:ListClusters"],
        "RunClusterSteps": [
            "elasticmapreduce:DescribeCluster",
            "elasticmapreduce:ListSteps",
            "elasticmapreduce:AddJobFlowSteps",
            "elasticmapreduce:DescribeStep",
        ],
    }
    assert by_sid["RunClusterSteps"]["Resource"] == [
        "arn:aws:elasticmapreduce:eu-west-1:123456789012:cluster/*"
    ]
    assert by_sid["RunClusterSteps"]["Condition"] == dev_applications


def test_the_job_role_reads_the_envs_kinesis_stream_and_nothing_else_of_kinesis() -> None:
    policy = render_policies(load_config("dev"), load_definitions("dev"))["job-role-policy.json"]
    kinesis = [s for s in _statements(policy) if any(a.startswith("kinesis:") for a in s["Action"])]
    account = load_definitions("dev").account.account_id
    stream = f"arn:aws:kinesis:eu-west-1:{account}:stream/lakehouse-dev-clickstream"
    assert kinesis == [
        {
            "Sid": "ReadClickstreamStream",
            "Effect": "Allow",
            "Action": [
                "kinesis:DescribeStreamSummary",
                "kinesis:ListShards",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
            ],
            "Resource": [stream, f"{stream}/*"],
        }
    ]


def test_a_stream_from_msk_lets_the_job_role_read_its_topic_with_its_own_consumer_groups() -> None:
    cluster = (
        "arn:aws:kafka:eu-west-1:111122223333:cluster/shop/0a1b2c3d-4e5f-6789-abcd-ef0123456789-2"
    )
    config = load_config(
        "dev",
        overrides={
            "stream": {
                "source_type": "kafka",
                "name": "clicks",
                "kafka": {"topic": "web-events", "msk_cluster_arn": cluster},
            }
        },
    )
    policy = render_policies(config, load_definitions("dev"))["job-role-policy.json"]
    by_sid = {s["Sid"]: s for s in _statements(policy)}
    scope = "shop/0a1b2c3d-4e5f-6789-abcd-ef0123456789-2"
    assert by_sid["ConnectToClickstreamCluster"]["Resource"] == [cluster]
    assert by_sid["ReadClickstreamTopic"]["Action"] == [
        "kafka-cluster:DescribeTopic",
        "kafka-cluster:ReadData",
    ]
    assert by_sid["ReadClickstreamTopic"]["Resource"] == [
        f"arn:aws:kafka:eu-west-1:111122223333:topic/{scope}/web-events"
    ]
    assert by_sid["ClickstreamConsumerGroups"]["Resource"] == [
        f"arn:aws:kafka:eu-west-1:111122223333:group/{scope}/lakehouse-stream-clicks*"
    ]
    assert "ReadClickstreamStream" not in by_sid
