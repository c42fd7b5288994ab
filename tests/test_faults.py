"""The fault-injecting S3 proxy (lakehouse_dev/faults.py) in front of the moto server: at rate 0 it
is invisible; each fault reaches the client as S3's would (503 SlowDown, 500 InternalError, a
connection closed with no answer) and stores nothing; under a seeded rate, a client with retries
gets every object through; the same seed makes the same decisions; healed, it lets all through."""

from __future__ import annotations

import http.client
import io
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from botocore.retries import standard

import moto_server
from lakehouse_dev.faults import FaultProxy

moto = moto_server.moto
moto_url = moto_server.moto_url

BUCKET = "faults"
_SESSION: list[boto3.Session] = []


def _s3(url: str, attempts: int = 1) -> Any:
    """An S3 client on `url` as the lakehouse's are set up for S3A: path-style, plain http, the
    SDK's standard retries, `attempts` in all (1: no retry). botocore's `max_attempts` counts the
    retries only (1 makes 2 attempts); `total_max_attempts` counts them all."""
    if not _SESSION:
        _SESSION.append(boto3.Session(region_name=moto_server.REGION))
    config = Config(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=10,
    )
    return _SESSION[0].client("s3", endpoint_url=url, config=config)


@pytest.fixture
def direct(moto: str) -> Any:
    """A client straight to moto (no proxy), with the bucket created: the tests' own checks."""
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": moto_server.REGION}
    )
    return s3


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK retries at once (it waits up to a second or more before retrying a SlowDown)."""
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def _keys(s3: Any) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_at_rate_0_every_request_goes_through_unchanged(moto: str, direct: Any) -> None:
    objects = {"empty": b"", "small": b"a few bytes", "mib": bytes(range(256)) * 4096 + b"!"}
    with FaultProxy(moto, rate=0.0) as proxy:
        s3 = _s3(proxy.url)
        for key, data in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=io.BytesIO(data))
        read = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in objects}
        size = s3.head_object(Bucket=BUCKET, Key="mib")["ContentLength"]
        listed = _keys(s3)
        s3.delete_object(Bucket=BUCKET, Key="empty")  # 204, no body: the connection goes on
        after_delete = _keys(s3)

    assert read == objects
    assert size == len(objects["mib"]) == 2**20 + 1
    assert listed == sorted(objects)
    assert after_delete == ["mib", "small"]
    assert proxy.faults == Counter()
    assert (proxy.requests, proxy.forwarded, proxy.upstream_errors) == (
        3 + 3 + 1 + 1 + 1 + 1,
        10,
        0,
    )


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("503", 503, "SlowDown"), ("500", 500, "InternalError")]
)
def test_an_error_fault_answers_as_s3_does_and_stores_nothing(
    moto: str, direct: Any, kind: str, status: int, code: str
) -> None:
    with FaultProxy(moto, rate=1.0, kinds=(kind,)) as proxy:
        with pytest.raises(ClientError) as raised:
            _s3(proxy.url).put_object(Bucket=BUCKET, Key="k", Body=b"data")

    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (code, status)
    assert error["ResponseMetadata"]["RequestId"] == "fault-1"
    assert _keys(direct) == []
    assert proxy.summary()["faults"] == {kind: 1}
    assert (proxy.requests, proxy.forwarded) == (1, 0)


def test_an_error_fault_on_head_has_no_body_and_the_connection_goes_on(
    moto: str, direct: Any
) -> None:
    direct.put_object(Bucket=BUCKET, Key="k", Body=b"data", ACL="public-read")
    with FaultProxy(moto, rate=1.0, kinds=("503",)) as proxy:
        # Raw HTTP on one connection, every byte kept: urllib3 would quietly open a new connection
        # on finding bytes left unread; the SDK v1's client would read them as its next answer.
        # (moto does not check signatures: unsigned requests on a public object are enough.)
        with socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))) as sock:
            answers = sock.makefile("rb")
            sock.sendall(f"HEAD /{BUCKET}/k HTTP/1.1\r\nHost: s3\r\n\r\n".encode())
            failed = _head_lines(answers)
            proxy.heal()
            sock.sendall(f"GET /{BUCKET}/k HTTP/1.1\r\nHost: s3\r\n\r\n".encode())
            passed = _head_lines(answers)
            data = answers.read(4)

    assert failed[0] == "HTTP/1.1 503 Service Unavailable"
    assert "Content-Type: application/xml" in failed
    assert (passed[0], data) == ("HTTP/1.1 200 OK", b"data")


def _head_lines(answers: Any) -> list[str]:
    """The status line and headers of the next answer on the connection."""
    lines = []
    while (line := answers.readline().decode("latin-1").rstrip("\r\n")) != "":
        lines.append(line)
    return lines


def test_a_dropped_connection_reaches_the_client_as_a_connection_error(
    moto: str, direct: Any
) -> None:
    with FaultProxy(moto, rate=1.0, kinds=("drop",)) as proxy:
        with pytest.raises(ConnectionClosedError):
            _s3(proxy.url).put_object(Bucket=BUCKET, Key="k", Body=b"data")

    assert _keys(direct) == []
    assert (proxy.faults, proxy.requests, proxy.forwarded) == (Counter({"drop": 1}), 1, 0)


@pytest.mark.usefixtures("no_backoff")
def test_under_a_seeded_rate_a_client_with_retries_gets_every_object_through(
    moto: str, direct: Any
) -> None:
    objects = {f"part-{n:02}": f"object {n}".encode() * (n + 1) for n in range(40)}
    with FaultProxy(moto, rate=0.3, seed=7, slow_seconds=0.05) as proxy:
        s3 = _s3(proxy.url, attempts=10)
        for key, data in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    stored = {key: direct.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in objects}
    assert stored == objects
    assert set(proxy.faults) == {"503", "500", "drop", "slow"}
    # Every answering fault or drop costs one retry; a slow request is forwarded late, once.
    retried = proxy.faults["503"] + proxy.faults["500"] + proxy.faults["drop"]
    assert (proxy.requests, proxy.forwarded) == (len(objects) + retried, len(objects))


def test_the_same_seed_makes_the_same_decisions_and_another_seed_others() -> None:
    methods = ["PUT", "GET", "HEAD", "DELETE", "POST"] * 40

    def decisions(seed: int) -> list[str | None]:
        proxy = FaultProxy("http://127.0.0.1:9", rate=0.3, seed=seed)  # never started
        return [proxy.decide(method) for method in methods]

    first = decisions(seed=3)
    assert decisions(seed=3) == first
    assert decisions(seed=4) != first
    assert set(first) == {None, "503", "500", "drop", "slow"}


def test_the_same_seed_meets_the_same_faults_over_http(moto: str, direct: Any) -> None:
    settings: dict[str, Any] = {"rate": 0.5, "seed": 1, "kinds": ("503", "500", "drop")}

    def outcomes() -> tuple[list[str], dict[str, Any]]:
        seen = []
        with FaultProxy(moto, **settings) as proxy:
            s3 = _s3(proxy.url)
            for n in range(12):
                try:
                    s3.put_object(Bucket=BUCKET, Key=f"k{n}", Body=b"data")
                    seen.append("stored")
                except ClientError as error:
                    seen.append(error.response["Error"]["Code"])
                except ConnectionClosedError:
                    seen.append("dropped")
        return seen, proxy.summary()

    first, second = outcomes(), outcomes()
    assert first == second
    # And they are the decisions the seed makes, request after request.
    decider = FaultProxy("http://127.0.0.1:9", **settings)
    as_seen = {None: "stored", "503": "SlowDown", "500": "InternalError", "drop": "dropped"}
    assert first[0] == [as_seen[decider.decide("PUT")] for _ in range(12)]
    assert set(first[0]) == {"stored", "SlowDown", "InternalError", "dropped"}


def test_faults_only_on_the_given_methods(moto: str, direct: Any) -> None:
    direct.put_object(Bucket=BUCKET, Key="k", Body=b"before")
    with FaultProxy(moto, rate=1.0, kinds=("503",), only_methods=("PUT",)) as proxy:
        s3 = _s3(proxy.url)
        assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"before"
        with pytest.raises(ClientError, match="SlowDown"):
            s3.put_object(Bucket=BUCKET, Key="k", Body=b"after")

    assert direct.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"before"
    assert (proxy.faults, proxy.requests, proxy.forwarded) == (Counter({"503": 1}), 2, 1)


def test_once_healed_every_request_passes_on_the_same_client(moto: str, direct: Any) -> None:
    with FaultProxy(moto, kinds=("503",)) as proxy:
        s3 = _s3(proxy.url)
        proxy.fail_all()
        with pytest.raises(ClientError, match="SlowDown"):
            s3.put_object(Bucket=BUCKET, Key="k", Body=b"data")
        proxy.heal()
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"data")
        proxy.rate = 1.0
        with pytest.raises(ClientError, match="SlowDown"):
            s3.put_object(Bucket=BUCKET, Key="k2", Body=b"data")
        proxy.rate = 0
        s3.put_object(Bucket=BUCKET, Key="k2", Body=b"data")

    assert _keys(direct) == ["k", "k2"]
    assert (proxy.faults, proxy.forwarded) == (Counter({"503": 2}), 2)


def test_a_chunked_request_body_is_forwarded_de_chunked(moto: str, direct: Any) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first chunk, "
        yield b"second chunk"

    with FaultProxy(moto) as proxy:
        connection = http.client.HTTPConnection(proxy.url.removeprefix("http://"), timeout=10)
        # moto does not check signatures: an unsigned request is enough here.
        connection.request("PUT", f"/{BUCKET}/chunked", body=chunks(), encode_chunked=True)
        response = connection.getresponse()
        response.read()
        connection.close()

    assert response.status == 200
    assert direct.get_object(Bucket=BUCKET, Key="chunked")["Body"].read() == (
        b"first chunk, second chunk"
    )


def test_once_stopped_it_answers_nothing_even_on_a_kept_alive_connection(
    moto: str, direct: Any
) -> None:
    proxy = FaultProxy(moto).start()
    s3 = _s3(proxy.url)
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"data")  # opens the connection kept alive
    proxy.stop()

    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        s3.put_object(Bucket=BUCKET, Key="k2", Body=b"data")
    assert _keys(direct) == ["k"]


def test_it_refuses_a_rate_that_is_no_probability_and_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultProxy("http://127.0.0.1:9", rate=1.5)
    with pytest.raises(ValueError, match="kinds"):
        FaultProxy("http://127.0.0.1:9", kinds=("404",))
    with pytest.raises(ValueError, match="plain http"):
        FaultProxy("https://s3.amazonaws.com")
