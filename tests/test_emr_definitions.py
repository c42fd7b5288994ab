"""The EMR definitions in emr/*.yaml: strict parsing with file and key in every error, and the
per-env overlays."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse.core.config import PROJECT_ROOT, ConfigError
from lakehouse.emr.definitions import load_definitions
from moto_server import run_cli


def _copy_emr(tmp_path: Path) -> Path:
    folder = tmp_path / "emr"
    shutil.copytree(PROJECT_ROOT / "emr", folder, ignore=shutil.ignore_patterns("iam", "*.py"))
    return folder


def test_overlays_set_each_environments_values() -> None:
    dev, prod = load_definitions("dev"), load_definitions("prod")

    assert (dev.cluster.name, prod.cluster.name) == ("lakehouse-dev", "lakehouse-prod")
    assert dev.cluster.managed_scaling.maximum_units == 12
    assert prod.cluster.managed_scaling.maximum_units == 60
    assert prod.cluster.idle_timeout_seconds == 1800
    assert dev.cluster.release_label == prod.cluster.release_label == "emr-7.12.0"
    assert prod.serverless.application.initial_capacity["EXECUTOR"].worker_count == 4
    assert dev.serverless.application.initial_capacity["EXECUTOR"].worker_count == 2
    assert prod.serverless.backfill_parallel == 3
    assert dev.schedule.expression == prod.schedule.expression == "cron(0 2 * * ? *)"


def test_an_unknown_key_names_its_file_and_key(tmp_path: Path) -> None:
    folder = _copy_emr(tmp_path)
    overlay = folder / "cluster.dev.yaml"
    overlay.write_text(overlay.read_text() + "managed_scalling:\n  minimum_units: 1\n")

    with pytest.raises(ConfigError) as raised:
        load_definitions("dev", folder)

    assert str(raised.value).startswith(f"{overlay}: unknown key 'managed_scalling'")


def test_a_wrong_value_names_its_file_key_and_what_was_expected(tmp_path: Path) -> None:
    folder = _copy_emr(tmp_path)
    overlay = folder / "cluster.dev.yaml"
    overlay.write_text(overlay.read_text() + "step_action_on_failure: STOP\n")

    with pytest.raises(ConfigError) as raised:
        load_definitions("dev", folder)

    assert str(raised.value) == (
        f"{overlay}: key 'step_action_on_failure': expected one of 'CANCEL_AND_WAIT', "
        "'TERMINATE_CLUSTER', 'CONTINUE', got 'STOP'"
    )


def test_emr_commands_refuse_an_environment_without_aws(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(
        ["emr", "run", "--env", "local", "--date", "2024-01-03", "--dry-run"], monkeypatch
    )

    assert code == 2
    assert "missing key 'aws'" in capsys.readouterr().err
