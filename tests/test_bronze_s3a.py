"""Bronze on an object store: landing files read from, and Delta tables written to, an `s3a://`
bucket on the moto server (S3A pointed at the loopback endpoint), idempotent there too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

import moto_server
from lakehouse.bronze import ingestion as bronze
from lakehouse.bronze.landing import record_id
from lakehouse.core.context import Lakehouse

moto_url = moto_server.moto_url
moto = moto_server.moto

BUCKET = "lakehouse-s3a-test"
ORDER = (
    '{"op":"c","ts_ms":1704100000000,"lsn":10,"before":null,"after":{"order_id":"o1",'
    '"customer_id":"c1","order_ts":"2024-01-01T09:00:00Z","status":"placed","currency":"EUR",'
    '"shipping_country":"DE"}}'
)
PAYMENTS = (
    "event_id,payment_id,order_id,event_ts,event_type,amount,currency,method,provider_ref\n"
    "e1,p1,o1,2024-01-01T10:00:00Z,captured,12.50,EUR,card,r1\n"
    "e2,p1,o1\n"
)


@pytest.fixture
def s3a(spark: SparkSession, moto: str) -> str:
    """Point S3A at the moto server for one bucket (per-bucket settings, so nothing else of the
    shared session changes) and create the bucket."""
    moto_server.point_s3a_at(spark, BUCKET, moto)
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": moto_server.REGION}
    )
    s3.put_object(
        Bucket=BUCKET,
        Key="landing/orders/ingest_date=2024-01-01/o.jsonl",
        Body=(ORDER + "\n" + ORDER + "\n").encode(),
    )
    s3.put_object(
        Bucket=BUCKET, Key="landing/payments/ingest_date=2024-01-01/p.csv", Body=PAYMENTS.encode()
    )
    return f"s3a://{BUCKET}"


def test_bronze_reads_and_writes_s3a_and_a_second_run_adds_nothing(
    spark: SparkSession, s3a: str, tmp_path: Path
) -> None:
    lh = Lakehouse.load(
        "local",
        overrides={
            "storage": {
                "landing_root": f"{s3a}/landing",
                "lakehouse_root": f"{s3a}/lake",
                "reports_root": str(tmp_path / "reports"),
            }
        },
    )

    first = {e.table_name: e for e in bronze.ingest(spark, lh, "run-1")}
    orders_path = f"{s3a}/lake/bronze/orders"
    version_after_first = DeltaTable.forPath(spark, orders_path).history(1).first()["version"]
    second = {e.table_name: e for e in bronze.ingest(spark, lh, "run-2")}

    assert (
        first["orders"].records_read,
        first["orders"].records_written,
        first["orders"].duplicates,
    ) == (2, 1, 1)
    assert (
        first["payments"].records_read,
        first["payments"].records_written,
        first["payments"].quarantined,
    ) == (2, 1, 1)
    assert (second["orders"].files_skipped, second["orders"].records_read) == (1, 0)
    rows = spark.read.format("delta").load(orders_path).select("_record_id", "_file").collect()
    canonical = json.dumps(json.loads(ORDER), sort_keys=True, separators=(",", ":"))
    assert [tuple(r) for r in rows] == [
        (record_id("orders", canonical), "orders/ingest_date=2024-01-01/o.jsonl")
    ]
    assert (
        DeltaTable.forPath(spark, orders_path).history(1).first()["version"] == version_after_first
    )
