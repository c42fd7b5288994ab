"""`lakehouse emr airflow`: the DAG bundle for an Airflow (MWAA) environment, rendered from the
definitions every `emr` command reads; and the orchestration helpers the DAGs and the state
machine share. The DAGs themselves run in tests/airflow (Airflow's own virtualenv)."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import moto_server
from lakehouse.core.config import ConfigError
from lakehouse.emr import orchestration
from lakehouse.emr.airflow import DATE, airflow_spec
from lakehouse.emr.bundle import bundle_layout
from lakehouse.emr.definitions import load_definitions
from moto_server import run_cli

moto_url = moto_server.moto_url
moto = moto_server.moto

ARTIFACTS = "s3://lakehouse-dev-artifacts/lakehouse/0.1.0"


def _spec_of(bundle: Path) -> dict[str, Any]:
    """`SPEC` of the bundle's generated module, imported as Airflow would import it."""
    with zipfile.ZipFile(bundle) as zf:
        source = zf.read("lakehouse_airflow_spec.py").decode()
    module_spec = importlib.util.spec_from_loader("lakehouse_airflow_spec", loader=None)
    assert module_spec is not None
    module = importlib.util.module_from_spec(module_spec)
    exec(compile(source, "lakehouse_airflow_spec.py", "exec"), module.__dict__)
    spec: dict[str, Any] = module.SPEC
    return spec


