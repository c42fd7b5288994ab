"""Least-privilege IAM policy documents, rendered per environment from `conf/<env>.yaml` and
`emr/account.yaml` (copies for dev and prod are committed under `emr/iam/<env>/`).

- `job-role-policy.json`: what the Spark jobs need, for the EMR Serverless execution role and the
  EMR on EC2 instance profile role alike: read the bundle and landing prefixes, read and write the
  lakehouse and reports prefixes, write logs, use the env's Glue databases (`catalog` in
  conf/<env>.yaml: `lakehouse_dev_bronze`, ...), the KMS key, the SNS
  topic, CloudWatch metrics in the Lakehouse namespace, and the one Secrets Manager secret holding
  the pseudonymisation key (`secrets.pii_hmac_key_secret`).
- `scheduler-role-policy.json`: what EventBridge Scheduler needs to start the daily run and the
  weekly maintenance: StartJobRun on this env's applications, PassRole of the job role to EMR
  Serverless only, StartExecution of this env's state machine alone (its daily schedule,
  `lakehouse.emr.stepfunctions`), SendMessage to the DLQ, and PutMetricData in the namespace for
  the deadline heartbeat (`lakehouse.emr.monitoring`).
- `stepfunctions-role-policy.json`: what the Step Functions state machine of the daily pipeline
  needs (`lakehouse.emr.stepfunctions`): StartJobRun on this env's applications (by tag, as for the
  scheduler), GetJobRun and CancelJobRun on their job runs (a job run carries no tags, so this is
  every application of the account in the region), PassRole of the job role to EMR Serverless
  only, the EventBridge rule Step Functions manages to learn that a job run ended (`.sync`:
  `StepFunctionsGetEventsForEMRServerlessJobRule`, PutRule, PutTargets, DescribeRule) and Publish
  to the SNS topic for the failure notices.
- `airflow-role-policy.json`: what the tasks of the Airflow DAGs call AWS with
  (`lakehouse.emr.airflow_dags`, through the connection `airflow.aws_conn_id` of
  emr/orchestration.yaml: the MWAA execution role, or the role that connection assumes). On this
  env's applications (by tag, as for the scheduler): GetApplication and StartApplication (the
  provider's operator starts a stopped application), StartJobRun, and ListJobRuns (a retried task
  looks for the run an earlier try started); on their job runs GetJobRun and CancelJobRun (as for
  Step Functions, every application's: the runs carry only the token tag), and TagResource
  limited to that one tag key (`lakehouse-client-token`, which StartJobRun sets on the run);
  PassRole of the job role to EMR Serverless only; Publish to the SNS topic and PutMetricData in
  the namespace for the outcomes (`lakehouse.emr.notify`). With `airflow.target: cluster`, also
  what the daily steps on the EMR on EC2 cluster need: ListClusters (the operator finds the
  cluster by name) and DescribeCluster, ListSteps, AddJobFlowSteps and DescribeStep on this env's
  clusters (by tag). An MWAA execution role needs MWAA's own permissions besides
  (`airflow:PublishMetrics`, its log groups, DAG bucket and task queue, as the MWAA documentation
  lists them): they depend on the MWAA environment and are not rendered here.
- trust policies for the five roles, limited to this account. The Airflow role's trusts MWAA
  (`airflow.amazonaws.com`, `airflow-env.amazonaws.com`); a role that `aws_default` assumes instead
  trusts the execution role, not these services.

No action is `*` or a wildcard such as `s3:*`; every resource is inside the configured prefixes,
databases, log group, topic, key or queue. The unavoidable exceptions:
`cloudwatch:PutMetricData` has no resource type (so `*`, limited to the namespace by a condition),
nor has `elasticmapreduce:ListClusters` (so `*`, only with `target: cluster`, and only listing:
every other cluster action is limited by tag), and `s3:ListBucket` applies to a bucket (limited to
the configured prefixes with `s3:prefix`). Spark's Hive client also looks up the Glue `default`
database when it starts, so `glue:GetDatabase` is allowed on it (read only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lakehouse.core.config import Config, group_id_prefix, is_uri
from lakehouse.emr.bundle import split_s3_uri
from lakehouse.emr.definitions import EmrDefinitions, require_aws
from lakehouse.emr.stepfunctions import SYNC_EVENTS_RULE, state_machine_arn

VERSION = "2012-10-17"
# The tag the Airflow operator sets on its job runs (`lakehouse.emr.airflow_dags.TOKEN_TAG`; that
# module imports Airflow, so it is repeated here and a test compares the two).
AIRFLOW_TOKEN_TAG = "lakehouse-client-token"
# MWAA's service principals: an MWAA execution role trusts both.
AIRFLOW_SERVICES = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
GLUE_READ = [
    "glue:GetDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
]
GLUE_WRITE = [
    "glue:CreateDatabase",
    "glue:UpdateDatabase",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:CreatePartition",
    "glue:BatchCreatePartition",
    "glue:UpdatePartition",
    "glue:DeletePartition",
    "glue:BatchDeletePartition",
]


def _s3_prefix(uri: str) -> tuple[str, str]:
    bucket, key = split_s3_uri(uri)
    return bucket, key.strip("/")


def _objects(uri: str) -> str:
    bucket, prefix = _s3_prefix(uri)
    return f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"


def _listing_statements(uris: list[str]) -> list[dict[str, Any]]:
    """s3:ListBucket per bucket, only under the configured prefixes of that bucket."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, prefix = _s3_prefix(uri)
        by_bucket.setdefault(bucket, [])
        for p in (prefix, f"{prefix}/*") if prefix else ("*",):
            if p not in by_bucket[bucket]:
                by_bucket[bucket].append(p)
    return [
        {
            "Sid": f"List{_sid(bucket)}",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": prefixes}},
        }
        for bucket, prefixes in sorted(by_bucket.items())
    ]


