"""The Airflow (MWAA) DAGs' specification, rendered from the definitions every `emr` command reads,
and the DAG bundle `lakehouse emr airflow` builds for an Airflow environment's DAG folder.

The DAG files (`orchestration/airflow/lakehouse_daily.py`, `lakehouse_maintenance.py`) are thin:
they hand `SPEC` (from the generated module `lakehouse_airflow_spec.py` beside them) to
`lakehouse.emr.airflow_dags`. The specification holds everything the DAGs need, resolved at render
time, so parsing a DAG file reads no YAML and calls no AWS API (MWAA parses DAG files every few
seconds): the application id, the StartJobRun parameters of every step (those of
`lakehouse.emr.orchestration.step_run_params`, with the processing date as the Jinja expression
`DATE`), the cluster steps (`lakehouse.emr.cluster.step_params`), the schedules of
`emr/schedule.yaml` as five-field crons, retries, timeouts, the deadline and the SNS topic.

The bundle (`lakehouse_dags.zip`, one of Airflow's "packaged DAGs") holds the two DAG files at its
root, the spec module and the `lakehouse` package (pure Python; the DAGs import only its `emr`
modules, which need boto3 and PyYAML, both part of Airflow), so the Airflow environment needs no
extra Python requirement beyond the Amazon provider (`requirements.txt` beside it, pinned like
`orchestration/airflow/requirements.txt`). `plugins.zip` holds the package again for MWAA's
plugins, which every Airflow component has on its path: the deadline alert's callback runs on a
worker by import path, without the DAG file.

This module imports nothing of Airflow: the `lakehouse` command renders and packages the DAGs in
the project's own virtualenv.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from lakehouse.core.config import PROJECT_ROOT, Config
from lakehouse.emr import orchestration
from lakehouse.emr.bundle import BundleLayout
from lakehouse.emr.cluster import step_params
from lakehouse.emr.definitions import EmrDefinitions

DAG_FOLDER = PROJECT_ROOT / "orchestration" / "airflow"
DAG_FILES = ("lakehouse_daily.py", "lakehouse_maintenance.py")
SPEC_MODULE = "lakehouse_airflow_spec"
BUNDLE_NAME = "lakehouse_dags.zip"
PLUGINS_NAME = "plugins.zip"
# The processing date inside templated operator fields: `lakehouse_date` is a user-defined macro of
# the DAG (`lakehouse.emr.airflow_dags.lakehouse_date`).
DATE = "{{ lakehouse_date(dag_run) }}"
# Filled in by the operator at run time, from the DAG run and the task (never the try).
TOKEN = "<derived from the DAG run and the task>"
# Airflow and its Amazon provider, as pinned for the tests (orchestration/airflow/requirements.txt).
REQUIREMENTS = DAG_FOLDER / "requirements.txt"


def airflow_spec(
    config: Config, defs: EmrDefinitions, layout: BundleLayout, application_id: str
) -> dict[str, Any]:
    """Everything the two DAGs need, as JSON-able data (see the module docstring)."""
    o = defs.orchestration
    a = o.airflow
    steps = []
    for step in orchestration.pipeline_steps(defs):
        run = orchestration.step_run_params(config, defs, layout, application_id, step, DATE, TOKEN)
        # Named as `lakehouse emr steps` names them (`bronze 2024-01-03`).
        cluster_step = step_params(
            defs, layout, f"{step} {DATE}", step, ["--env", config.env, "--date", DATE]
        )
        steps.append({"step": step, "run": run, "cluster_step": cluster_step})
    maintenance = None
    if defs.schedule.maintenance is not None:
        maintenance = {
            "schedule": orchestration.cron_5_fields(defs.schedule.maintenance.expression),
            "run": orchestration.maintenance_run_params(
                config,
                defs,
                layout,
                application_id,
                name="maintenance-{{ ds }}",
                token=TOKEN,
            ),
        }
    return {
        "env": config.env,
        "dag_id": a.dag_id,
        "maintenance_dag_id": a.maintenance_dag_id,
        "aws_conn_id": a.aws_conn_id,
        "target": a.target,
        "deferrable": a.deferrable,
        "catchup": a.catchup,
        "max_active_runs": a.max_active_runs,
        "start_date": a.start_date,
        "schedule": orchestration.cron_5_fields(defs.schedule.expression),
        "timezone": defs.schedule.timezone,
        "deadline_minutes": orchestration.deadline_after_fire(defs).total_seconds() / 60,
        "task_timeout_minutes": o.task_timeout_minutes,
        "retries": o.retries,
        "retry_delay_seconds": o.retry_delay_seconds,
        "retry_backoff_rate": o.retry_backoff_rate,
        "max_retry_delay_seconds": o.max_retry_delay_seconds,
        "sns_topic_arn": defs.account.sns_topic_arn,
        "metrics_namespace": defs.account.metrics_namespace,
        "application_id": application_id,
        "cluster_name": defs.cluster.name,
        "steps": steps,
        "maintenance": maintenance,
    }


def spec_module_source(spec: dict[str, Any]) -> str:
    """The generated `lakehouse_airflow_spec.py`: `SPEC`, the JSON of `airflow_spec`."""
    text = json.dumps(spec, indent=2, sort_keys=True)
    return (
        '"""Generated by `lakehouse emr airflow`: the DAGs\' specification (do not edit; render '
        'again)."""\n\nimport json\n\nSPEC = json.loads(\n    r"""\n' + text + '\n"""\n)\n'
    )


def write_dag_folder(spec: dict[str, Any], folder: Path) -> list[Path]:
    """The DAG files and the spec module, unpacked into `folder` (a local DAG folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DAG_FILES:
        target = folder / name
        target.write_text((DAG_FOLDER / name).read_text())
        written.append(target)
    spec_path = folder / f"{SPEC_MODULE}.py"
    spec_path.write_text(spec_module_source(spec))
    return [*written, spec_path]


def write_bundle(spec: dict[str, Any], out: Path) -> list[Path]:
    """`<out>/lakehouse_dags.zip` (DAG files, spec module, the `lakehouse` package),
    `<out>/plugins.zip` (the package alone, for MWAA's plugins) and `<out>/requirements.txt`
    (the Amazon provider line of the pinned requirements)."""
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / BUNDLE_NAME
    package = PROJECT_ROOT / "lib" / "lakehouse"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in DAG_FILES:
            zf.write(DAG_FOLDER / name, name)
        zf.writestr(f"{SPEC_MODULE}.py", spec_module_source(spec))
        for path in sorted(package.rglob("*.py")):
            zf.write(path, str(Path("lakehouse") / path.relative_to(package)))
    # MWAA puts plugins.zip on every component's path (scheduler, workers, triggerer): the
    # deadline alert's callback is imported by path on a worker that never parsed the DAG file.
    plugins = out / PLUGINS_NAME
    with zipfile.ZipFile(plugins, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*.py")):
            zf.write(path, str(Path("lakehouse") / path.relative_to(package)))
    requirements = out / "requirements.txt"
    provider = [
        line
        for line in REQUIREMENTS.read_text().splitlines()
        if line.startswith("apache-airflow-providers-amazon")
    ]
    requirements.write_text("\n".join(provider) + "\n")
    return [bundle, plugins, requirements]
