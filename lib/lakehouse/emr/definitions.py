"""The EMR definitions in `emr/*.yaml`, parsed strictly into frozen dataclasses.

Each definition is one base file `emr/<name>.yaml` plus an optional overlay `emr/<name>.<env>.yaml`
deep-merged onto it (same rules and error messages as `conf/`, via `load_typed_yaml`):

- `account.yaml`: the AWS resources of an environment that were made outside this code (roles, KMS
  key, SNS topic, dead-letter queue, log group, Glue databases).
- `bundle.yaml`: what the job bundle holds (entry points, jars, which distributions EMR provides).
- `cluster.yaml`: the EMR on EC2 cluster and its daily steps.
- `serverless.yaml`: the EMR Serverless application and the daily job run.
- `schedule.yaml`: the EventBridge Scheduler schedules: the daily run, the weekly maintenance.
- `monitoring.yaml`: the CloudWatch alarms and dashboard, and the daily run's deadline.
- `orchestration.yaml`: the Airflow DAGs and the Step Functions state machine (one task per step).

Keys are snake_case and never hold an environment name; `conf/<env>.yaml`'s `aws` section (region,
artifacts and logs URIs, endpoint) is the only AWS setting kept with the main configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from lakehouse.core.config import PROJECT_ROOT, Config, ConfigError, load_typed_yaml

DEFAULT_EMR_DIR = PROJECT_ROOT / "emr"
T = TypeVar("T")


@dataclass(frozen=True)
class WaitDef:
    """How to wait for something AWS runs: exponential backoff between polls, capped, until a
    deadline."""

    initial_delay_seconds: float = 10.0
    max_delay_seconds: float = 120.0
    factor: float = 2.0
    deadline_minutes: float = 240.0


@dataclass(frozen=True)
class AccountDef:
    """Resources of one environment's AWS account that this code uses but does not create."""

    account_id: str
    job_role_arn: str
    scheduler_role_arn: str
    kms_key_arn: str
    sns_topic_arn: str
    dlq_arn: str
    log_group: str
    metrics_namespace: str = "Lakehouse"
    tags: dict[str, str] = field(default_factory=dict)
    # The Step Functions state machine's role (emr/iam/<env>/stepfunctions-role-policy.json);
    # needed only by `lakehouse emr stepfunctions`.
    stepfunctions_role_arn: str = ""


@dataclass(frozen=True)
class BundleDef:
    """What the job bundle `dist/lakehouse-<version>/` holds and how EMR runs its Python."""

    jobs: tuple[str, ...]
    jars: tuple[str, ...]
    emr_provided: tuple[str, ...]
    optional_native: tuple[str, ...] = ()
    # Distributions used for data files alone (plotly: its plotly.js), by name -> the files to
    # pack (paths inside site-packages); their own requirements are not packed.
    assets_only: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pyfiles: str = "pyfiles.zip"
    python: str = "/usr/bin/python3.11"


@dataclass(frozen=True)
class InstanceTypeDef:
    """One instance type a fleet may use; `weight` is its share of the fleet's target units."""

    type: str
    weight: int = 1
    ebs_gb: int = 64


@dataclass(frozen=True)
class SpotDef:
    """How a fleet buys spot capacity, and what it does when none comes in time."""

    allocation_strategy: Literal[
        "capacity-optimized",
        "price-capacity-optimized",
        "lowest-price",
        "diversified",
        "capacity-optimized-prioritized",
    ]
    timeout_minutes: int
    timeout_action: Literal["SWITCH_TO_ON_DEMAND", "TERMINATE_CLUSTER"]


@dataclass(frozen=True)
class FleetDef:
    """One instance fleet: its instance types and target on-demand and spot units."""

    instance_types: tuple[InstanceTypeDef, ...]
    on_demand: int = 0
    spot: int = 0
    spot_options: SpotDef | None = None


@dataclass(frozen=True)
class FleetsDef:
    primary: FleetDef
    core: FleetDef
    task: FleetDef


@dataclass(frozen=True)
class ScalingDef:
    """EMR managed scaling limits, in instance fleet units."""

    minimum_units: int
    maximum_units: int
    maximum_on_demand_units: int
    maximum_core_units: int
    unit_type: Literal["InstanceFleetUnits"] = "InstanceFleetUnits"


@dataclass(frozen=True)
class SecurityDef:
    """The EMR security configuration: at rest with the account's KMS key, in transit with PEM
    certificates from S3."""

    name: str
    certificates_s3_uri: str


