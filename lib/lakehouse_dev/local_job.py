"""Run the very StartJobRun request EMR Serverless would get with this machine's `spark-submit`,
against a local S3 endpoint (moto in the tests): the bundle's entry point, its arguments, its
`sparkSubmitParameters` and its driver environment, with only what EMR itself provides swapped for
local equivalents, each named here:

- `s3://` is EMRFS on EMR; here it is S3A (`fs.s3.impl`) pointed at the endpoint, so the bundle,
  the landing zone, the lakehouse and the reports keep their `s3://` URIs. spark-submit downloads
  the entry point, `--py-files` and `--jars` from it, as EMR does;
- the Delta jars of the release image (`/usr/share/aws/delta/lib/*.jar`) are the project's `.jars/`;
- the Glue Data Catalog (the Hive client factory EMR ships) is Spark's in-memory catalog;
- the image's Python (`/usr/bin/python3.11`) is this interpreter;
- `spark.emr-serverless.driverEnv.*` (or, for an EMR on EC2 step, `spark.yarn.appMasterEnv.*`)
  settings become the driver process's environment, with the endpoint (`AWS_ENDPOINT_URL`) and
  test credentials for boto3, so the job reads its secret and publishes its outcome to the same
  endpoint;
- for an EMR on EC2 step (`step_command`), the cluster's `spark-defaults` and `delta-defaults`
  configurations, which EMR applies to every spark-submit, and a local driver for YARN's cluster
  deploy mode.

Everything else (the entry point, arguments, `--py-files`, the Deequ jar from the bundle, every
other `--conf`) is passed as the request has it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lakehouse.core.spark import jars_dir

DRIVER_ENV = "spark.emr-serverless.driverEnv."
APP_MASTER_ENV = "spark.yarn.appMasterEnv."
EMR_DELTA_JARS = "/usr/share/aws/delta/lib/"
EMR_ONLY_CONF = ("spark.hadoop.hive.metastore.client.factory.class",)
S3A_CREDENTIALS = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"


def s3a_settings(endpoint: str, region: str, access_key: str, secret_key: str) -> dict[str, str]:
    """S3A's settings (without the `fs.s3a.` prefix) for an S3 endpoint on this machine (moto, or
    a proxy in front of it), for the local job and the tests alike."""
    return {
        "endpoint": endpoint,
        "endpoint.region": region,
        "path.style.access": "true",
        "connection.ssl.enabled": "false",
        "aws.credentials.provider": S3A_CREDENTIALS,
        "access.key": access_key,
        "secret.key": secret_key,
        "change.detection.mode": "none",
        # S3A's default deletes the parent "directory" markers after every file it writes (one
        # more request each, on top of a listing); EMRFS has no such clean-up, and Hadoop 3.4
        # keeps markers by default (HADOOP-18752).
        "directory.marker.retention": "keep",
    }


def local_jar(emr_jar: str, directory: Path) -> str:
    """The project's jar standing in for a jar of the EMR release image."""
    name = emr_jar.rsplit("/", 1)[-1].removesuffix(".jar")  # delta-spark, delta-storage
    found = sorted(directory.glob(f"{name}*.jar"))
    if not found:
        raise FileNotFoundError(f"no {name}*.jar in {directory} for {emr_jar}: run `make jars`")
    return str(found[0])


