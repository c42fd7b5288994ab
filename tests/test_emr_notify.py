"""Job outcomes against a moto server: the SNS message reaches a subscribed SQS queue and
CloudWatch holds the run's, steps' and sources' figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import moto_server
from lakehouse.core.config import Config
from lakehouse.emr.notify import (
    CheckFailure,
    JobOutcome,
    ledger_figures,
    notification_target,
    publish_outcome,
)
from moto_server import aws_clients

moto_url = moto_server.moto_url
moto = moto_server.moto
dev_config = moto_server.dev_config

NOW = datetime.now(UTC).replace(microsecond=0)
OUTCOME = JobOutcome(
    env="dev",
    job="pipeline",
    run_id="00abc123",
    status="FAILED",
    duration_s=754.4,
    error="QualityGateError: error checks failed: silver.orders/amount_non_negative",
    failed_step="quality (silver suites)",
    steps={"bronze": 301.2, "silver": 420.0, "quality (silver suites)": 33.2},
    ledger=ledger_figures(
        [
            {
                "layer": "bronze",
                "table_name": "orders",
                "records_read": 1000,
                "records_written": 993,
                "quarantined": 7,
            },
            {
                "layer": "bronze",
                "table_name": "orders",
                "records_read": 500,
                "records_written": 497,
                "quarantined": 3,
            },
            {
                "layer": "silver",
                "table_name": "customers",
                "records_read": 200,
                "records_written": 200,
                "quarantined": 0,
            },
        ]
    ),
    failures=[
        CheckFailure("silver.orders/amount_non_negative", "error", "2 rows with amount < 0"),
        CheckFailure("gold.daily_kpis/complete", "warning"),
    ],
    checks_passed=40,
    gold_age_hours=26.5,
)


def _publish(config: Config, moto: str) -> tuple[str, str]:
    sns = moto_server.client(moto, "sns")
    sqs = moto_server.client(moto, "sqs")
    topic = sns.create_topic(Name="lakehouse-dev-runs")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="run-outcomes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    publish_outcome(aws_clients(config), topic, OUTCOME, now=NOW)
    return topic, queue_url


def test_a_failed_runs_outcome_reaches_a_subscribed_queue(dev_config: Config, moto: str) -> None:
    topic, queue_url = _publish(dev_config, moto)

    messages = moto_server.client(moto, "sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )["Messages"]

    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])
    assert envelope["TopicArn"] == topic
    assert envelope["Subject"] == (
        "[lakehouse dev] pipeline FAILED in quality (silver suites), "
        "1 error check(s) failed (run 00abc123)"
    )
    assert envelope["Message"] == (
        "Lakehouse pipeline run 00abc123 in dev: FAILED\n"
        "Duration: 12m 34s\n"
        "Failed step: quality (silver suites)\n"
        "Error: QualityGateError: error checks failed: silver.orders/amount_non_negative\n"
        "\n"
        "Steps (seconds):\n"
        "  bronze                           301.2\n"
        "  silver                           420.0\n"
        "  quality (silver suites)           33.2\n"
        "\n"
        "Ledger of the run so far:\n"
        "  layer.source                         read      written  quarantined\n"
        "  bronze.orders                       1,500        1,490           10\n"
        "  silver.customers                      200          200            0\n"
        "\n"
        "Quality: 40 passed, 1 warning(s) failed, 1 error(s) failed\n"
        "  ERROR   silver.orders/amount_non_negative: 2 rows with amount < 0\n"
        "  WARNING gold.daily_kpis/complete\n"
        "\n"
        "Gold published 26.5 hours ago\n"
    )
    assert envelope["MessageAttributes"]["status"]["Value"] == "FAILED"
    assert envelope["MessageAttributes"]["job"]["Value"] == "pipeline"


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


def test_cloudwatch_holds_the_run_step_and_source_figures(dev_config: Config, moto: str) -> None:
    _publish(dev_config, moto)

    job = {"Env": "dev", "Job": "pipeline"}
    orders = {"Env": "dev", "Layer": "bronze", "Source": "orders"}
    assert _statistic(moto, "RunFailed", job) == [(1.0, "Count")]
    assert _statistic(moto, "RunSucceeded", job) == [(0.0, "Count")]
    assert _statistic(moto, "RunDurationSeconds", job) == [(754.4, "Seconds")]
    assert _statistic(moto, "QualityChecksFailed", job) == [(1.0, "Count")]
    assert _statistic(moto, "QualityWarningsFailed", job) == [(1.0, "Count")]
    # Quarantined in any layer per 100 records bronze took in (silver's reads are the same ones).
    assert _statistic(moto, "QuarantineRatePercent", job) == [(100 * 10 / 1500, "Percent")]
    assert _statistic(moto, "StepDurationSeconds", {"Env": "dev", "Step": "silver"}) == [
        (420.0, "Seconds")
    ]
    assert _statistic(moto, "RecordsRead", orders) == [(1500.0, "Count")]
    assert _statistic(moto, "RecordsWritten", orders) == [(1490.0, "Count")]
    assert _statistic(moto, "RecordsQuarantined", orders) == [(10.0, "Count")]
    assert _statistic(moto, "GoldFreshnessHours", {"Env": "dev"}) == [(26.5, "None")]
    metrics = moto_server.client(moto, "cloudwatch").list_metrics(Namespace="Lakehouse")["Metrics"]
    # Run figures also go out with Env alone, what the alarms watch whichever job ran (moto sums
    # every series containing a queried dimension, so the sets are checked, not Env's statistics).
    assert sorted(
        tuple(sorted(d["Name"] for d in m["Dimensions"]))
        for m in metrics
        if m["MetricName"] == "RunFailed"
    ) == [("Env",), ("Env", "Job")]
    names = sorted({m["MetricName"] for m in metrics})
    # The run failed: no GoldUpToDate point, whose absence the late-run and stale-gold alarms see.
    assert names == [
        "GoldFreshnessHours",
        "QualityChecksFailed",
        "QualityWarningsFailed",
        "QuarantineRatePercent",
        "RecordsQuarantined",
        "RecordsRead",
        "RecordsWritten",
        "RunDurationSeconds",
        "RunFailed",
        "RunSucceeded",
        "StepDurationSeconds",
    ]


def test_the_driver_finds_its_notification_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_SNS_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:t")
    monkeypatch.setenv("LAKEHOUSE_METRICS_NAMESPACE", "LakehouseTest")

    assert notification_target() == ("arn:aws:sns:eu-west-1:123456789012:t", "LakehouseTest")

    monkeypatch.delenv("LAKEHOUSE_SNS_TOPIC_ARN")
    monkeypatch.delenv("LAKEHOUSE_METRICS_NAMESPACE")
    assert notification_target() == (None, "Lakehouse")
