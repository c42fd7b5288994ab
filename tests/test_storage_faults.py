"""The pipeline on an object store that misbehaves (issue #22, docs/RELIABILITY.md): S3A talks to
moto through `lakehouse_dev.faults.FaultProxy`, which answers some requests with 503 SlowDown,
500 InternalError, a dropped connection or a slow answer.

- At a seeded fault rate the run completes through S3A's retries, and every table equals the
  same run on a local folder.
- When the store fails outright in the middle of a run, the run stops with an error naming the
  store's answer, readers see no gold of it, and a rerun once the store is back completes to the
  same tables.

The whole-pipeline tests and bronze on a flaky store take about 10 minutes together: they are
marked `faults` and run by `make faults` (which prints the proxy's figures), not by `make test`,
which runs their share on bronze: an outage in the middle of bronze, then a rerun (2 minutes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

import moto_server
from lakehouse.bronze.ingestion import ingest
from lakehouse.core.context import Lakehouse
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.gold.published import published_versions
from lakehouse.pipeline import run_pipeline
from lakehouse_dev.faults import FaultProxy
from lakehouse_dev.fingerprint import frame_fingerprint, lakehouse_fingerprints
from lakehouse_dev.generate import generate_landing

moto_url = moto_server.moto_url
moto = moto_server.moto

DAY = "2024-01-01"
# Retries short enough for a test, but several of each: the SDK's own (`attempts.maximum`, every
# 5xx and dropped connection) inside S3A's (`retry.*`, throttling and transient errors).
RETRIES = {
    "attempts.maximum": "4",
    "retry.limit": "3",
    "retry.interval": "50ms",
    "retry.throttle.limit": "3",
    "retry.throttle.interval": "50ms",
    "connection.establish.timeout": "5000",
    "connection.timeout": "20000",
}


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("faults-landing")
    spec = replace(Lakehouse.load("local").config.generator, customers=12, days=1, orders_per_day=8)
    generate_landing(str(base), replace(spec, defects=DefectSwitches.none()))
    return base


def _local(landing: Path, base: Path) -> Lakehouse:
    """A lakehouse on local folders under `base`, reading the shared `landing`."""
    storage = {
        "landing_root": str(landing),
        "lakehouse_root": str(base / "lake"),
        "reports_root": str(base / "reports"),
    }
    return Lakehouse.load("local", None, {"storage": storage})


@pytest.fixture(scope="module")
def reference(
    spark: SparkSession, landing: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """Every table of the same run on local folders: what a run on the store must give."""
    base = tmp_path_factory.mktemp("faults-reference")
    lh = _local(landing, base)
    run_pipeline(spark, lh, "run-1", dates=[DAY], register=False)
    return lakehouse_fingerprints(spark, str(base / "lake"))


# Layers bronze writes (its quarantine only with bad input, which this landing has none of).
BRONZE_LAYERS = ("bronze.", "quarantine.")


@pytest.fixture(scope="module")
def bronze_reference(
    spark: SparkSession, landing: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """Bronze (and its quarantine) of the landing ingested from local folders."""
    base = tmp_path_factory.mktemp("faults-bronze")
    lh = _local(landing, base)
    ingest(spark, lh, "run-1")
    found = lakehouse_fingerprints(spark, str(base / "lake"))
    return {n: f for n, f in found.items() if n.startswith(BRONZE_LAYERS)}


@pytest.fixture
def store(spark: SparkSession, moto: str, landing: Path, tmp_path: Path) -> Iterator[Any]:
    """A bucket on moto holding the landing files, S3A pointed at it through a fault proxy (per
    bucket settings, so nothing else of the shared session changes), and the lakehouse on it."""
    bucket = f"faults-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": moto_server.REGION}
    )
    for path in sorted(p for p in landing.rglob("*") if p.is_file()):
        s3.put_object(
            Bucket=bucket, Key=f"landing/{path.relative_to(landing)}", Body=path.read_bytes()
        )
    with FaultProxy(moto, seed=7, kinds=("503", "500", "drop", "slow"), slow_seconds=0.3) as proxy:
        moto_server.point_s3a_at(spark, bucket, proxy.url, **RETRIES)
        storage = {
            "landing_root": f"s3a://{bucket}/landing",
            "lakehouse_root": f"s3a://{bucket}/lake",
            "reports_root": str(tmp_path / "reports"),
        }
        lh = Lakehouse.load("local", None, {"storage": storage})
        yield proxy, lh


def _fingerprints(spark: SparkSession, lh: Lakehouse, names: list[str]) -> dict[str, Any]:
    return {n: frame_fingerprint(spark.read.format("delta").load(lh.path(n))) for n in names}


@pytest.mark.faults
def test_bronze_on_a_flaky_store_lands_every_record_once(
    spark: SparkSession, store: Any, bronze_reference: dict[str, dict[str, Any]]
) -> None:
    proxy, lh = store
    proxy.rate = 0.1

    ingest(spark, lh, "run-1")
    proxy.heal()

    assert sum(proxy.faults.values()) >= 10
    assert _fingerprints(spark, lh, sorted(bronze_reference)) == bronze_reference


def test_an_outage_in_bronze_stops_it_and_the_rerun_lands_every_record_once(
    spark: SparkSession, store: Any, bronze_reference: dict[str, dict[str, Any]]
) -> None:
    proxy, lh = store
    proxy.kinds = ("503",)
    proxy.fail_from = 150

    with pytest.raises(Exception, match="Status Code: 503"):
        ingest(spark, lh, "run-1")
    proxy.heal()
    ingest(spark, lh, "run-2")

    assert _fingerprints(spark, lh, sorted(bronze_reference)) == bronze_reference


@pytest.mark.faults
def test_a_run_on_a_flaky_store_completes_by_retrying_to_the_local_result(
    spark: SparkSession, store: Any, reference: dict[str, dict[str, Any]]
) -> None:
    proxy, lh = store
    proxy.rate = 0.04

    run_pipeline(spark, lh, "run-1", dates=[DAY], register=False)
    proxy.heal()
    faults = dict(proxy.faults)
    print(f"\nflaky store, completed: {proxy.summary()}")

    assert set(faults) == {"503", "500", "drop", "slow"}
    assert sum(faults.values()) >= 20
    assert _fingerprints(spark, lh, sorted(reference)) == reference


@pytest.mark.faults
def test_a_store_that_fails_mid_run_stops_it_cleanly_and_the_rerun_completes(
    spark: SparkSession, store: Any, reference: dict[str, dict[str, Any]]
) -> None:
    proxy, lh = store
    # An outage (every answer 503 SlowDown) from the 1500th request on: after bronze, before
    # gold is published.
    proxy.kinds = ("503",)
    proxy.fail_from = 1500

    with pytest.raises(Exception) as failed:
        run_pipeline(spark, lh, "run-1", dates=[DAY], register=False)
    proxy.heal()
    print(f"\nstore failing from request 1500: {proxy.summary()}")
    said = [line for line in str(failed.value).splitlines() if "503" in line]
    print(f"the run stopped with: {said[0][:300] if said else str(failed.value)[:300]}")
    seen = published_versions(spark, lh)
    run_pipeline(spark, lh, "run-1-again", dates=[DAY], register=False)

    assert "SlowDown" in str(failed.value) or "503" in str(failed.value)
    assert proxy.faults["503"] > 0
    assert seen == {}  # readers saw no gold of the stopped run
    assert _fingerprints(spark, lh, sorted(reference)) == reference