def test_the_bundle_holds_the_dags_their_spec_and_the_package(
    moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "airflow"

    assert run_cli(["emr", "airflow", "--env", "dev", "--out", str(out)], monkeypatch) == 0
    assert run_cli(["emr", "airflow", "--env", "dev", "--out", str(out)], monkeypatch) == 0

    (app,) = moto_server.client(moto, "emr-serverless").list_applications()["applications"]
    assert sorted(p.name for p in out.iterdir()) == [
        "lakehouse_dags.zip",
        "plugins.zip",
        "requirements.txt",
    ]
    with zipfile.ZipFile(out / "plugins.zip") as zf:
        plugin_names = zf.namelist()
    assert "lakehouse/emr/airflow_dags.py" in plugin_names
    assert all(n.startswith("lakehouse/") and n.endswith(".py") for n in plugin_names)
    assert (out / "requirements.txt").read_text() == (
        "apache-airflow-providers-amazon[aiobotocore]==9.39.0\n"
    )
    with zipfile.ZipFile(out / "lakehouse_dags.zip") as zf:
        names = zf.namelist()
    # The DAG files at the root (the only modules Airflow parses for DAGs), the package inside.
    assert [n for n in names if "/" not in n] == [
        "lakehouse_daily.py",
        "lakehouse_maintenance.py",
        "lakehouse_airflow_spec.py",
    ]
    assert {"lakehouse/__init__.py", "lakehouse/emr/airflow_dags.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or not n.endswith(".py")]

    spec = _spec_of(out / "lakehouse_dags.zip")
    assert spec["application_id"] == app["id"]
    assert spec["schedule"] == "0 2 * * *"
    assert spec["deadline_minutes"] == 119.0
    assert [s["step"] for s in spec["steps"]] == ["bronze", "silver", "quality", "gold"]
    silver = spec["steps"][1]
    assert silver["run"]["name"] == f"daily-pipeline-silver-{DATE}"
    assert silver["run"]["jobDriver"]["sparkSubmit"]["entryPoint"] == f"{ARTIFACTS}/jobs/silver.py"
    assert silver["run"]["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--env", "dev", "--date", DATE
    ]  # fmt: skip
    assert silver["run"]["executionTimeoutMinutes"] == 120
    assert "retryPolicy" not in silver["run"]  # Airflow retries; EMR's would multiply them
    assert silver["cluster_step"]["Name"] == f"silver {DATE}"
    assert silver["cluster_step"]["HadoopJarStep"]["Args"][-4:] == ["--env", "dev", "--date", DATE]
    assert spec["maintenance"]["schedule"] == "0 4 * * SUN"
    assert spec["maintenance"]["run"]["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--env",
        "dev",
    ]


def test_airflow_dry_run_prints_the_application_lookup_and_sends_nothing(
    moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "airflow"

    assert (
        run_cli(["emr", "airflow", "--env", "dev", "--out", str(out), "--dry-run"], monkeypatch)
        == 0
    )

    lines = capsys.readouterr().out.splitlines()
    requests = [json.loads(line) for line in lines if line and not line.startswith("#")]
    assert [(r["service"], r["operation"]) for r in requests] == [
        ("emr-serverless", "ListApplications"),
        ("emr-serverless", "CreateApplication"),
    ]
    assert lines[-1] == (
        f"# then writes {out}/lakehouse_dags.zip, {out}/plugins.zip and {out}/requirements.txt"
    )
    assert not out.exists()
    assert moto_server.client(moto, "emr-serverless").list_applications()["applications"] == []


def test_the_spec_is_built_from_the_same_requests_as_the_emr_commands() -> None:
    from lakehouse.core.config import load_config

    config = load_config("dev")
    defs = load_definitions("dev")
    assert config.aws is not None
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)

    spec = airflow_spec(config, defs, layout, "app-1")

    for step in spec["steps"]:
        expected = orchestration.step_run_params(
            config, defs, layout, "app-1", step["step"], DATE, step["run"]["clientToken"]
        )
        assert step["run"] == expected


@pytest.mark.parametrize(
    ("expression", "five"),
    [
        ("cron(0 2 * * ? *)", "0 2 * * *"),
        ("cron(0 4 ? * SUN *)", "0 4 * * SUN"),
        ("cron(59 3 * * ? *)", "59 3 * * *"),
        ("cron(15 6 1 * ? *)", "15 6 1 * *"),
    ],
)
def test_an_eventbridge_cron_becomes_the_five_field_cron_airflow_reads(
    expression: str, five: str
) -> None:
    assert orchestration.cron_5_fields(expression) == five


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 day)", "not an EventBridge cron expression: 'rate(1 day)'"),
        ("cron(0 2 * * ?)", "'cron(0 2 * * ?)': a cron expression has 6 fields, found 5"),
        ("cron(0 2 * * ? 2025)", "'cron(0 2 * * ? 2025)': a year other than * has no five-field"),
        ("cron(0 2 L * ? *)", "'cron(0 2 L * ? *)': L, W and # have no five-field cron"),
        ("cron(0 4 ? * 1 *)", "'cron(0 4 ? * 1 *)': name the day of the week (SUN-SAT)"),
    ],
)
def test_a_cron_without_a_five_field_equivalent_is_refused(expression: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        orchestration.cron_5_fields(expression)
    assert str(raised.value).startswith(message)


def test_the_deadline_is_the_monitoring_heartbeat_after_the_daily_fire_time() -> None:
    defs = load_definitions("dev")

    assert orchestration.deadline_after_fire(defs) == timedelta(hours=1, minutes=59)


def test_retries_wait_longer_each_time_up_to_the_cap() -> None:
    assert orchestration.retry_delays_seconds(load_definitions("dev")) == [300.0, 600.0, 1200.0]


def test_an_orchestrated_run_processes_the_day_before_it_fired_or_the_day_asked_for() -> None:
    fired = datetime(2024, 1, 4, 2, 0, tzinfo=UTC)
    late = datetime(2024, 1, 4, 9, 30, tzinfo=UTC)

    assert orchestration.day_of_run(fired, late, None) == date(2024, 1, 3)
    assert orchestration.day_of_run(None, late, None) == date(2024, 1, 3)  # manual, no logical date
    assert orchestration.day_of_run(fired, late, "2023-12-31") == date(2023, 12, 31)
    with pytest.raises(ConfigError, match="date '2024-13-01' is not YYYY-MM-DD"):
        orchestration.day_of_run(fired, late, "2024-13-01")
