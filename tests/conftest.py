"""One Spark session for the whole test run (local[2], few shuffle partitions, UI off, little
kept between modules)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.core.config import SparkConfig
from lakehouse.core.spark import clear_caches, get_spark, stop_spark
from lakehouse_dev.browser import BrowserMissing, browser, chromium_path

TEST_PII_KEY = "test-only-hmac-key"

# The Airflow DAG tests need Airflow, which lives in .venv-airflow: `make test` runs them there
# (`pytest --confcutdir=tests/airflow tests/airflow`), after this suite.
collect_ignore = ["airflow"]


# One session lives through every module, so it keeps little of what it has run: Spark's status
# store holds the plan and metrics of its last 1,000 SQL executions and jobs by default (the
# suite's JVM ran out of its 3 GB heap in its last module at 480 tests).
#
# But it keeps the classes Spark generates for a query's code: a module builds its lakehouse
# with the same queries as the module before it, and by default only the last 100 generated
# classes are kept, fewer than one pipeline run makes, so each run compiled them again (Janino,
# then the JIT). Kept, a fresh three-day lakehouse's first run in a warm session took 48-52 s
# instead of 58-65 s (docs/BENCHMARKS.md, "The suite's session").
LONG_SESSION = {
    "spark.sql.ui.retainedExecutions": "20",
    "spark.ui.retainedJobs": "200",
    "spark.ui.retainedStages": "200",
    "spark.sql.codegen.cache.maxEntries": "5000",
}


# Under `make test` the modules are shared out among TEST_WORKERS processes, a module at a time in
# collection order (pytest-xdist's `--dist loadfile`). The longest modules go first, so the last
# one to start is short and no process waits minutes for another at the end (seconds each in
# the CI log's `--durations` list; an order only, nothing depends on it).
SLOWEST_FIRST = (
    "test_emr_local_job.py",
    "test_time_travel.py",
    "test_notebooks.py",
    "test_quality_stories.py",
    "test_stream.py",
    "test_catch_up.py",
    "test_quality_gate.py",
    "test_erasure.py",
    "test_silver.py",
    "test_contract_versions.py",
    "test_gold_build.py",
    "test_pipeline.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = get_spark(
        SparkConfig(
            mode="local",
            master="local[2]",
            shuffle_partitions=2,
            driver_memory="4g",
            settings=LONG_SESSION,
        ),
        app_name="lakehouse-tests",
    )
    yield session
    stop_spark(session)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Headless Chromium (Playwright's Browser) for the page tests; `make test` installs Debian's
    chromium first (`make browser`), so a missing one fails rather than skips."""
    try:
        chromium_path()
    except BrowserMissing as exc:
        pytest.fail(str(exc))
    with browser() as b:
        yield b


@pytest.fixture(autouse=True, scope="module")
def _forget_tables_after_each_module() -> Iterator[None]:
    """Each module's lakehouses are temporary: after it, drop Delta's logs and the cached
    DataFrames of its tables (`clear_caches`), if the module used Spark at all."""
    yield
    session = SparkSession.getActiveSession()
    if session is not None:
        clear_caches(session)


@pytest.fixture(autouse=True, scope="session")
def _pii_key() -> Iterator[None]:
    """A known HMAC key for the whole run (module fixtures too); tests of a missing key unset it
    with their own monkeypatch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAKEHOUSE_PII_HMAC_KEY", os.environ.get("TEST_PII_KEY", TEST_PII_KEY))
        yield
