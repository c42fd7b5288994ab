"""The exact job, run locally: the StartJobRun request the daily schedule sends (entry point,
arguments, `sparkSubmitParameters`, driver environment) and the bundle `make package` builds,
uploaded to moto's S3, run by this machine's `spark-submit` against that moto server
(`lakehouse_dev.local_job` says what stands in for what EMR itself provides). End to end: bronze to
gold on `s3://` paths, the pseudonymisation key from moto's Secrets Manager, the reports in the
bucket, the outcome in SNS and CloudWatch. This is the test that catches a job that cannot run on
EMR (a missing secret, a module missing from the bundle, a path that only works locally). Then
the same for one EMR on EC2 step: the next day's bronze step as AddJobFlowSteps gets it."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

import moto_server
from lakehouse.core.config import load_config
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.core.spark import SETTINGS_ENV
from lakehouse.emr.bundle import bundle_layout, upload
from lakehouse.emr.cluster import step_requests_params
from lakehouse.emr.definitions import load_definitions
from lakehouse.emr.package import build_bundle
from lakehouse.emr.schedule import SCHEDULED_TIME, target_input
from lakehouse_dev.generate import generate_landing
from lakehouse_dev.local_job import spark_submit_command, step_command
from moto_server import FAKE_ENV, REGION, aws_clients

moto_url = moto_server.moto_url
moto = moto_server.moto

FIRED = "2024-01-02T02:00:00Z"  # the schedule fired: the job processes 2024-01-01
BUCKETS = ("lakehouse-dev-artifacts", "lakehouse-dev-landing", "lakehouse-dev-lake")
KEY = "a-dev-key-only-secrets-manager-knows"


def test_the_scheduled_job_then_a_cluster_step_run_end_to_end_on_s3(
    moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config("dev", overrides={"aws": {"endpoint_url": moto}})
    defs = load_definitions("dev")
    clients = aws_clients(config)
    s3 = moto_server.client(moto, "s3")
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    bundle = build_bundle(tmp_path / "dist")
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)  # type: ignore[union-attr]
    upload(clients, bundle, layout)
    moto_server.client(moto, "secretsmanager").create_secret(
        Name="lakehouse/dev/pii-hmac-key", SecretString=KEY
    )
    sns, sqs = moto_server.client(moto, "sns"), moto_server.client(moto, "sqs")
    topic = sns.create_topic(Name="lakehouse-dev-runs")["TopicArn"]
    assert topic == defs.account.sns_topic_arn
    queue = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    landing = tmp_path / "landing"
    spec = replace(
        config.generator, customers=8, days=2, orders_per_day=5, defects=DefectSwitches.none()
    )
    generate_landing(str(landing), spec)
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        key = f"landing/{path.relative_to(landing).as_posix()}"
        s3.put_object(Bucket="lakehouse-dev-landing", Key=key, Body=path.read_bytes())
    # The request exactly as the schedule sends it, with the time Scheduler fills in.
    request = json.loads(
        json.dumps(target_input(config, defs, layout, "app-id")).replace(SCHEDULED_TIME, FIRED)
    )
    argv, env = spark_submit_command(request, moto, region=REGION, credentials=FAKE_ENV)
    process_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAKEHOUSE_"))}
    # Small-data settings (the dev environment's 64 shuffle partitions and Delta's 50 snapshot
    # partitions cost a few days of a few orders minutes over moto); applied after every
    # configured setting, as an operator's one-off override would be.
    process_env[SETTINGS_ENV] = json.dumps(
        {"spark.sql.shuffle.partitions": "2", "spark.databricks.delta.snapshotPartitions": "2"}
    )

    done = subprocess.run(
        argv, env={**process_env, **env}, capture_output=True, text=True, timeout=1200
    )

    assert done.returncode == 0, done.stderr[-4000:]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lakehouse-dev-lake")["Contents"]}
    assert "lakehouse/gold/daily_kpis/_delta_log/00000000000000000000.json" in keys
    assert {"reports/latest/dashboard.html", "reports/latest/quality.html"} <= keys
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    text = json.loads(message["Body"])["Message"]
    assert text.startswith("Lakehouse pipeline run ") and ": SUCCEEDED\n" in text
    orders = sum(
        1
        for line in (landing / "orders" / "ingest_date=2024-01-01").rglob("*.jsonl")
        for record in line.read_text().splitlines()
        if json.loads(record)["op"] == "c"
    )
    assert orders == 5
    assert f"  {'silver.orders':<28} " in text
    dashboard = s3.get_object(Bucket="lakehouse-dev-lake", Key="reports/latest/dashboard.html")
    page = dashboard["Body"].read().decode()
    data = json.loads(page.split('id="kpi-data">', 1)[1].split("</script>", 1)[0])
    (day,) = data["daily_kpis"]
    assert (day["order_date"], day["orders"]) == ("2024-01-01", orders)
    cloudwatch = moto_server.client(moto, "cloudwatch")
    published = {
        (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
        for m in cloudwatch.list_metrics(Namespace="Lakehouse")["Metrics"]
    }
    assert ("RunSucceeded", (("Env", "dev"), ("Job", "pipeline"))) in published
    assert ("GoldUpToDate", (("Env", "dev"),)) in published
    # The key came from Secrets Manager only: nothing in the request or the command holds it.
    assert KEY not in json.dumps(request) and KEY not in " ".join(argv)
    assert KEY not in json.dumps(env)

    # The same for one EMR on EC2 step: the next day's bronze step, as AddJobFlowSteps gets it.
    (step,) = step_requests_params(config, defs, layout, date(2024, 1, 2), ["bronze"])
    defaults = next(c for c in defs.cluster.configurations if c.classification == "spark-defaults")
    argv, env = step_command(step, defaults.properties, moto, region=REGION, credentials=FAKE_ENV)

    done = subprocess.run(
        argv, env={**process_env, **env}, capture_output=True, text=True, timeout=1200
    )

    assert done.returncode == 0, done.stderr[-4000:]
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    text = json.loads(message["Body"])["Message"]
    assert text.startswith("Lakehouse bronze run ") and ": SUCCEEDED\n" in text
    # It ingested day 2's orders (every line of its files), and nothing of day 1 again.
    lines = sum(
        len(p.read_text().splitlines())
        for p in (landing / "orders" / "ingest_date=2024-01-02").rglob("*.jsonl")
    )
    assert lines > 0 and f"  {'bronze.orders':<28} {lines:>12,} {lines:>12,} " in text
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lakehouse-dev-lake")["Contents"]}
    assert any(k.startswith("lakehouse/bronze/orders/ingest_date=2024-01-02/") for k in keys)