@dataclass(frozen=True)
class ConfigurationDef:
    """An EMR configuration classification (`spark-defaults`, `spark-env` / `export`, ...)."""

    classification: str
    properties: dict[str, str] = field(default_factory=dict)
    configurations: tuple[ConfigurationDef, ...] = ()


@dataclass(frozen=True)
class ClusterDef:
    """The EMR on EC2 cluster and its daily steps."""

    name: str
    release_label: str
    applications: tuple[str, ...]
    service_role: str
    instance_profile: str
    subnet_ids: tuple[str, ...]
    fleets: FleetsDef
    managed_scaling: ScalingDef
    idle_timeout_seconds: int
    security: SecurityDef
    configurations: tuple[ConfigurationDef, ...]
    step_jobs: tuple[str, ...]
    step_action_on_failure: Literal["CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "CONTINUE"] = (
        "CANCEL_AND_WAIT"
    )
    step_spark_conf: dict[str, str] = field(default_factory=dict)
    ebs_root_volume_gb: int = 32
    step_wait: WaitDef = field(default_factory=WaitDef)
    # `emr steps --wait`: a failed day is submitted again from its failed step, at most
    # `step_retries` times, after `step_retry_delay_seconds` doubled at each retry.
    step_retries: int = 2
    step_retry_delay_seconds: float = 60


@dataclass(frozen=True)
class WorkerDef:
    """Pre-initialised workers of one type (DRIVER or EXECUTOR) of a Serverless application."""

    worker_count: int
    cpu: str
    memory: str
    disk: str | None = None


@dataclass(frozen=True)
class CapacityDef:
    """The most an application may use at once, across all its runs."""

    cpu: str
    memory: str
    disk: str | None = None


@dataclass(frozen=True)
class ApplicationDef:
    """The EMR Serverless application, created once and reused by name."""

    name: str
    release_label: str
    initial_capacity: dict[Literal["DRIVER", "EXECUTOR"], WorkerDef]
    maximum_capacity: CapacityDef
    type: Literal["SPARK"] = "SPARK"
    architecture: Literal["X86_64", "ARM64"] = "X86_64"
    auto_start: bool = True
    auto_stop_idle_minutes: int = 15
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobDef:
    """The daily job run: one entry point running the whole pipeline for one day."""

    name: str
    entry_point: str
    spark_conf: dict[str, str] = field(default_factory=dict)
    extra_jars: tuple[str, ...] = ()
    max_attempts: int = 2
    execution_timeout_minutes: int = 240
    wait: WaitDef = field(default_factory=WaitDef)


@dataclass(frozen=True)
class ServerlessDef:
    application: ApplicationDef
    job: JobDef
    backfill_parallel: int = 2


@dataclass(frozen=True)
class RetryDef:
    """How EventBridge Scheduler retries a failed invocation before sending it to the DLQ."""

    maximum_event_age_seconds: int = 3600
    maximum_retry_attempts: int = 3


@dataclass(frozen=True)
class MaintenanceScheduleDef:
    """The weekly schedule of the maintenance job (`jobs/maintain.py`), created with the daily
    one, in the same group, with the same retry policy and dead-letter queue."""

    name: str
    expression: str
    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    description: str = ""


@dataclass(frozen=True)
class ScheduleDef:
    """The EventBridge Scheduler schedules: the daily Serverless job run, and the weekly
    maintenance (`maintenance`)."""

    name: str
    expression: str
    timezone: str = "UTC"
    group: str = "default"
    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    description: str = ""
    flexible_window_minutes: int = 0
    retry: RetryDef = field(default_factory=RetryDef)
    maintenance: MaintenanceScheduleDef | None = None


@dataclass(frozen=True)
class DeadlineDef:
    """When the daily run must have finished: a heartbeat schedule puts `DeadlineCheck` at
    `expression` (UTC), and the late-run alarm fires when that heartbeat comes with no
    `GoldUpToDate` in the `lookback_hours` before it (`lakehouse.emr.monitoring`)."""

    schedule_name: str
    expression: str = "cron(59 3 * * ? *)"
    lookback_hours: int = 2


@dataclass(frozen=True)
class MonitoringDef:
    """CloudWatch alarms and dashboard of one environment (`lakehouse.emr.monitoring`)."""

    alarm_prefix: str
    dashboard: str
    deadline: DeadlineDef
    quarantine_rate_percent: float = 5.0
    gold_max_age_hours: int = 26


