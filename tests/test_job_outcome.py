"""A job that fails still tells what happened: `jobs/pipeline.py` run in this process (real Spark,
real Delta) with an error check failing on purpose publishes, from its `finally` path, a message
naming the failed step and check with the ledger rows the run wrote, and CloudWatch metrics with
`QualityChecksFailed` at 1 or more (moto as a real local HTTP server)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import moto_server
from lakehouse.cli.jobs import job_main
from lakehouse.core.config import DEFAULT_CONF_DIR
from lakehouse.core.context import Lakehouse
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.emr.notify import ledger_figures
from lakehouse.quality import QualityGateError
from lakehouse.state.ledger import LEDGER_TABLE
from lakehouse_dev.generate import generate_landing
from moto_server import REGION

moto_url = moto_server.moto_url
moto = moto_server.moto

DAY = "2024-01-01"


def _conf(base: Path, moto: str) -> Path:
    """The shipped conf with its local lakehouse under `base`, an AWS side on moto, and on
    silver.orders an error check and a warning that fail on purpose."""
    folder = base / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, folder)
    (folder / "local.yaml").write_text(
        yaml.safe_dump(
            {
                "spark": {"mode": "local", "shuffle_partitions": 2},
                "storage": {
                    "landing_root": str(base / "landing"),
                    "lakehouse_root": str(base / "lake"),
                    "reports_root": str(base / "reports"),
                },
                "aws": {
                    "region": REGION,
                    "artifacts_uri": "s3://unused/artifacts",
                    "logs_uri": "s3://unused/logs",
                    "endpoint_url": moto,
                },
            }
        )
    )
    suite_file = folder / "quality" / "silver.orders.yaml"
    suite = yaml.safe_load(suite_file.read_text())
    suite["checks"] += [
        {"name": "no_orders_at_all", "severity": "error", "size": {"max": 0}},
        {"name": "at_most_one_order", "severity": "warning", "size": {"max": 1}},
    ]
    suite_file.write_text(yaml.safe_dump(suite))
    return folder


def test_a_job_stopped_by_its_gate_publishes_the_failed_check_and_the_ledger(
    spark: SparkSession, moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _conf(tmp_path, moto)
    lh = Lakehouse.load("local", conf)
    spec = replace(
        lh.config.generator, customers=10, days=1, orders_per_day=6, defects=DefectSwitches.none()
    )
    generate_landing(lh.config.storage.landing_root, spec)
    sns, sqs = moto_server.client(moto, "sns"), moto_server.client(moto, "sqs")
    topic = sns.create_topic(Name="lakehouse-local-runs")["TopicArn"]
    queue = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    monkeypatch.setenv("LAKEHOUSE_SNS_TOPIC_ARN", topic)
    monkeypatch.setenv("LAKEHOUSE_METRICS_NAMESPACE", "LakehouseTest")
    started = datetime.now(UTC)

    with pytest.raises(QualityGateError, match=r"silver\.orders/no_orders_at_all"):
        job_main("pipeline", ["--env", "local", "--conf-dir", str(conf), "--date", DAY], stop=False)

    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    text = body["Message"]
    run_id = text.split()[3]
    assert text.startswith(f"Lakehouse pipeline run {run_id} in local: FAILED\n")
    assert (
        body["Subject"]
        == (
            f"[lakehouse local] pipeline FAILED in quality (silver suites), "
            f"1 error check(s) failed (run {run_id})"
        )[:100]
    )
    assert "Failed step: quality (silver suites)\n" in text
    assert "Error: QualityGateError: " in text and "silver.orders/no_orders_at_all" in text
    assert "  ERROR   silver.orders/no_orders_at_all" in text
    assert "  WARNING silver.orders/at_most_one_order" in text
    # Every ledger row the run wrote, added up per layer and source, as in the ledger table.
    rows = spark.read.format("delta").load(lh.path(LEDGER_TABLE)).where(F.col("run_id") == run_id)
    ledger = ledger_figures([r.asDict() for r in rows.collect()])
    assert {f.layer for f in ledger} == {"bronze", "silver"}
    for f in ledger:
        name = f"{f.layer}.{f.source}"
        assert (
            f"  {name:<28} {f.records_read:>12,} {f.records_written:>12,} "
            f"{f.records_quarantined:>12,}\n" in text
        )
    # The day's order events: every line of the landed orders files, read by bronze and silver.
    landed = sum(
        len(p.read_text().splitlines())
        for p in Path(lh.config.landing_path("orders")).rglob("*")
        if p.is_file()
    )
    figures = {(f.layer, f.source): f for f in ledger}
    assert landed > 6
    assert figures["bronze", "orders"].records_read == landed
    assert figures["silver", "orders"].records_read == landed
    assert figures["silver", "orders"].records_written == 6  # six orders, one row each

    cloudwatch = moto_server.client(moto, "cloudwatch")

    def total(name: str, **dims: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="LakehouseTest",
            MetricName=name,
            Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
            StartTime=started - timedelta(minutes=5),
            EndTime=datetime.now(UTC) + timedelta(minutes=5),
            Period=3600,
            Statistics=["Sum"],
        )["Datapoints"]
        return sum(p["Sum"] for p in points)

    assert total("QualityChecksFailed", Env="local", Job="pipeline") == 1
    assert total("QualityWarningsFailed", Env="local", Job="pipeline") == 1
    assert total("RunFailed", Env="local", Job="pipeline") == 1
    assert total("RecordsRead", Env="local", Layer="silver", Source="orders") == landed
