"""The one boto3 client factory, and the `Request` every EMR command builds before sending it.

Commands build `Request`s with pure functions; `AwsClients.call` sends one, and `print_dry_run`
prints them instead (`--dry-run`), so what is printed is exactly what would be sent. The factory
honours `aws.endpoint_url` from the configuration for every service (`lakehouse.core.aws`; the
tests point it at a local moto server).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TextIO

import boto3
from botocore.exceptions import ClientError

from lakehouse.core.aws import make_client
from lakehouse.core.config import AwsConfig


@dataclass(frozen=True)
class Request:
    """One AWS API request: service (boto3 name), operation (boto3 method name) and parameters.

    `when` says under which condition a conditional request is sent (for dry runs); a parameter
    value that is only known at run time is shown as `<...>` in a dry run.
    """

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    when: str = ""

    def only_if(self, when: str) -> Request:
        """The same request, marked as sent only under condition `when`."""
        return dataclasses.replace(self, when=when)

    @property
    def api_name(self) -> str:
        """The API's own operation name: `run_job_flow` -> `RunJobFlow`."""
        return "".join(part.capitalize() for part in self.operation.split("_"))

    def to_json(self) -> str:
        record: dict[str, Any] = {
            "service": self.service,
            "operation": self.api_name,
            "params": self.params,
        }
        if self.when:
            record["when"] = self.when
        return json.dumps(record, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return repr(value)


def print_dry_run(requests: Iterable[Request], out: TextIO | None = None) -> None:
    """Print the requests a command would send, one JSON object per line, after a header."""
    stream = out or sys.stdout
    print("# dry run: nothing is sent to AWS; these are the requests, in order", file=stream)
    for request in requests:
        print(request.to_json(), file=stream)


class AwsClients:
    """boto3 clients for one environment's region and endpoint, made once per service."""

    def __init__(self, aws: AwsConfig, session: boto3.Session | None = None) -> None:
        self.aws = aws
        self.session = session or boto3.Session(region_name=aws.region)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """The client for `service` (`emr`, `emr-serverless`, `scheduler`, `s3`, `sns`, ...)."""
        if service not in self._clients:
            self._clients[service] = make_client(service, self.aws, self.session)
        return self._clients[service]

    def call(self, request: Request) -> dict[str, Any]:
        """Send one request and return its response."""
        method = getattr(self.client(request.service), request.operation)
        response: dict[str, Any] = method(**request.params)
        return response


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed request (`ResourceNotFoundException`, ...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))