def _sid(text: str) -> str:
    parts = text.replace("_", "-").replace(".", "-").split("-")
    return "".join(part.capitalize() for part in parts)


def job_role_policy(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """The job role's permissions (see the module docstring)."""
    require_aws(config)
    assert config.aws is not None
    region, account = config.aws.region, defs.account.account_id
    storage = config.storage
    for root in (storage.landing_root, storage.lakehouse_root, storage.reports_root):
        if not is_uri(root):
            raise ValueError(f"env {config.env}: storage root {root!r} is not in S3")
    glue = f"arn:aws:glue:{region}:{account}"
    databases = config.catalog.databases
    log_group = f"arn:aws:logs:{region}:{account}:log-group:{defs.account.log_group}"
    certificates = defs.cluster.security.certificates_s3_uri
    cert_bucket, cert_key = split_s3_uri(certificates)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadBundleAndLanding",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [_objects(config.aws.artifacts_uri), _objects(storage.landing_root)],
        },
        {
            "Sid": "ReadClusterCertificates",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{cert_bucket}/{cert_key}"],
        },
        {
            "Sid": "ReadWriteLakehouseAndReports",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            "Resource": [_objects(storage.lakehouse_root), _objects(storage.reports_root)],
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": [_objects(config.aws.logs_uri)],
        },
        *_listing_statements(
            [
                config.aws.artifacts_uri,
                config.aws.logs_uri,
                storage.landing_root,
                storage.lakehouse_root,
                storage.reports_root,
            ]
        ),
        {
            "Sid": "GlueDatabasesOfThisEnv",
            "Effect": "Allow",
            "Action": GLUE_READ + GLUE_WRITE,
            "Resource": [f"{glue}:catalog"]
            + [f"{glue}:database/{db}" for db in databases]
            + [f"{glue}:table/{db}/*" for db in databases],
        },
        {
            "Sid": "GlueDefaultDatabaseLookup",
            "Effect": "Allow",
            "Action": ["glue:GetDatabase"],
            "Resource": [f"{glue}:catalog", f"{glue}:database/default"],
        },
        {
            "Sid": "JobLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group, f"{log_group}:*"],
        },
        {
            "Sid": "DataKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            "Resource": [defs.account.kms_key_arn],
        },
        *_secret_statements(config, account),
        *_outcome_statements(defs),
        *_stream_statements(config, account),
    ]
    return {"Version": VERSION, "Statement": statements}