@dataclass(frozen=True)
class AirflowDef:
    """The Airflow DAGs (`lakehouse.emr.airflow`): ids, connection, target, backfill bounds."""

    dag_id: str = "lakehouse_daily"
    maintenance_dag_id: str = "lakehouse_maintenance"
    aws_conn_id: str = "aws_default"
    target: Literal["serverless", "cluster"] = "serverless"
    deferrable: bool = True
    max_active_runs: int = 1
    catchup: bool = False
    start_date: str = "2024-01-01"


@dataclass(frozen=True)
class StepFunctionsDef:
    """The Step Functions state machine (`lakehouse.emr.stepfunctions`) and the EventBridge
    Scheduler schedule that starts it every day (at the daily run's time of `schedule.yaml`),
    DISABLED until Step Functions takes the daily run over from the built-in schedule."""

    state_machine_name: str = "lakehouse-daily"
    schedule_name: str = "lakehouse-stepfunctions-daily"
    schedule_state: Literal["ENABLED", "DISABLED"] = "DISABLED"


@dataclass(frozen=True)
class OrchestrationDef:
    """Airflow and Step Functions: one task per step of `cluster.step_jobs`, each limited to
    `task_timeout_minutes` and retried `retries` times with exponential backoff."""

    task_timeout_minutes: int = 120
    retries: int = 3
    retry_delay_seconds: int = 300
    retry_backoff_rate: float = 2.0
    max_retry_delay_seconds: int = 1800
    airflow: AirflowDef = field(default_factory=AirflowDef)
    stepfunctions: StepFunctionsDef = field(default_factory=StepFunctionsDef)


@dataclass(frozen=True)
class StreamingServerlessDef:
    max_failed_attempts_per_hour: int = 5


@dataclass(frozen=True)
class StreamingClusterDef:
    action_on_failure: Literal["CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "CONTINUE"] = "CONTINUE"


@dataclass(frozen=True)
class StreamingDef:
    """The streaming ingestion job on EMR (`lakehouse.emr.operations.stream_job`): a Serverless
    STREAMING run restarted from its checkpoint after a failure, or a cluster step that hands
    the application to YARN and ends."""

    serverless: StreamingServerlessDef = field(default_factory=StreamingServerlessDef)
    cluster: StreamingClusterDef = field(default_factory=StreamingClusterDef)
    spark_conf: dict[str, str] = field(default_factory=dict)
    kinesis_connector_jar: str = (
        "/usr/share/aws/kinesis/spark-sql-kinesis/lib/spark-streaming-sql-kinesis-connector.jar"
    )


@dataclass(frozen=True)
class EmrDefinitions:
    """All EMR definitions of one environment."""

    env: str
    account: AccountDef
    bundle: BundleDef
    cluster: ClusterDef
    serverless: ServerlessDef
    schedule: ScheduleDef
    monitoring: MonitoringDef
    orchestration: OrchestrationDef
    streaming: StreamingDef = field(default_factory=StreamingDef)


def load_definition(name: str, tp: type[T], env: str, emr_dir: str | Path | None = None) -> T:
    """Load `emr/<name>.yaml` with the `emr/<name>.<env>.yaml` overlay when it exists."""
    folder = Path(emr_dir) if emr_dir is not None else DEFAULT_EMR_DIR
    base = folder / f"{name}.yaml"
    if not base.exists():
        raise ConfigError(f"{base}: file not found (the {name} definition)")
    overlay = folder / f"{name}.{env}.yaml"
    return load_typed_yaml(base, tp, overlay if overlay.exists() else None)


def load_definitions(env: str, emr_dir: str | Path | None = None) -> EmrDefinitions:
    """Load every EMR definition of `env`; fails at once with the file and key of any mistake."""
    return EmrDefinitions(
        env=env,
        account=load_definition("account", AccountDef, env, emr_dir),
        bundle=load_definition("bundle", BundleDef, env, emr_dir),
        cluster=load_definition("cluster", ClusterDef, env, emr_dir),
        serverless=load_definition("serverless", ServerlessDef, env, emr_dir),
        schedule=load_definition("schedule", ScheduleDef, env, emr_dir),
        monitoring=load_definition("monitoring", MonitoringDef, env, emr_dir),
        orchestration=load_definition("orchestration", OrchestrationDef, env, emr_dir),
        streaming=load_definition("streaming", StreamingDef, env, emr_dir),
    )


def require_aws(config: Config) -> None:
    """Fail with a configuration error when the environment has no `aws` section."""
    if config.aws is None:
        raise ConfigError(
            f"conf/{config.env}.yaml: missing key 'aws' (region, artifacts_uri, logs_uri): "
            f"environment '{config.env}' does not run on EMR"
        )
