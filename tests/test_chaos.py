"""The crash suite's runner on one trial (lakehouse_dev.chaos): a day's run killed in the middle
of publishing gold, in its own process, then run again. Four pipeline runs in processes of their
own take about 7 minutes on 2 cores, so this is marked `chaos` and left out of `make test`
(`make test PYTEST_ARGS="-m chaos"` runs it; `make chaos` runs the suite's 20 trials). The
crash behaviours themselves have fast tests in `make test`: a publish stopped after its first
table (test_gold_build.py), bronze stopped before marking its files (test_bronze.py), the lock
(test_lock.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.core.crash import CRASH_STATUS
from lakehouse_dev import chaos


@pytest.mark.chaos
def test_a_run_killed_while_publishing_gold_is_rerun_to_the_uninterrupted_result(
    spark: SparkSession, tmp_path: Path
) -> None:
    ref, [trial] = chaos.run_suite(spark, tmp_path, ["gold.table_published#1"], 0, seed=7)

    assert {"bronze.orders", "silver.orders", "gold.daily_kpis", "quarantine.records"} <= set(
        ref.final
    )
    assert trial.crashed_status == CRASH_STATUS
    # The killed run had written one gold table of day 2; readers still saw day 1's gold.
    assert len(trial.unpublished) == 1
    assert trial.half_published == []
    assert trial.rerun_status == 0
    assert trial.different == []
    assert trial.miscounted == []
    assert trial.extra_commits == []  # every repeated commit was skipped by its txn id