def _stream_statements(config: Config, account: str) -> list[dict[str, Any]]:
    """Reading the stream `lakehouse stream` ingests (conf `stream`): the Kinesis data stream
    with the connector's GetRecords consumer, or the topic of the MSK cluster
    (`stream.kafka.msk_cluster_arn`, IAM authentication) with consumer groups of the stream's
    prefix. A Kafka outside MSK authenticates by its own means (`stream.kafka.options`)."""
    assert config.aws is not None
    stream = config.stream
    if stream.source_type == "kinesis":
        arn = (
            f"arn:aws:kinesis:{stream.kinesis.region}:{account}:stream/{stream.kinesis.stream_name}"
        )
        return [
            {
                "Sid": "ReadClickstreamStream",
                "Effect": "Allow",
                "Action": [
                    "kinesis:DescribeStreamSummary",
                    "kinesis:ListShards",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ],
                "Resource": [arn, f"{arn}/*"],
            }
        ]
    cluster = stream.kafka.msk_cluster_arn
    if not cluster:
        return []
    name_and_id = cluster.split(":cluster/", 1)[1]
    prefix = cluster.split(":cluster/", 1)[0]
    return [
        {
            "Sid": "ConnectToClickstreamCluster",
            "Effect": "Allow",
            "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
            "Resource": [cluster],
        },
        {
            "Sid": "ReadClickstreamTopic",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
            "Resource": [f"{prefix}:topic/{name_and_id}/{stream.kafka.topic}"],
        },
        {
            "Sid": "ClickstreamConsumerGroups",
            "Effect": "Allow",
            "Action": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
            "Resource": [f"{prefix}:group/{name_and_id}/{group_id_prefix(stream.name)}*"],
        },
    ]


def secret_arn(config: Config, account: str) -> str | None:
    """The ARN pattern of the environment's pseudonymisation key secret, or None when it has none.
    Secrets Manager appends six random characters to a secret's name in its ARN (`-??????`)."""
    secret = config.secrets.pii_hmac_key_secret
    if not secret:
        return None
    if secret.startswith("arn:"):
        return secret
    assert config.aws is not None
    return f"arn:aws:secretsmanager:{config.aws.region}:{account}:secret:{secret}-??????"


def _outcome_statements(defs: EmrDefinitions) -> list[dict[str, Any]]:
    """What a job's outcome needs (`lakehouse.emr.notify`): publish to the topic, put metrics in
    the namespace (PutMetricData has no resource type: narrowed by its condition)."""
    return [
        {
            "Sid": "RunNotifications",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [defs.account.sns_topic_arn],
        },
        {
            "Sid": "RunMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": ["*"],
            "Condition": {"StringEquals": {"cloudwatch:namespace": defs.account.metrics_namespace}},
        },
    ]


def _secret_statements(config: Config, account: str) -> list[dict[str, Any]]:
    """GetSecretValue on exactly the key's secret (decrypted with the data key, `DataKey`)."""
    arn = secret_arn(config, account)
    if arn is None:
        return []
    return [
        {
            "Sid": "ReadPseudonymisationKey",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [arn],
        }
    ]


def scheduler_role_policy(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """The scheduler role's permissions (see the module docstring)."""
    require_aws(config)
    assert config.aws is not None
    region, account = config.aws.region, defs.account.account_id
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "StartDailyRun",
                "Effect": "Allow",
                "Action": ["emr-serverless:StartJobRun"],
                "Resource": [f"arn:aws:emr-serverless:{region}:{account}:/applications/*"],
                "Condition": {
                    "StringEquals": {
                        "aws:ResourceTag/project": config.project,
                        "aws:ResourceTag/env": config.env,
                    }
                },
            },
            {
                "Sid": "PassJobRoleToEmrServerless",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [defs.account.job_role_arn],
                "Condition": {
                    "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
                },
            },
            {
                "Sid": "StartStateMachine",
                "Effect": "Allow",
                "Action": ["states:StartExecution"],
                "Resource": [state_machine_arn(config, defs)],
            },
            {
                "Sid": "DeadLetters",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": [defs.account.dlq_arn],
            },
            {
                "Sid": "DeadlineHeartbeat",
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": ["*"],
                "Condition": {
                    "StringEquals": {"cloudwatch:namespace": defs.account.metrics_namespace}
                },
            },
        ],
    }


def stepfunctions_role_policy(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """The Step Functions state machine role's permissions (see the module docstring)."""
    require_aws(config)
    assert config.aws is not None
    region, account = config.aws.region, defs.account.account_id
    applications = f"arn:aws:emr-serverless:{region}:{account}:/applications/*"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "StartStepRuns",
                "Effect": "Allow",
                "Action": ["emr-serverless:StartJobRun"],
                "Resource": [applications],
                "Condition": {
                    "StringEquals": {
                        "aws:ResourceTag/project": config.project,
                        "aws:ResourceTag/env": config.env,
                    }
                },
            },
            {
                "Sid": "WatchAndCancelStepRuns",
                "Effect": "Allow",
                "Action": ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
                "Resource": [f"{applications}/jobruns/*"],
            },
            {
                "Sid": "PassJobRoleToEmrServerless",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [defs.account.job_role_arn],
                "Condition": {
                    "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
                },
            },
            {
                "Sid": "JobRunEndEvents",
                "Effect": "Allow",
                "Action": ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                "Resource": [f"arn:aws:events:{region}:{account}:rule/{SYNC_EVENTS_RULE}"],
            },
            {
                "Sid": "FailureNotifications",
                "Effect": "Allow",
                "Action": ["sns:Publish"],
                "Resource": [defs.account.sns_topic_arn],
            },
        ],
    }


