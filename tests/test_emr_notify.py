"""Run notifications against a moto server: the SNS message reaches a subscribed SQS queue and
CloudWatch holds the run's figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import moto_server
from lakehouse.core.config import Config
from lakehouse.emr.notify import notification_target, publish_run_outcome
from moto_server import aws_clients

moto_url = moto_server.moto_url
moto = moto_server.moto
dev_config = moto_server.dev_config

NOW = datetime.now(UTC).replace(microsecond=0)
LEDGER = [
    {"source": "orders", "records_read": 1000, "records_quarantined": 7, "file": "a.jsonl"},
    {"source": "orders", "records_read": 500, "records_quarantined": 3, "file": "b.jsonl"},
    {"source": "customers", "records_read": 200, "records_quarantined": 0, "file": "c.csv"},
]
QUALITY = [
    {"check": "silver.orders: order_id is unique", "status": "Success"},
    {"check": "silver.orders: amount >= 0", "status": "Error"},
    {"check": "gold.daily_revenue: complete", "status": "Warning"},
    {"check": "silver.customers: email not null", "status": "failed"},
]


def _publish(config: Config, moto: str) -> tuple[str, str]:
    sns = moto_server.client(moto, "sns")
    sqs = moto_server.client(moto, "sqs")
    topic = sns.create_topic(Name="lakehouse-dev-runs")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="run-outcomes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    publish_run_outcome(
        aws_clients(config),
        topic,
        env="dev",
        run_id="00abc123",
        status="succeeded",
        ledger_rows=LEDGER,
        quality_rows=QUALITY,
        duration_s=754.4,
        now=NOW,
    )
    return topic, queue_url


def test_the_run_outcome_reaches_a_subscribed_queue(dev_config: Config, moto: str) -> None:
    topic, queue_url = _publish(dev_config, moto)

    messages = moto_server.client(moto, "sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )["Messages"]

    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])
    assert envelope["TopicArn"] == topic
    assert (
        envelope["Subject"] == "[lakehouse dev] run 00abc123 SUCCEEDED, 2 quality check(s) failed"
    )
    assert envelope["Message"] == (
        "Lakehouse pipeline run 00abc123 in dev: SUCCEEDED\n"
        "Duration: 12m 34s\n"
        "\n"
        "Ingestion by source:\n"
        "  source                       read  quarantined\n"
        "  customers                     200            0\n"
        "  orders                      1,500           10\n"
        "  total                       1,700           10\n"
        "\n"
        "Quality: 1 passed, 1 warning(s), 2 failed\n"
        "  FAILED  silver.orders: amount >= 0\n"
        "  FAILED  silver.customers: email not null\n"
        "  WARNING gold.daily_revenue: complete\n"
    )
    assert envelope["MessageAttributes"]["status"]["Value"] == "SUCCEEDED"


def _statistic(moto: str, name: str, dimensions: dict[str, str]) -> list[tuple[float, str]]:
    points = moto_server.client(moto, "cloudwatch").get_metric_statistics(
        Namespace="Lakehouse",
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=NOW - timedelta(minutes=5),
        EndTime=NOW + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return [(p["Sum"], p["Unit"]) for p in points]


def test_cloudwatch_holds_the_run_figures(dev_config: Config, moto: str) -> None:
    _publish(dev_config, moto)

    assert _statistic(moto, "RecordsRead", {"Env": "dev", "Source": "orders"}) == [
        (1500.0, "Count")
    ]
    assert _statistic(moto, "RecordsQuarantined", {"Env": "dev", "Source": "orders"}) == [
        (10.0, "Count")
    ]
    assert _statistic(moto, "RecordsRead", {"Env": "dev", "Source": "customers"}) == [
        (200.0, "Count")
    ]
    assert _statistic(moto, "RunDurationSeconds", {"Env": "dev"}) == [(754.4, "Seconds")]
    assert _statistic(moto, "QualityChecksFailed", {"Env": "dev"}) == [(2.0, "Count")]
    metrics = moto_server.client(moto, "cloudwatch").list_metrics(Namespace="Lakehouse")["Metrics"]
    assert sorted(
        (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])))
        for m in metrics
    ) == [
        ("QualityChecksFailed", (("Env", "dev"),)),
        ("RecordsQuarantined", (("Env", "dev"), ("Source", "customers"))),
        ("RecordsQuarantined", (("Env", "dev"), ("Source", "orders"))),
        ("RecordsRead", (("Env", "dev"), ("Source", "customers"))),
        ("RecordsRead", (("Env", "dev"), ("Source", "orders"))),
        ("RunDurationSeconds", (("Env", "dev"),)),
    ]


def test_the_driver_finds_its_notification_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:t")
    monkeypatch.setenv("LAKEHOUSE_METRICS_NAMESPACE", "LakehouseTest")

    assert notification_target() == ("arn:aws:sns:eu-west-1:123456789012:t", "LakehouseTest")

    monkeypatch.delenv("LAKEHOUSE_SNS_TOPIC_ARN")
    monkeypatch.delenv("LAKEHOUSE_METRICS_NAMESPACE")
    assert notification_target() == (None, "Lakehouse")
