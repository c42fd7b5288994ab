"""The one way to make a Spark session, for jobs, tests and notebooks alike.

- `local` mode: `local[N]` master, Delta and Deequ from the jars `make jars` resolved into `.jars/`
  (see `jvm/pom.xml`), UI off and small shuffle and Delta snapshot partitions so tests stay fast.
- `emr` mode: no master and nothing downloaded; the cluster (EMR on EC2 or EMR Serverless) provides
  Spark, Delta (`delta.enabled` / `--conf spark.jars=...delta...`), Deequ (`--jars`) and the Glue
  catalog through its own configuration.

pydeequ reads `SPARK_VERSION` when it is imported; `get_spark` sets it from the running Spark
before anything imports pydeequ.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession

from lakehouse.core.config import PROJECT_ROOT, SparkConfig

# Where a batch the engines read several times is kept: on local disk, never in the heap. The
# heap also holds what Spark's memory manager does not see (Parquet's row-group buffers, rows
# pickled to and from Python), and cached blocks held there are not given up for it: bronze's
# parsed batch of a 100k-order day and silver's batch of a 1M-order day's 9M clicks (kept in
# memory) ran a 2g driver out of heap inside Parquet's reader. On disk the cost is a write and a
# read of the day's rows, whatever their size (docs/DESIGN.md, "Bounded memory").
BATCH_STORAGE = StorageLevel.DISK_ONLY

JARS_DIR_ENV = "LAKEHOUSE_JARS_DIR"
# Spark settings (a JSON object of strings) that win over every configuration's, for each session
# this process and its children make: a setting tried once without editing conf/ (a session
# already running takes the SQL ones at once).
SETTINGS_ENV = "LAKEHOUSE_SPARK_SETTINGS"
REQUIRED_JARS = ("delta-spark_2.12-", "delta-storage-", "deequ-")
OPTIONAL_JARS = (
    "hadoop-aws-",
    "aws-java-sdk-bundle-",
    # Structured Streaming from Kafka (`lakehouse stream`).
    "spark-sql-kafka-0-10_2.12-",
    "spark-token-provider-kafka-0-10_2.12-",
    "kafka-clients-",
    "commons-pool2-",
)

DELTA_SETTINGS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_DEFAULTS = {
    # Local mode talks to itself only: bind the driver to loopback, whatever the host name says.
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
    # A JVM out of heap exits at once (status 3, "Terminating due to java.lang.OutOfMemoryError")
    # instead of living on half-broken while the Python side waits for an answer: a run with a
    # 127 MB file and the 2g driver hung for minutes with no CPU. The CLI then says the driver
    # ended (`lakehouse.cli.main`), so a scheduler's retry or alarm can act.
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC -XX:+ExitOnOutOfMemoryError",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC -XX:+ExitOnOutOfMemoryError",
    "spark.sql.adaptive.enabled": "true",
    "spark.databricks.delta.retentionDurationCheck.enabled": "true",
}


class SparkSetupError(RuntimeError):
    """The local session cannot start: the message says what to install or run."""


def jars_dir() -> Path:
    """The folder holding the resolved JVM libraries (`.jars/` in the project unless overridden)."""
    return Path(os.environ.get(JARS_DIR_ENV, PROJECT_ROOT / ".jars"))


def local_jars(directory: Path | None = None) -> list[Path]:
    """The jars a local session loads; fails with instructions when a required one is missing."""
    directory = directory or jars_dir()
    jars = sorted(directory.glob("*.jar")) if directory.is_dir() else []
    names = [j.name for j in jars]
    missing = [prefix for prefix in REQUIRED_JARS if not any(n.startswith(prefix) for n in names)]
    if missing:
        raise SparkSetupError(
            f"missing JVM libraries in {directory}: {', '.join(p.rstrip('-_') for p in missing)}. "
            "Run `make jars` (needs Java 17 and Maven, and network to Maven Central once)."
        )
    return [j for j in jars if j.name.startswith(REQUIRED_JARS + OPTIONAL_JARS)]


def settings_from_env() -> dict[str, str]:
    """The settings of `$LAKEHOUSE_SPARK_SETTINGS` (none when unset); a clear error when it is not
    a JSON object of strings."""
    text = os.environ.get(SETTINGS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SparkSetupError(f"{SETTINGS_ENV} is not JSON: {err}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SparkSetupError(
            f"{SETTINGS_ENV} must be a JSON object of strings, "
            'like {"spark.sql.shuffle.partitions": "1"}'
        )
    return value


def get_spark(
    config: SparkConfig,
    app_name: str = "lakehouse",
    extra: dict[str, str] | None = None,
) -> SparkSession:
    """Build (or return the already running) session for `config`.

    `extra` settings win over the configuration's; they are how a caller adds, say, the S3A endpoint
    of a test server. `$LAKEHOUSE_SPARK_SETTINGS` wins over both.
    """
    builder = SparkSession.builder.appName(app_name)
    settings: dict[str, str] = {}
    if config.mode == "local":
        settings.update(LOCAL_DEFAULTS)
        settings.update(DELTA_SETTINGS)
        settings["spark.jars"] = ",".join(str(j) for j in local_jars())
        settings["spark.driver.memory"] = config.driver_memory
        # Python workers must run the driver's interpreter (the venv), not whatever is on PATH.
        settings["spark.pyspark.python"] = sys.executable
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(config.master)
    settings["spark.sql.shuffle.partitions"] = str(config.shuffle_partitions)
    settings.update(config.settings)
    settings.update(extra or {})
    settings.update(settings_from_env())
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # pydeequ picks its Deequ coordinate from SPARK_VERSION at import time.
    os.environ["SPARK_VERSION"] = spark.version
    return spark


@contextmanager
def session_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """`settings` for the session while inside; each key's previous value (or its absence) is
    restored afterwards."""
    previous: dict[str, str | None] = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def clear_caches(spark: SparkSession) -> None:
    """Drop what a long-lived session keeps of tables it has read: cached DataFrames and Delta's
    log of every table (a snapshot per table path, never evicted by age). A process that goes
    through many lakehouses (the test session, the crash suite's checker) calls it between them;
    a job's session never needs to."""
    spark.catalog.clearCache()
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


def stop_spark(spark: SparkSession) -> None:
    """Stop the session and the Py4J callback server pydeequ or a streaming query's
    `foreachBatch` may have started, so the process can exit."""
    gateway = getattr(spark.sparkContext, "_gateway", None)
    if gateway is not None:
        _end_callback_connections(gateway)
        gateway.shutdown_callback_server()
    spark.stop()


def _end_callback_connections(gateway: Any) -> None:
    """Shut the sockets of the callback server's open connections down first: Py4J's shutdown
    closes a connection's reader before its socket, and a thread blocked reading that socket
    (the JVM's connection for `foreachBatch`) holds the reader's lock, so the close waited for
    a command that never came and `lakehouse stream` never exited. Shut down, the blocked read
    ends and the thread lets go."""
    server = getattr(gateway, "_callback_server", None)
    for connection in list(getattr(server, "connections", None) or ()):
        sock = getattr(connection, "socket", None)
        if sock is None:
            continue
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
