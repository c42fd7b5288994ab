"""A moto server on 127.0.0.1 for the EMR tests: one per test session, wiped before each test.

Every AWS call the EMR tests make goes over real HTTP to this server. The `moto` fixture also sets
fake credentials and `AWS_ENDPOINT_URL` for the test, so even a client built without an explicit
endpoint (the `lakehouse` command's, in CLI tests) can only reach the loopback server, never AWS.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID as DEFAULT_ACCOUNT
from moto.emrserverless.models import EMRServerlessBackend
from moto.server import ThreadedMotoServer

from lakehouse import cli
from lakehouse.core.config import Config, load_config
from lakehouse.emr.clients import AwsClients
from lakehouse_dev.local_job import s3a_settings

REGION = "eu-west-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """Start moto as a real HTTP server on a free loopback port for the whole session. The
    environment (fake credentials, endpoint) is set per test by `moto`, so other tests of the
    session never see it."""
    patch = pytest.MonkeyPatch()
    _list_job_runs_of_new_applications(patch)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.stop()
        patch.undo()


def _list_job_runs_of_new_applications(patch: pytest.MonkeyPatch) -> None:
    """moto answers ListJobRuns of an application that has no run yet with ResourceNotFound, where
    AWS answers an empty list; make moto answer as AWS does (the only patch of moto here)."""
    original = EMRServerlessBackend.list_job_runs

    def list_job_runs(self: EMRServerlessBackend, application_id: str, **kwargs: Any) -> Any:
        if application_id in self.applications and application_id not in self.job_runs:
            return []
        return original(self, application_id, **kwargs)

    patch.setattr(EMRServerlessBackend, "list_job_runs", list_job_runs)


@pytest.fixture
def moto(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server URL, with every resource from earlier tests removed; fake credentials and
    `AWS_ENDPOINT_URL` point every boto3 client of the test at it."""
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return moto_url


@pytest.fixture
def dev_config(moto: str) -> Config:
    """The dev configuration, pointed at the moto server."""
    return load_config("dev", overrides={"aws": {"endpoint_url": moto}})


def point_s3a_at(spark: Any, bucket: str, endpoint: str, **settings: str) -> None:
    """Send S3A's requests for `bucket` to `endpoint` (the moto server, or a proxy in front of
    it) with moto's test credentials. Per-bucket settings (`fs.s3a.bucket.<bucket>.*`), so
    nothing else of the shared session changes; `settings`: more of them (`retry.limit`, ...)."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in {
        **s3a_settings(endpoint, REGION, "testing", "testing"),
        **settings,
    }.items():
        hconf.set(f"fs.s3a.bucket.{bucket}.{key}", value)
    hconf.set("fs.s3a.impl.disable.cache", "true")


def client(url: str, service: str) -> Any:
    """A boto3 client on the moto server, for the tests' own set-up and checks."""
    if not _SESSION:
        _SESSION.append(boto3.Session(region_name=REGION))
    session: Any = _SESSION[0]
    return session.client(service, region_name=REGION, endpoint_url=url)


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def capture(
    boto_client: Any, operation: str, answer: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Record the JSON body of every `operation` request the client sends. The request still goes
    to moto, unless `answer` is given: then the hook answers it with that JSON body instead (for an
    operation moto does not implement). Used where moto accepts a parameter but does not keep it,
    so the test checks what was sent instead of what moto stored."""
    sent: list[dict[str, Any]] = []
    service = boto_client.meta.service_model.service_id.hyphenize()

    def record(request: Any, **_: Any) -> AWSResponse | None:
        sent.append(json.loads(request.body or b"{}"))
        if answer is None:
            return None
        headers = HTTPHeaders()
        return AWSResponse(request.url, 200, headers, _Body(json.dumps(answer).encode()))

    boto_client.meta.events.register(f"before-send.{service}.{operation}", record)
    return sent


def backend(service: str) -> Any:
    """moto's in-memory backend of `service` for the default account. The server runs in this
    process (a thread), so a test can set states moto never moves by itself; each test that does
    so says why. moto's EMR takes the region from the host name, which for 127.0.0.1 is its
    default (us-east-1); other services take it from the request's signature."""
    region = "us-east-1" if service == "emr" else REGION
    return get_backend(service)[DEFAULT_ACCOUNT][region]  # type: ignore[call-overload]


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the real `lakehouse` command (every command group registered, as a user has it)."""
    return cli.main(argv)


_SESSION: list[boto3.Session] = []


def aws_clients(config: Config) -> AwsClients:
    """The code's own client factory for `config`, on one boto3 session shared by the tests (a
    session caches the service models, which makes clients much quicker to build)."""
    if not _SESSION:
        _SESSION.append(boto3.Session(region_name=REGION))
    assert config.aws is not None
    return AwsClients(config.aws, session=_SESSION[0])
