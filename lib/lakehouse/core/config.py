"""Typed, validated configuration: `conf/base.yaml` plus one overlay per environment.

The overlay (`conf/<env>.yaml`) is deep-merged onto the base, then the result is parsed into frozen
dataclasses. Every key must be known, every required key present and every value of the declared
type; otherwise loading fails at once with a `ConfigError` naming the file that set (or should have
set) the key, the dotted key and what was expected. Secrets are never values in YAML: the YAML names
the environment variable that holds them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from lakehouse.core.generator_spec import DefectSwitches, GeneratorSpec

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR_ENV = "LAKEHOUSE_CONF_DIR"


def _default_conf_dir() -> Path:
    """`$LAKEHOUSE_CONF_DIR`, else the project's `conf/`, else (inside the EMR job bundle, where
    the package is imported from a zip) the copy packed as `lakehouse/_conf/`, extracted once."""
    if os.environ.get(CONF_DIR_ENV):
        return Path(os.environ[CONF_DIR_ENV])
    if (PROJECT_ROOT / "conf").is_dir():
        return PROJECT_ROOT / "conf"
    import importlib.resources
    import tempfile

    packed = importlib.resources.files("lakehouse") / "_conf"
    if not packed.is_dir():
        return PROJECT_ROOT / "conf"
    out = Path(tempfile.mkdtemp(prefix="lakehouse-conf-"))

    def copy(node: Any, into: Path) -> None:
        for child in node.iterdir():
            if child.is_dir():
                (into / child.name).mkdir()
                copy(child, into / child.name)
            else:
                (into / child.name).write_bytes(child.read_bytes())

    copy(packed, out)
    return out


DEFAULT_CONF_DIR = _default_conf_dir()
ENVIRONMENTS = ("local", "dev", "prod")
T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file is wrong: the message names the file, the key and what was expected."""


# The layers of the lakehouse: the folders under its root, and the catalog's databases.
LAYERS = ("bronze", "silver", "gold", "quality", "ledger", "quarantine", "audit")


@dataclass(frozen=True)
class CatalogConfig:
    """How the lakehouse's tables are named in the catalog: database `<database_prefix><layer>`
    (`bronze`, ... locally; `lakehouse_dev_bronze`, ... on AWS, so environments sharing an
    account and its Glue Data Catalog never overwrite each other's tables)."""

    database_prefix: str = ""

    def database(self, layer: str) -> str:
        return f"{self.database_prefix}{layer}"

    @property
    def databases(self) -> tuple[str, ...]:
        return tuple(self.database(layer) for layer in LAYERS)


@dataclass(frozen=True)
class StorageConfig:
    """Where things live. Each root is a local folder (relative to the project) or an s3:// URI."""

    landing_root: str
    lakehouse_root: str
    reports_root: str


@dataclass(frozen=True)
class SparkConfig:
    """How the session is built: `local` downloads nothing and uses the project's jars; `emr` uses
    what the cluster provides and sets no master."""

    mode: Literal["local", "emr"]
    master: str = "local[2]"
    shuffle_partitions: int = 4
    driver_memory: str = "2g"
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretsConfig:
    """Where the secrets are, never the secrets themselves (`lakehouse.core.secrets`): the
    environment variable that holds the pseudonymisation key, and on AWS the Secrets Manager
    secret (name or ARN) the driver reads it from when the variable is unset."""

    pii_hmac_key_env: str
    pii_hmac_key_secret: str | None = None


@dataclass(frozen=True)
class AwsConfig:
    """The AWS side of an environment: region, buckets and prefixes the EMR jobs use."""

    region: str
    artifacts_uri: str
    logs_uri: str
    endpoint_url: str | None = None


@dataclass(frozen=True)
class TableMaintenance:
    """What `lakehouse maintain` does to one table beyond compaction: the columns to Z-order by
    (never partition columns; Delta refuses them)."""

    zorder_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class MaintenanceConfig:
    """Compaction and retention (`lakehouse maintain`, see docs/MAINTENANCE.md).

    `time_travel_window_hours` is how far back every table can be read by version (and how long
    an erased customer's data can still be recovered by time travel); `vacuum_retention_hours`
    is how old an unreferenced file must be before VACUUM deletes it, never below the window.
    `tables` holds per-table settings keyed `layer.table` for tables without a spec
    (`conf/tables/*.yaml`, `conf/gold/*.yaml`): the SCD2 tables `silver.*_history`, bronze,
    the ledger, ... A table with a spec sets them there; naming it here too is an error
    (`lakehouse.ops.maintenance.zorder_settings`)."""

    time_travel_window_hours: int = 168
    vacuum_retention_hours: int = 168
    tables: dict[str, TableMaintenance] = field(default_factory=dict)