def spark_submit_command(
    request: Mapping[str, Any],
    endpoint: str,
    *,
    region: str,
    credentials: Mapping[str, str],
    master: str = "local[2]",
    jars: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of a local `spark-submit` running StartJobRun parameters `request`
    against the S3 (and AWS) `endpoint`; see the module docstring for what is swapped."""
    submit = request["jobDriver"]["sparkSubmit"]
    words = [*shlex.split(submit["sparkSubmitParameters"]), submit["entryPoint"]]
    return _command(
        words, submit["entryPointArguments"], {}, endpoint, region, credentials, master, jars
    )


def step_command(
    step: Mapping[str, Any],
    cluster_defaults: Mapping[str, str],
    endpoint: str,
    *,
    region: str,
    credentials: Mapping[str, str],
    master: str = "local[2]",
    jars: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of a local `spark-submit` running an EMR on EC2 step (`step`, as
    AddJobFlowSteps gets it): the cluster's `spark-defaults` (`cluster_defaults`) become `--conf`s,
    its `delta-defaults` the project's Delta jars, `--deploy-mode cluster` (YARN) a local driver,
    `spark.yarn.appMasterEnv.*` the driver's environment; the rest as for a Serverless run."""
    args = list(step["HadoopJarStep"]["Args"])
    if args[:1] != ["spark-submit"]:
        raise ValueError(f"not a spark-submit step: {args[:3]}")
    words = args[1:]
    if words[:2] == ["--deploy-mode", "cluster"]:
        words = words[2:]
    entry = next(
        i for i, w in enumerate(words) if w.endswith(".py") and words[i - 1] != "--py-files"
    )
    options, entry_point, arguments = words[:entry], words[entry], words[entry + 1 :]
    defaults = [w for k, v in sorted(cluster_defaults.items()) for w in ("--conf", f"{k}={v}")]
    delta = ",".join(f"{EMR_DELTA_JARS}{n}.jar" for n in ("delta-spark", "delta-storage"))
    extra = {"--jars": delta}
    return _command(
        [*defaults, *options, entry_point], arguments, extra, endpoint, region, credentials,
        master, jars,
    )  # fmt: skip


def _command(
    words: list[str],
    arguments: list[str],
    extra_jars: Mapping[str, str],
    endpoint: str,
    region: str,
    credentials: Mapping[str, str],
    master: str,
    jars: Path | None,
) -> tuple[list[str], dict[str, str]]:
    directory = jars or jars_dir()
    entry_point, words = words[-1], words[:-1]
    options: list[str] = []
    env: dict[str, str] = {}
    i = 0
    while i < len(words):
        flag, value = words[i], words[i + 1]
        i += 2
        if flag == "--jars":
            if extra_jars.get("--jars"):
                value = f"{value},{extra_jars['--jars']}"
            listed = [
                local_jar(j, directory) if j.startswith(EMR_DELTA_JARS) else j
                for j in value.split(",")
            ]
            options += [flag, ",".join(listed)]
        elif flag == "--conf":
            key, _, setting = value.partition("=")
            if key.startswith(DRIVER_ENV):
                env[key.removeprefix(DRIVER_ENV)] = setting
            elif key.startswith(APP_MASTER_ENV):
                env[key.removeprefix(APP_MASTER_ENV)] = setting
            elif key == "spark.sql.catalogImplementation":
                options += [flag, f"{key}=in-memory"]
            elif key == "spark.executorEnv.PYSPARK_PYTHON":
                options += [flag, f"{key}={sys.executable}"]
            elif key not in EMR_ONLY_CONF:
                options += [flag, value]
        else:
            options += [flag, value]
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        env[name] = sys.executable
    s3a = {"fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"} | {
        f"fs.s3a.{key}": value
        for key, value in s3a_settings(
            endpoint,
            region,
            credentials["AWS_ACCESS_KEY_ID"],
            credentials["AWS_SECRET_ACCESS_KEY"],
        ).items()
    }
    for key, value in s3a.items():
        options += ["--conf", f"spark.hadoop.{key}={value}"]
    # spark-submit itself downloads the s3:// entry point, py-files and jars: S3A on its path.
    s3a_jars = [local_jar(n, directory) for n in ("hadoop-aws", "aws-java-sdk-bundle")]
    options += ["--driver-class-path", os.pathsep.join(s3a_jars)]
    spark_submit = str(Path(sys.executable).parent / "spark-submit")
    argv = [spark_submit, "--master", master, *options, entry_point, *arguments]
    environment = {
        **env,
        **credentials,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
    }
    return argv, environment
