"""A real Kafka broker on 127.0.0.1 for the streaming tests and benchmark.

Kafka 4 in KRaft mode (one process that is both controller and broker, no ZooKeeper), run from
its Maven Central jars (`jvm/kafka/pom.xml`, resolved into `.jars-kafka/` by `make kafka-jars`)
in a JVM of its own: its Scala 2.13 never meets Spark's classpath. `Broker` formats a fresh log
folder, starts the server on two free loopback ports, waits until it answers, and stops it
(with its log folder) on exit. `publish` sends messages with kafka-python, synchronously.

    with Broker(tmp_path) as broker:
        broker.create_topic("clickstream", partitions=2)
        publish(broker.bootstrap, "clickstream", [b'{"event_id": "e1", ...}'])
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from lakehouse.core.spark import PROJECT_ROOT

KAFKA_JARS_ENV = "LAKEHOUSE_KAFKA_JARS_DIR"
START_TIMEOUT_S = 60.0


class KafkaMissing(RuntimeError):
    """The broker's jars are not resolved; the message says how to get them."""


def kafka_jars_dir() -> Path:
    return Path(os.environ.get(KAFKA_JARS_ENV, PROJECT_ROOT / ".jars-kafka"))


def _classpath() -> str:
    folder = kafka_jars_dir()
    jars = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise KafkaMissing(
            f"no Kafka broker jars in {folder}: run `make kafka-jars` (Maven, network to Maven "
            "Central once)"
        )
    return os.pathsep.join(str(j) for j in jars)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Broker:
    """One KRaft Kafka server (controller and broker) with its data under `folder`."""

    def __init__(self, folder: Path, *, heap: str = "384m") -> None:
        self.folder = Path(folder) / f"kafka-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        logs = self.folder / "data"
        text = "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={logs}",
                "num.partitions=1",
                "offsets.topic.num.partitions=1",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                # Tests publish events stamped with their (past) delivery day: time-based
                # retention would delete them at its next check, five minutes on.
                "log.retention.ms=-1",
                "",
            ]
        )
        path = self.folder / "server.properties"
        path.write_text(text, encoding="utf-8")
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            f"-Dkafka.logs.dir={self.folder / 'logs'}",
            "-cp",
            _classpath(),
            main,
            *args,
        ]

    def start(self) -> Broker:
        self.folder.mkdir(parents=True, exist_ok=True)
        properties = self._properties()
        cluster_id = uuid.uuid4().bytes.hex()[:22]
        formatted = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(properties),
            ),
            capture_output=True,
        )
        if formatted.returncode != 0:
            raise RuntimeError(
                "formatting the Kafka log folder failed: "
                + formatted.stderr.decode(errors="replace")[-2000:]
            )
        log = (self.folder / "server.log").open("wb")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(properties)), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.folder / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the Kafka broker did not start on {self.bootstrap}:\n{tail}")
            time.sleep(0.2)
        return self

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30000)
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            admin.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)


def publish(
    bootstrap: str,
    topic: str,
    messages: Iterable[bytes],
    *,
    keys: Sequence[bytes | None] | None = None,
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> int:
    """Send `messages` to `topic` and wait until the broker has them all; how many were sent.
    `timestamp_ms` sets every record's timestamp (the stream's `ingest_date` is its UTC date;
    default: when it is sent)."""
    send = producer(bootstrap)
    sent = 0
    try:
        futures = []
        for i, message in enumerate(messages):
            key = keys[i] if keys is not None else None
            futures.append(
                send.send(
                    topic, value=message, key=key, partition=partition, timestamp_ms=timestamp_ms
                )
            )
            sent += 1
        send.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        send.close()
    return sent


def day_start_ms(day: str) -> int:
    """Midnight UTC of `day` (YYYY-MM-DD) in epoch milliseconds."""
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp() * 1000)


def publish_landed(landing_root: str | Path, source: str, bootstrap: str, topic: str) -> int:
    """Publish every line of `source`'s landed files (a generated landing zone's clickstream),
    a message per non-blank line, in file order, each stamped with its file's ingest date: the
    stream then receives what the daily files deliver, as the front end would have sent it."""
    folder = Path(landing_root) / source
    sent = 0
    for day_folder in sorted(folder.glob("ingest_date=*")):
        day = day_folder.name.split("=", 1)[1]
        lines: list[bytes] = []
        for path in sorted(p for p in day_folder.iterdir() if not p.name.startswith((".", "_"))):
            content = path.read_bytes()
            if path.name.endswith(".gz"):
                content = gzip.decompress(content)
            lines.extend(line for line in content.split(b"\n") if line.strip())
        sent += publish(bootstrap, topic, lines, timestamp_ms=day_start_ms(day))
    return sent
