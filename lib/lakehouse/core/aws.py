"""The one way a boto3 client is made: for an environment's region and endpoint (`aws` in
conf/<env>.yaml; the tests point `endpoint_url` at a local moto server), with standard retries.
Without an `aws` section (a local environment that still names an `s3://` reports root, say),
boto3's own region and endpoint resolution applies."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from lakehouse.core.config import AwsConfig

RETRIES: Any = {"mode": "standard", "max_attempts": 5}


def make_client(service: str, aws: AwsConfig | None, session: boto3.Session | None = None) -> Any:
    """A boto3 client of `service` (`s3`, `secretsmanager`, `emr`, ...) for `aws`."""
    made: Any = session or boto3.Session(region_name=aws.region if aws else None)
    return made.client(
        service,
        region_name=aws.region if aws else None,
        endpoint_url=aws.endpoint_url if aws else None,
        config=BotoConfig(retries=RETRIES),
    )
