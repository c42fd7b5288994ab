"""Progress lines count the Spark jobs a piece of work started, read off the DAG scheduler."""

from __future__ import annotations

from pyspark.sql import SparkSession

from lakehouse.core import progress


def test_a_clock_counts_the_spark_jobs_started_since_it_was_made(spark: SparkSession) -> None:
    clock = progress.Clock()

    spark.range(10).collect()
    spark.range(10).collect()

    assert clock.jobs == 2
    assert clock.summary.endswith(", 2 Spark jobs")
