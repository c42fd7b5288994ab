"""The crash suite's runner (lakehouse_dev.chaos).

`make test` runs its quick trials: day 2's bronze step killed (`os._exit`, in a process of its
own) on either side of its ledger rows, then run again in the test session; bronze, the
quarantine and the ledger must be as the uninterrupted step left them (about a minute a trial).

The whole-run trial below, a day's run killed in the middle of publishing gold and run again, is
four pipeline runs in processes of their own, about 7 minutes on 2 cores: marked `chaos` and
left out of `make test` (`make test PYTEST_ARGS="-m chaos"` runs it; `make chaos` runs the
suite's 20 trials). The crash behaviours of the other layers have fast in-process tests in
`make test`: a publish stopped after its first table (test_gold_build.py), a silver retry after
a commit without ledger rows (test_silver.py), the lock (test_lock.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.core.crash import CRASH_STATUS
from lakehouse_dev import chaos


@pytest.fixture(scope="module")
def bronze_reference(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, chaos.Reference]:
    work = tmp_path_factory.mktemp("chaos_bronze")
    return work, chaos.build_bronze_reference(spark, work)


@pytest.mark.parametrize("point", chaos.BRONZE_POINTS)
def test_bronze_killed_around_its_ledger_rows_is_rerun_to_the_uninterrupted_result(
    spark: SparkSession, bronze_reference: tuple[Path, chaos.Reference], point: str
) -> None:
    work, ref = bronze_reference

    trial = chaos.run_bronze_trial(spark, work, ref, point)

    assert {"bronze.orders", "bronze._files", "quarantine.records"} <= set(ref.final)
    assert trial.crashed_status == CRASH_STATUS  # the process ended at the point
    assert trial.different == []  # every bronze table and the quarantine, by key and value
    assert trial.miscounted == []  # the ledger counts each record once, written or quarantined
    assert trial.extra_commits == []  # no bronze commit repeated by the rerun
    assert trial.ok


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