def _of_this_env(config: Config) -> dict[str, Any]:
    """A resource tagged with this project and environment (applications, clusters)."""
    return {
        "StringEquals": {
            "aws:ResourceTag/project": config.project,
            "aws:ResourceTag/env": config.env,
        }
    }


def airflow_role_policy(config: Config, defs: EmrDefinitions) -> dict[str, Any]:
    """The Airflow role's permissions (see the module docstring)."""
    require_aws(config)
    assert config.aws is not None
    region, account = config.aws.region, defs.account.account_id
    applications = f"arn:aws:emr-serverless:{region}:{account}:/applications/*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "StartStepRuns",
            "Effect": "Allow",
            "Action": ["emr-serverless:StartJobRun"],
            "Resource": [applications],
            "Condition": _of_this_env(config),
        },
        {
            "Sid": "StartApplicationsAndFindStepRuns",
            "Effect": "Allow",
            "Action": [
                "emr-serverless:GetApplication",
                "emr-serverless:StartApplication",
                "emr-serverless:ListJobRuns",
            ],
            "Resource": [applications],
            "Condition": _of_this_env(config),
        },
        {
            "Sid": "WatchAndCancelStepRuns",
            "Effect": "Allow",
            "Action": ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
            "Resource": [f"{applications}/jobruns/*"],
        },
        {
            "Sid": "TagStepRunsWithTheirToken",
            "Effect": "Allow",
            "Action": ["emr-serverless:TagResource"],
            "Resource": [f"{applications}/jobruns/*"],
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": [AIRFLOW_TOKEN_TAG]}},
        },
        {
            "Sid": "PassJobRoleToEmrServerless",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": [defs.account.job_role_arn],
            "Condition": {"StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}},
        },
    ]
    if defs.orchestration.airflow.target == "cluster":
        statements += [
            {
                "Sid": "FindTheCluster",
                "Effect": "Allow",
                "Action": ["elasticmapreduce:ListClusters"],
                "Resource": ["*"],
            },
            {
                "Sid": "RunClusterSteps",
                "Effect": "Allow",
                "Action": [
                    "elasticmapreduce:DescribeCluster",
                    "elasticmapreduce:ListSteps",
                    "elasticmapreduce:AddJobFlowSteps",
                    "elasticmapreduce:DescribeStep",
                ],
                "Resource": [f"arn:aws:elasticmapreduce:{region}:{account}:cluster/*"],
                "Condition": _of_this_env(config),
            },
        ]
    statements += _outcome_statements(defs)
    return {"Version": VERSION, "Statement": statements}


def trust_policy(service: str | list[str], account_id: str) -> dict[str, Any]:
    """Trust for one AWS service principal (or several), only on behalf of this account."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }


def render_policies(config: Config, defs: EmrDefinitions) -> dict[str, dict[str, Any]]:
    """Every policy document of the environment, by file name."""
    account = defs.account.account_id
    ec2_trust = trust_policy("ec2.amazonaws.com", account)
    del ec2_trust["Statement"][0]["Condition"]  # EC2 sends no source account to condition on
    return {
        "job-role-policy.json": job_role_policy(config, defs),
        "job-role-trust.json": trust_policy("emr-serverless.amazonaws.com", account),
        "instance-role-trust.json": ec2_trust,
        "scheduler-role-policy.json": scheduler_role_policy(config, defs),
        "scheduler-role-trust.json": trust_policy("scheduler.amazonaws.com", account),
        "stepfunctions-role-policy.json": stepfunctions_role_policy(config, defs),
        "stepfunctions-role-trust.json": trust_policy("states.amazonaws.com", account),
        "airflow-role-policy.json": airflow_role_policy(config, defs),
        "airflow-role-trust.json": trust_policy(list(AIRFLOW_SERVICES), account),
    }


def to_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def write_policies(config: Config, defs: EmrDefinitions, out_dir: Path) -> list[Path]:
    """Write the rendered documents into `out_dir` (e.g. `emr/iam/dev`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in render_policies(config, defs).items():
        path = out_dir / name
        path.write_text(to_text(document), encoding="utf-8")
        written.append(path)
    return written
