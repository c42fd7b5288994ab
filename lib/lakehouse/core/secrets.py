"""The pseudonymisation key, the project's one secret: from an environment variable (local runs,
tests) or, on AWS, from AWS Secrets Manager, fetched once per process by the driver.

The configuration names where the key is (`secrets` in conf/*.yaml), never its value. The variable
wins when it is set; otherwise `secrets.pii_hmac_key_secret` names the secret (its name or ARN),
read with GetSecretValue in the environment's region with the job's own credentials (the job role
may read exactly that secret: `lakehouse.emr.iam`). The value is never logged, never an argument of
a step or a job run, never Spark configuration, and never a literal of a Spark plan (silver hashes
with `lakehouse.silver.validate.key_pads`), so neither the Spark UI nor the event log shows it.
"""

from __future__ import annotations

import os

from botocore.exceptions import BotoCoreError, ClientError

from lakehouse.core.aws import make_client
from lakehouse.core.config import AwsConfig, Config, ConfigError

# Secrets read by this process, by (region, endpoint, secret id): the driver asks once per run.
_FETCHED: dict[tuple[str, str | None, str], str] = {}


def pii_hmac_key(config: Config) -> bytes:
    """The key silver's HMAC pseudonymises personal fields with (see the module docstring)."""
    secrets = config.secrets
    value = os.environ.get(secrets.pii_hmac_key_env)
    if value:
        return value.encode()
    if not secrets.pii_hmac_key_secret:
        raise ConfigError(
            f"secret missing: environment variable {secrets.pii_hmac_key_env} is not set and "
            f"conf/{config.env}.yaml names no AWS Secrets Manager secret "
            "(secrets.pii_hmac_key_secret) to read the pseudonymisation key from"
        )
    if config.aws is None:
        raise ConfigError(
            f"secret {secrets.pii_hmac_key_secret}: env {config.env} has no aws section, so no "
            "region to read it from AWS Secrets Manager in"
        )
    return fetch_secret(config.aws, secrets.pii_hmac_key_secret).encode()


def fetch_secret(aws: AwsConfig, secret_id: str) -> str:
    """The text of the Secrets Manager secret `secret_id`, read once per process."""
    cache_key = (aws.region, aws.endpoint_url, secret_id)
    if cache_key not in _FETCHED:
        client = make_client("secretsmanager", aws)
        try:
            response = client.get_secret_value(SecretId=secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise ConfigError(
                f"secret {secret_id}: AWS Secrets Manager in {aws.region} answered {code}; it must "
                "exist and the job role must be allowed to read it "
                "(secretsmanager:GetSecretValue, emr/iam/<env>/job-role-policy.json)"
            ) from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"secret {secret_id}: AWS Secrets Manager in {aws.region} could not be asked "
                f"({type(exc).__name__})"
            ) from None
        value = response.get("SecretString")
        if not value:
            raise ConfigError(
                f"secret {secret_id}: holds no text (SecretString); store the key as a text secret"
            )
        _FETCHED[cache_key] = value
    return _FETCHED[cache_key]


def forget_fetched() -> None:
    """Drop the secrets read so far (tests; a process that must read a rotated key)."""
    _FETCHED.clear()