@dataclass(frozen=True)
class BronzeConfig:
    """How bronze recognises a record it already holds (docs/DESIGN.md, "Bronze at any age").

    A new record is compared with the records bronze landed within `dedup_window_days` days of
    its own `ingest_date` (partition-pruned, so a day's cost does not grow with history), and with
    the ids of erased records whatever their age; a copy delivered later than that is landed
    again and silver, which keeps one row per key and version, counts it as a duplicate.

    A daily job (`jobs/*.py --date D`) also ingests the earlier ingest dates with a landed file
    not ingested yet (a missed night), at most `catch_up_max_days` of them; beyond that it stops
    and says which dates to backfill (`lakehouse.bronze.ingestion.catch_up_dates`)."""

    dedup_window_days: int = 7
    catch_up_max_days: int = 7


@dataclass(frozen=True)
class KafkaConfig:
    """The Kafka topic `lakehouse stream` reads (Amazon MSK or any Kafka): `options` go to Spark's
    Kafka source as `kafka.<name>` (security settings, e.g. MSK IAM authentication)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "clickstream"
    starting_offsets: str = "earliest"
    options: dict[str, str] = field(default_factory=dict)
    # An MSK cluster's ARN: the job role may then read the topic with IAM authentication
    # (`lakehouse emr iam`); set the matching `options` (security.protocol SASL_SSL, ...).
    msk_cluster_arn: str | None = None


def group_id_prefix(stream_name: str) -> str:
    """The prefix of the consumer groups the stream's Kafka source uses (the IAM policy of an
    MSK cluster allows those groups alone)."""
    return f"lakehouse-stream-{stream_name}"


@dataclass(frozen=True)
class KinesisConfig:
    """The Kinesis data stream `lakehouse stream` reads on EMR, through the connector EMR ships
    (format `aws-kinesis`); `options` go to it as given (e.g. `kinesis.consumerType`)."""

    stream_name: str = "clickstream"
    region: str = "us-east-1"
    endpoint_url: str | None = None
    starting_position: str = "TRIM_HORIZON"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamConfig:
    """Near-real-time ingestion of one source (docs/STREAMING.md): Structured Streaming from
    `kafka` or `kinesis` into the same bronze table the daily files feed. A micro-batch starts
    every `trigger_seconds` (`--available-now` reads what is there and stops) with at most
    `max_records_per_batch` records; its checkpoint is `<lakehouse_root>/_checkpoints/stream/
    <name>`. With `follow_silver` each micro-batch also applies the new bronze records of the
    source to silver (when the lakehouse's lock is free)."""

    source_type: Literal["kafka", "kinesis"] = "kafka"
    source: str = "clickstream"
    name: str = "clickstream"
    trigger_seconds: float = 10
    max_records_per_batch: int = 200_000
    follow_silver: bool = False
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    kinesis: KinesisConfig = field(default_factory=KinesisConfig)


@dataclass(frozen=True)
class ContractConfig:
    """The landing contract version the senders deliver (docs/CONTRACTS.md): table columns
    declared `since` a later version stay out of silver and gold until it is raised."""

    version: int = 1


@dataclass(frozen=True)
class LockConfig:
    """The lakehouse's run lock (`lakehouse.state.lock`): a run waits up to `wait_minutes` for
    another run to finish, checking every `poll_seconds`. A holder renews its lease every third
    of `lease_minutes` while it runs; one that stops renewing (killed, its host gone) frees the
    lock `lease_minutes` after its last renewal (a holder on this host that has ended, at once)."""

    wait_minutes: float = 60
    poll_seconds: float = 10
    lease_minutes: float = 15


@dataclass(frozen=True)
class Config:
    """The whole configuration of one environment."""

    env: str
    project: str
    storage: StorageConfig
    spark: SparkConfig
    secrets: SecretsConfig
    generator: GeneratorSpec
    aws: AwsConfig | None = None
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    bronze: BronzeConfig = field(default_factory=BronzeConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    lock: LockConfig = field(default_factory=LockConfig)
    contract: ContractConfig = field(default_factory=ContractConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    # Set by `load_config`: the folder the configuration was read from (quality suites and table
    # specs are read from the same folder).
    conf_dir: str | None = None

    def table_path(self, layer: str, name: str) -> str:
        """Location of the Delta table `layer.name` under the lakehouse root."""
        return join_uri(self.storage.lakehouse_root, layer, name)

    def landing_path(self, source: str) -> str:
        """Location of one source's landing folder."""
        return join_uri(self.storage.landing_root, source)


def join_uri(root: str, *parts: str) -> str:
    """Join path parts onto a local folder or URI root with single slashes."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def is_uri(path: str) -> bool:
    return "://" in path


def load_config(
    env: str = "local",
    conf_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load `base.yaml` with the `<env>.yaml` overlay (and optional in-memory overrides, for tests
    and command-line flags) into a validated `Config`. Relative local roots are resolved against the
    folder that holds the conf directory."""
    conf_path = Path(conf_dir) if conf_dir is not None else DEFAULT_CONF_DIR
    base_file = conf_path / "base.yaml"
    env_file = conf_path / f"{env}.yaml"
    if not env_file.exists():
        raise ConfigError(
            f"{env_file}: no such environment '{env}' (known: {', '.join(sorted(ENVIRONMENTS))})"
        )
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in (base_file, env_file):
        _deep_merge(merged, _read_yaml(path), origin, str(path), "")
    if overrides:
        _deep_merge(merged, dict(overrides), origin, "<overrides>", "")
    merged["env"] = env
    origin["env"] = "--env"
    merged["conf_dir"] = str(conf_path.resolve())
    origin["conf_dir"] = "--conf-dir"
    config = _parse(Config, merged, "", origin, str(env_file))
    _check_maintenance(config.maintenance, origin, str(env_file))
    if config.bronze.dedup_window_days < 0:
        raise ConfigError(
            f"{_file_of(origin, 'bronze.dedup_window_days', str(env_file))}: key "
            f"'bronze.dedup_window_days': expected 0 or more days, got "
            f"{config.bronze.dedup_window_days}"
        )
    _check_stream(config.stream, origin, str(env_file))
    return _resolve_local_roots(config, conf_path.resolve().parent)


def _check_stream(stream: StreamConfig, origin: dict[str, str], default_file: str) -> None:
    def fail(key: str, expected: str, got: object) -> ConfigError:
        return ConfigError(
            f"{_file_of(origin, f'stream.{key}', default_file)}: key 'stream.{key}': "
            f"expected {expected}, got {got}"
        )

    if not stream.trigger_seconds > 0:
        raise fail("trigger_seconds", "a positive number of seconds", stream.trigger_seconds)
    if stream.max_records_per_batch < 1:
        raise fail("max_records_per_batch", "1 or more", stream.max_records_per_batch)
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", stream.name):
        raise fail("name", "a name of lower-case letters, digits, '-' and '_'", stream.name)
    arn = stream.kafka.msk_cluster_arn
    if arn is not None and not MSK_CLUSTER_ARN_RE.fullmatch(arn):
        raise fail(
            "kafka.msk_cluster_arn",
            "an MSK cluster ARN arn:aws:kafka:<region>:<account>:cluster/<name>/<id>",
            arn,
        )


MSK_CLUSTER_ARN_RE = re.compile(r"arn:aws[a-z-]*:kafka:[a-z0-9-]+:\d{12}:cluster/[^/\s]+/[^/\s]+")


TABLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def _check_maintenance(m: MaintenanceConfig, origin: dict[str, str], default_file: str) -> None:
    """Retention can never be below the time-travel window; table keys are `layer.table`."""

    def where(key: str) -> str:
        return _file_of(origin, f"maintenance.{key}", default_file)

    if m.time_travel_window_hours < 1:
        raise ConfigError(
            f"{where('time_travel_window_hours')}: key 'maintenance.time_travel_window_hours': "
            f"expected at least 1 hour, got {m.time_travel_window_hours}"
        )
    if m.vacuum_retention_hours < m.time_travel_window_hours:
        raise ConfigError(
            f"{where('vacuum_retention_hours')}: key 'maintenance.vacuum_retention_hours': "
            f"{m.vacuum_retention_hours} hours is below the time-travel window "
            f"(maintenance.time_travel_window_hours = {m.time_travel_window_hours}); VACUUM "
            "would delete files that versions inside the window still need"
        )
    for name, table in m.tables.items():
        if not TABLE_NAME_RE.match(name):
            raise ConfigError(
                f"{where('tables')}: key 'maintenance.tables.{name}': expected a table name "
                "layer.table (e.g. silver.customers_history)"
            )
        if len(set(table.zorder_by)) != len(table.zorder_by) or not all(table.zorder_by):
            raise ConfigError(
                f"{where(f'tables.{name}')}: key 'maintenance.tables.{name}.zorder_by': "
                f"expected distinct column names, got {list(table.zorder_by)}"
            )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_merge(
    into: dict[str, Any], new: dict[str, Any], origin: dict[str, str], source: str, prefix: str
) -> None:
    for key, value in new.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value, origin, source, dotted + ".")
        else:
            into[key] = value
        origin[dotted] = source


def _file_of(origin: dict[str, str], dotted: str, default: str) -> str:
    probe = dotted
    while probe:
        if probe in origin:
            return origin[probe]
        probe = probe.rpartition(".")[0]
    return default


def _parse(tp: Any, value: Any, key: str, origin: dict[str, str], default_file: str) -> Any:
    """Parse `value` as type `tp`, naming `key` and its file in any error."""

    def fail(expected: str) -> ConfigError:
        where = _file_of(origin, key, default_file)
        return ConfigError(f"{where}: key '{key or '<top>'}': expected {expected}, got {value!r}")

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail(f"a mapping for {tp.__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            bad = f"{key}.{unknown[0]}" if key else unknown[0]
            where = _file_of(origin, bad, default_file)
            raise ConfigError(
                f"{where}: unknown key '{bad}' (known keys here: {', '.join(sorted(fields))})"
            )
        kwargs = {}
        for name, f in fields.items():
            sub = f"{key}.{name}" if key else name
            if name in value:
                kwargs[name] = _parse(hints[name], value[name], sub, origin, default_file)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                where = _file_of(origin, key, default_file) if key else default_file
                raise ConfigError(f"{where}: missing key '{sub}' ({_describe(hints[name])})")
        return tp(**kwargs)

    origin_tp = get_origin(tp)
    if origin_tp in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        if len(candidates) == 1:
            # An optional section: its own error (the dotted key inside it) is the useful one.
            return _parse(candidates[0], value, key, origin, default_file)
        for arg in candidates:
            try:
                return _parse(arg, value, key, origin, default_file)
            except ConfigError:
                continue
        raise fail(_describe(tp))
    if origin_tp is Literal:
        if value not in get_args(tp):
            raise fail("one of " + ", ".join(repr(a) for a in get_args(tp)))
        return value
    if origin_tp is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, dict):
            raise fail("a mapping")
        return {
            _parse(key_tp, k, f"{key}.{k}", origin, default_file): _parse(
                val_tp, v, f"{key}.{k}", origin, default_file
            )
            for k, v in value.items()
        }
    if origin_tp in (tuple, list):
        (item_tp, *_) = get_args(tp)
        if not isinstance(value, list):
            raise fail("a list")
        items = [
            _parse(item_tp, v, f"{key}[{i}]", origin, default_file) for i, v in enumerate(value)
        ]
        return tuple(items) if origin_tp is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise fail("a string")
        return str(value)
    if tp is date:
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise fail("a date YYYY-MM-DD")
    raise ConfigError(f"{default_file}: key '{key}': unsupported type {tp!r} in the config schema")


def _describe(tp: Any) -> str:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping for {tp.__name__}"
    origin_tp = get_origin(tp)
    if origin_tp in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None)) + " or null"
    if origin_tp is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        date: "a date YYYY-MM-DD",
    }
    return names.get(tp, str(tp))


