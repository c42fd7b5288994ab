"""The Airflow DAG tests: run in `.venv-airflow` (Airflow 3 and the Amazon provider, beside the
project's PySpark virtualenv; `make test` runs them after the main suite), with a moto server on
127.0.0.1 for every AWS call.

One Airflow home per session (SQLite metadata database, `airflow db migrate`d once), one moto
server, one EMR Serverless application and one rendered DAG bundle: the DAG folder is the bundle
`lakehouse emr airflow` builds (`lakehouse_dags.zip`), so the tests parse what MWAA would. Tests
tell their runs apart by the day they process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HOME = Path(tempfile.mkdtemp(prefix="lakehouse-airflow-"))
DAGS = HOME / "dags"
REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PORT = _free_port()
MOTO_URL = f"http://127.0.0.1:{PORT}"

# Before anything imports Airflow: its home, database, DAG folder, and the AWS connection on moto.
os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "extra": {"endpoint_url": MOTO_URL, "region_name": REGION},
            }
        ),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": MOTO_URL,
    }
)
os.environ.pop("AWS_PROFILE", None)
DAGS.mkdir(parents=True, exist_ok=True)


CLUSTER_DAG = """\"\"\"The daily DAG with target: cluster (tests only).\"\"\"
from lakehouse_airflow_spec import SPEC

from lakehouse.emr.airflow_dags import daily_dag

dag = daily_dag({**SPEC, "target": "cluster", "dag_id": "lakehouse_daily_cluster"})
"""


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto as a real HTTP server on a loopback port, for the whole session (see
    tests/moto_server.py: the same one patch, ListJobRuns of an application with no run)."""
    from moto.emrserverless.models import EMRServerlessBackend
    from moto.server import ThreadedMotoServer

    patch = pytest.MonkeyPatch()
    original = EMRServerlessBackend.list_job_runs

    def list_job_runs(self: EMRServerlessBackend, application_id: str, **kwargs: Any) -> Any:
        if application_id in self.applications and application_id not in self.job_runs:
            return []
        return original(self, application_id, **kwargs)

    patch.setattr(EMRServerlessBackend, "list_job_runs", list_job_runs)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=PORT, verbose=False)
    server.start()
    try:
        yield MOTO_URL
    finally:
        server.stop()
        patch.undo()


@pytest.fixture(scope="session")
def lakehouse_dev(moto_url: str) -> dict[str, Any]:
    """The dev environment on moto: its application and SNS topic, and the DAG bundle rendered for
    it into the DAG folder (as `lakehouse emr airflow --env dev --out DAGS` does)."""
    import boto3

    from lakehouse.core.config import load_config
    from lakehouse.emr.airflow import airflow_spec, write_bundle
    from lakehouse.emr.bundle import bundle_layout
    from lakehouse.emr.definitions import load_definitions
    from lakehouse.emr.serverless import ensure_application

    config = load_config("dev", overrides={"aws": {"endpoint_url": moto_url}})
    defs = load_definitions("dev")
    assert config.aws is not None
    layout = bundle_layout(config.aws.artifacts_uri, defs.bundle, None)
    es = boto3.client("emr-serverless", region_name=REGION, endpoint_url=moto_url)
    app_id = ensure_application(es, config, defs, log=lambda _: None)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=moto_url)
    topic = sns.create_topic(Name=defs.account.sns_topic_arn.rsplit(":", 1)[1])["TopicArn"]
    assert topic == defs.account.sns_topic_arn
    spec = airflow_spec(config, defs, layout, app_id)
    write_bundle(spec, DAGS)
    (DAGS / "requirements.txt").unlink()
    (DAGS / "plugins.zip").unlink()
    # The same DAG on the EMR on EC2 cluster (`airflow.target: cluster` in emr/orchestration.yaml),
    # under another id so both can be tested in one Airflow.
    (DAGS / "lakehouse_daily_cluster.py").write_text(CLUSTER_DAG)
    return {"config": config, "defs": defs, "layout": layout, "app_id": app_id, "spec": spec}


@pytest.fixture(scope="session")
def airflow_db(lakehouse_dev: dict[str, Any]) -> Path:
    """The metadata database, migrated once (`airflow db migrate`, in its own process)."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return HOME / "airflow.db"


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    """The DAG folder parsed as Airflow parses it: the bundle, and the cluster variant."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session")
def bundle_dagbag(airflow_db: Path) -> Any:
    """The bundle alone (`lakehouse_dags.zip`), as an Airflow environment would get it."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / "lakehouse_dags.zip"))


def job_runs(moto_url: str, app_id: str, name: str) -> list[dict[str, Any]]:
    """The application's job runs called `name`, oldest first, each with its details."""
    import boto3

    es = boto3.client("emr-serverless", region_name=REGION, endpoint_url=moto_url)
    runs = [
        es.get_job_run(applicationId=app_id, jobRunId=r["id"])["jobRun"]
        for r in es.list_job_runs(applicationId=app_id)["jobRuns"]
        if r["name"] == name
    ]
    return sorted(runs, key=lambda r: r["createdAt"])


def sns_messages(topic_arn: str) -> list[tuple[str, str]]:
    """(subject, message) of everything published to the topic so far."""
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    backend: Any = get_backend("sns")[DEFAULT_ACCOUNT_ID][REGION]  # type: ignore[call-overload]
    return [(n[2], n[1]) for n in backend.topics[topic_arn].sent_notifications]
