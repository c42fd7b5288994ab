"""Configuration: base.yaml plus one overlay per environment, validated on load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse.core.config import (
    DEFAULT_CONF_DIR,
    PROJECT_ROOT,
    AwsConfig,
    ConfigError,
    StorageConfig,
    load_config,
)


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    """A conf folder holding a copy of the real base.yaml; tests add a (broken) overlay."""
    folder = tmp_path / "conf"
    folder.mkdir()
    shutil.copy(DEFAULT_CONF_DIR / "base.yaml", folder / "base.yaml")
    return folder


def _overlay(conf_dir: Path, text: str, env: str = "broken") -> Path:
    path = conf_dir / f"{env}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_local_env_resolves_relative_roots_to_absolute_folders_under_the_project() -> None:
    config = load_config("local")

    assert config.env == "local"
    assert config.storage == StorageConfig(
        landing_root=str(PROJECT_ROOT / "data" / "landing"),
        lakehouse_root=str(PROJECT_ROOT / "data" / "lakehouse"),
        reports_root=str(PROJECT_ROOT / "data" / "reports"),
    )
    assert config.spark.mode == "local"
    assert config.spark.master == "local[2]"
    assert config.aws is None
    assert config.secrets.pii_hmac_key_env == "LAKEHOUSE_PII_HMAC_KEY"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_aws_envs_keep_s3_roots_and_run_on_emr(env: str) -> None:
    config = load_config(env)

    assert config.env == env
    assert config.storage == StorageConfig(
        landing_root=f"s3://lakehouse-{env}-landing/landing",
        lakehouse_root=f"s3://lakehouse-{env}-lake/lakehouse",
        reports_root=f"s3://lakehouse-{env}-lake/reports",
    )
    assert config.spark.mode == "emr"
    assert config.spark.shuffle_partitions == {"dev": 64, "prod": 200}[env]
    assert config.spark.settings == {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        # From conf/base.yaml: bounded files and row groups in every environment.
        "spark.sql.files.maxRecordsPerFile": "1000000",
        "spark.hadoop.parquet.block.size": "33554432",
        # ... and cached batches read back without the object stream's handle table.
        "spark.serializer.objectStreamReset": "1",
    }
    assert config.aws == AwsConfig(
        region="eu-west-1",
        artifacts_uri=f"s3://lakehouse-{env}-artifacts/lakehouse",
        logs_uri=f"s3://lakehouse-{env}-logs/emr",
    )
    assert (
        config.table_path("bronze", "orders")
        == f"s3://lakehouse-{env}-lake/lakehouse/bronze/orders"
    )


def test_overrides_win_over_the_files_and_relative_override_roots_are_resolved(
    tmp_path: Path,
) -> None:
    config = load_config(
        "local",
        overrides={"storage": {"landing_root": str(tmp_path / "in"), "reports_root": "out/r"}},
    )

    assert config.storage == StorageConfig(
        landing_root=str(tmp_path / "in"),
        lakehouse_root=str(PROJECT_ROOT / "data" / "lakehouse"),
        reports_root=str(PROJECT_ROOT / "out" / "r"),
    )


def test_unknown_key_names_the_overlay_file_the_dotted_key_and_the_known_keys(
    conf_dir: Path,
) -> None:
    overlay = _overlay(conf_dir, "storage:\n  landing_rot: /tmp/x\n")

    with pytest.raises(ConfigError) as err:
        load_config("broken", conf_dir=conf_dir)

    assert str(err.value) == (
        f"{overlay}: unknown key 'storage.landing_rot' "
        "(known keys here: lakehouse_root, landing_root, reports_root)"
    )


def test_missing_key_names_the_file_that_should_set_it_the_dotted_key_and_its_type(
    conf_dir: Path,
) -> None:
    base = conf_dir / "base.yaml"
    text = base.read_text(encoding="utf-8")
    assert "  reports_root: data/reports\n" in text
    base.write_text(text.replace("  reports_root: data/reports\n", ""), encoding="utf-8")
    _overlay(conf_dir, "spark:\n  mode: local\n")

    with pytest.raises(ConfigError) as err:
        load_config("broken", conf_dir=conf_dir)

    assert str(err.value) == f"{base}: missing key 'storage.reports_root' (a string)"


def test_missing_key_inside_an_optional_section_names_the_dotted_key(conf_dir: Path) -> None:
    overlay = _overlay(conf_dir, "aws:\n  region: eu-west-1\n  logs_uri: s3://logs/emr\n")

    with pytest.raises(ConfigError) as err:
        load_config("broken", conf_dir=conf_dir)

    assert str(err.value) == f"{overlay}: missing key 'aws.artifacts_uri' (a string)"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "spark:\n  shuffle_partitions: many\n",
            "key 'spark.shuffle_partitions': expected an integer, got 'many'",
        ),
        ("spark:\n  mode: yarn\n", "key 'spark.mode': expected one of 'local', 'emr', got 'yarn'"),
        (
            "generator:\n  defects:\n    bom: 'yes'\n",
            "key 'generator.defects.bom': expected true or false, got 'yes'",
        ),
        (
            "generator:\n  start_date: last monday\n",
            "key 'generator.start_date': expected a date YYYY-MM-DD, got 'last monday'",
        ),
    ],
)
def test_wrong_type_names_the_overlay_file_the_dotted_key_and_the_expected_type(
    conf_dir: Path, yaml_text: str, expected: str
) -> None:
    overlay = _overlay(conf_dir, yaml_text)

    with pytest.raises(ConfigError) as err:
        load_config("broken", conf_dir=conf_dir)

    assert str(err.value) == f"{overlay}: {expected}"


def test_unknown_env_names_the_environments_that_exist() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("staging")

    message = str(err.value)
    assert message.startswith(f"{DEFAULT_CONF_DIR / 'staging.yaml'}: no such environment 'staging'")
    assert "(known: dev, local, prod" in message


def test_unknown_env_lists_only_real_environments() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("staging")

    assert str(err.value).endswith("(known: dev, local, prod)")
