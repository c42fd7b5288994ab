"""One Spark session for the whole test run (local[2], few shuffle partitions, UI off)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from lakehouse.core.config import SparkConfig
from lakehouse.core.spark import get_spark, stop_spark

TEST_PII_KEY = "test-only-hmac-key"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = get_spark(
        SparkConfig(mode="local", master="local[2]", shuffle_partitions=2, driver_memory="3g"),
        app_name="lakehouse-tests",
    )
    yield session
    stop_spark(session)


@pytest.fixture(autouse=True, scope="session")
def _pii_key() -> Iterator[None]:
    """A known HMAC key for the whole run (module fixtures too); tests of a missing key unset it
    with their own monkeypatch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAKEHOUSE_PII_HMAC_KEY", os.environ.get("TEST_PII_KEY", TEST_PII_KEY))
        yield
