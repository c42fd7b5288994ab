"""The pseudonymisation key: the environment variable locally, AWS Secrets Manager on AWS (moto as
a real local HTTP server), read once per process, never echoed in an error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import moto_server
from lakehouse.core.config import Config, ConfigError, load_config
from lakehouse.core.secrets import forget_fetched, pii_hmac_key

moto_url = moto_server.moto_url
moto = moto_server.moto
dev_config = moto_server.dev_config

KEY_ENV = "LAKEHOUSE_PII_HMAC_KEY"
SECRET = "lakehouse/dev/pii-hmac-key"
VALUE = "dev-key-kept-in-secrets-manager"


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test is a new driver: nothing fetched yet, and no key in the environment."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    forget_fetched()
    yield
    forget_fetched()


def test_dev_names_its_secret_and_local_names_none() -> None:
    assert load_config("dev").secrets.pii_hmac_key_secret == SECRET
    assert load_config("prod").secrets.pii_hmac_key_secret == "lakehouse/prod/pii-hmac-key"
    assert load_config("local").secrets.pii_hmac_key_secret is None


def test_locally_the_key_is_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "s3cret")

    assert pii_hmac_key(load_config("local")) == b"s3cret"


def test_without_variable_or_secret_the_error_names_both() -> None:
    with pytest.raises(ConfigError) as err:
        pii_hmac_key(load_config("local"))

    assert str(err.value) == (
        f"secret missing: environment variable {KEY_ENV} is not set and conf/local.yaml names no "
        "AWS Secrets Manager secret (secrets.pii_hmac_key_secret) to read the pseudonymisation "
        "key from"
    )


def test_on_aws_the_key_is_read_from_secrets_manager_once(moto: str, dev_config: Config) -> None:
    secrets = moto_server.client(moto, "secretsmanager")
    secrets.create_secret(Name=SECRET, SecretString=VALUE)

    first = pii_hmac_key(dev_config)
    secrets.put_secret_value(SecretId=SECRET, SecretString="rotated-after-the-run-started")
    second = pii_hmac_key(dev_config)

    # One run hashes with one key, whatever happens to the secret while it runs.
    assert first == second == VALUE.encode()


def test_the_variable_wins_over_the_secret(
    moto: str, dev_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_server.client(moto, "secretsmanager").create_secret(Name=SECRET, SecretString=VALUE)
    monkeypatch.setenv(KEY_ENV, "from-the-environment")

    assert pii_hmac_key(dev_config) == b"from-the-environment"


def test_a_missing_secret_is_a_clear_error(moto: str, dev_config: Config) -> None:
    with pytest.raises(ConfigError) as err:
        pii_hmac_key(dev_config)

    assert str(err.value) == (
        f"secret {SECRET}: AWS Secrets Manager in eu-west-1 answered ResourceNotFoundException; "
        "it must exist and the job role must be allowed to read it "
        "(secretsmanager:GetSecretValue, emr/iam/<env>/job-role-policy.json)"
    )


def test_a_binary_secret_is_refused_without_showing_it(moto: str, dev_config: Config) -> None:
    moto_server.client(moto, "secretsmanager").create_secret(
        Name=SECRET, SecretBinary=VALUE.encode()
    )

    with pytest.raises(ConfigError) as err:
        pii_hmac_key(dev_config)

    assert str(err.value) == (
        f"secret {SECRET}: holds no text (SecretString); store the key as a text secret"
    )
    assert VALUE not in str(err.value)
