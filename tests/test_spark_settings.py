"""$LAKEHOUSE_SPARK_SETTINGS: Spark settings that win over every configuration's, for each session
the process makes."""

from __future__ import annotations

import re

import pytest
from pyspark.sql import SparkSession

from lakehouse.core.config import SparkConfig
from lakehouse.core.spark import (
    SETTINGS_ENV,
    SparkSetupError,
    get_spark,
    session_conf,
    settings_from_env,
)


def test_unset_or_empty_means_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    assert settings_from_env() == {}
    monkeypatch.setenv(SETTINGS_ENV, "  ")
    assert settings_from_env() == {}


def test_a_json_object_of_strings_is_read_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETTINGS_ENV, '{"spark.sql.shuffle.partitions": "3", "a.b": "x"}')
    assert settings_from_env() == {"spark.sql.shuffle.partitions": "3", "a.b": "x"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", "LAKEHOUSE_SPARK_SETTINGS is not JSON: Expecting property name"),
        ('["a"]', "LAKEHOUSE_SPARK_SETTINGS must be a JSON object of strings"),
        ('{"spark.sql.shuffle.partitions": 3}', "must be a JSON object of strings"),
    ],
)
def test_anything_else_is_refused_saying_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.setenv(SETTINGS_ENV, text)
    with pytest.raises(SparkSetupError, match=re.escape(message)):
        settings_from_env()


def test_they_win_over_the_configuration_of_a_session_asked_for_again(
    spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local session asked for again gets the configuration's SQL settings; put them back after.
    touched = [
        "spark.sql.shuffle.partitions",
        "spark.sql.adaptive.enabled",
        "spark.databricks.delta.snapshotPartitions",
    ]
    monkeypatch.setenv(SETTINGS_ENV, '{"spark.sql.shuffle.partitions": "5"}')
    with session_conf(spark, {key: str(spark.conf.get(key)) for key in touched}):
        again = get_spark(SparkConfig(mode="local", shuffle_partitions=7), app_name="settings")
        assert again is spark
        assert spark.conf.get("spark.sql.shuffle.partitions") == "5"
        monkeypatch.delenv(SETTINGS_ENV)
        get_spark(SparkConfig(mode="local", shuffle_partitions=7), app_name="settings")
        assert spark.conf.get("spark.sql.shuffle.partitions") == "7"