def _resolve_local_roots(config: Config, base: Path) -> Config:
    def resolve(p: str) -> str:
        return p if is_uri(p) or Path(p).is_absolute() else str((base / p).resolve())

    storage = dataclasses.replace(
        config.storage,
        landing_root=resolve(config.storage.landing_root),
        lakehouse_root=resolve(config.storage.lakehouse_root),
        reports_root=resolve(config.storage.reports_root),
    )
    return dataclasses.replace(config, storage=storage)


__all__ = [
    "ENVIRONMENTS",
    "LAYERS",
    "AwsConfig",
    "CatalogConfig",
    "Config",
    "ConfigError",
    "DefectSwitches",
    "GeneratorSpec",
    "MaintenanceConfig",
    "SecretsConfig",
    "SparkConfig",
    "StorageConfig",
    "TableMaintenance",
    "is_uri",
    "join_uri",
    "load_config",
    "load_typed_yaml",
]


def load_typed_yaml(path: str | Path, tp: type[T], overlay: str | Path | None = None) -> T:
    """Parse one YAML file (plus an optional overlay deep-merged onto it) into dataclass `tp`,
    with the same strict checks and error messages as the main configuration. Used for table,
    quality and EMR definitions."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    files = [Path(path)] + ([Path(overlay)] if overlay is not None else [])
    for f in files:
        _deep_merge(merged, _read_yaml(f), origin, str(f), "")
    result: T = _parse(tp, merged, "", origin, str(files[-1]))
    return result
