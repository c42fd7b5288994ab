"""Run quality suites: one Deequ `VerificationSuite` pass per table (all of its Deequ and
anomaly checks), cross-table checks with Spark joins, results appended to the Delta table
`quality.results` and Deequ metrics to `<root>/quality/metrics.json`.

pydeequ reads `SPARK_VERSION` at import, so it is imported inside functions only, after
`lakehouse.core.spark.get_spark` has set it. Two pydeequ 1.7 gaps against Deequ 2.0.7 are bridged
through the JVM: `addAnomalyCheck` with an `AnomalyCheckConfig` (pydeequ raises
NotImplementedError) and reading each constraint's metric from the `VerificationResult`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.core import progress
from lakehouse.core.config import join_uri
from lakehouse.core.context import Lakehouse
from lakehouse.core.errors import UserError
from lakehouse.core.spark import BATCH_STORAGE
from lakehouse.core.sql import sql_literal
from lakehouse.quality import cross, days
from lakehouse.quality.scope import keyed_rows
from lakehouse.quality.suites import (
    LANDING_SUITE,
    AllowedSpec,
    AnomalySpec,
    CheckSpec,
    CompletenessSpec,
    DayAnomalySpec,
    EqualsAggregateSpec,
    ExistsInSpec,
    NonNegativeSpec,
    RangeSpec,
    ReconcilesSpec,
    SizeSpec,
    SqlSpec,
    Suite,
    UniquenessSpec,
    load_suites,
)
from lakehouse.silver.schema import live

# One row per check per run (`RESULT_SCHEMA`).
RESULTS_TABLE = "quality.results"
MAX_EXAMPLES = 5

RESULT_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("run_ts", TimestampType(), False),
        StructField("layer", StringType(), False),
        StructField("table", StringType(), False),
        StructField("check", StringType(), False),
        StructField("kind", StringType(), False),
        StructField("severity", StringType(), False),
        StructField("status", StringType(), False),
        StructField("message", StringType(), True),
        StructField("metric", StringType(), True),
        StructField("value", DoubleType(), True),
        StructField("examples", ArrayType(StringType()), True),
        # JSON a report draws from: a day_anomaly check's days with their bands.
        StructField("details", StringType(), True),
    ]
)


class QualityGateError(UserError):
    """Error-severity checks failed; the message names every one of them."""

    def __init__(self, outcome: QualityOutcome) -> None:
        self.outcome = outcome
        lines = [
            f"{r.layer}.{r.table}/{r.check} ({r.kind}): {r.message or 'failed'}"
            for r in outcome.errors
        ]
        super().__init__(
            f"quality gate failed for run {outcome.run_id}: {len(lines)} error check(s) failed: "
            + "; ".join(lines)
        )


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: the row written to `quality.results`."""

    run_id: str
    run_ts: dt.datetime
    layer: str
    table: str
    check: str
    kind: str
    severity: str
    status: str  # passed | failed
    message: str | None
    metric: str | None
    value: float | None
    examples: tuple[str, ...] = ()
    details: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True)
class QualityOutcome:
    run_id: str
    results: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[CheckResult, ...]:
        """Failed checks of severity error: these stop publishing."""
        return tuple(r for r in self.results if r.failed and r.severity == "error")

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        """Failed checks of severity warning: reported only."""
        return tuple(r for r in self.results if r.failed and r.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def status_of(self, table: str, check: str) -> str:
        """`passed`/`failed` of check `check` of table `layer.table`."""
        for r in self.results:
            if f"{r.layer}.{r.table}" == table and r.check == check:
                return r.status
        raise KeyError(f"{table}/{check}")


def metrics_path(lh: Lakehouse) -> str:
    """Location of Deequ's metrics repository (a JSON file), the anomaly checks' history."""
    return join_uri(lh.root, "quality", "metrics.json")


def passed_gate(spark: SparkSession, lh: Lakehouse, run_id: str, layer: str) -> bool:
    """Whether run `run_id` checked `layer` (rows in `quality.results`) and no error check of
    it failed."""
    path = lh.path(RESULTS_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return False
    row = (
        spark.read.format("delta")
        .load(path)
        .where((F.col("run_id") == run_id) & (F.col("layer") == layer))
        .agg(
            F.count(F.lit(1)).alias("checks"),
            F.sum(
                ((F.col("status") == "failed") & (F.col("severity") == "error")).cast("long")
            ).alias("errors"),
        )
        .first()
    )
    return row is not None and int(row["checks"]) > 0 and not row["errors"]


def gated_runs(spark: SparkSession, lh: Lakehouse, layer: str) -> set[str]:
    """The runs that checked `layer` and failed no error check of it (see `passed_gate`)."""
    path = lh.path(RESULTS_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return set()
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(F.col("layer") == layer)
        .groupBy("run_id")
        .agg(
            F.sum(
                ((F.col("status") == "failed") & (F.col("severity") == "error")).cast("long")
            ).alias("errors")
        )
        .where(F.col("errors") == 0)
        .collect()
    )
    return {str(r["run_id"]) for r in rows}


def gate(outcome: QualityOutcome) -> QualityOutcome:
    """Return `outcome` when no error check failed; otherwise raise `QualityGateError` naming
    every failed error check. Warnings never fail the gate."""
    if outcome.errors:
        raise QualityGateError(outcome)
    return outcome


def run_quality(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    tables: Iterable[str],
    *,
    frames: Mapping[str, DataFrame] | None = None,
    scopes: Mapping[str, DataFrame] | None = None,
    run_days: Sequence[dt.date] | None = None,
) -> QualityOutcome:
    """Run the suites of `tables` (names `layer.table`, each with
    `<conf_dir>/quality/<name>.yaml`) against the lakehouse's Delta tables (`lh.path(name)`), or
    against the DataFrame `frames[name]` where given: a gold table as it would be once
    published, see `gold.build.StagedGold.candidates`. Silver is checked on live rows.

    `scopes[name]`, where given, holds the rows of the table this run wrote (`quality.scope`):
    row-wise checks run on those rows only, uniqueness on their keys across the whole table,
    cross-table checks for their keys; size checks and size anomalies still count the whole
    table. A suite without a scope checks every row (`lakehouse maintain`'s full scan).
    `run_days`, the ingest dates the run landed, are judged by `day_anomaly` checks besides the
    dates of the scope (`quality.days`).

    Appends one row per check to `quality.results` (columns `RESULT_SCHEMA`) and returns the
    outcome; it never raises for failed checks (see `gate`)."""
    suites = load_suites(lh, list(tables))
    given = dict(frames or {})
    scoped = dict(scopes or {})

    def read(name: str) -> DataFrame:
        if name in given:
            return given[name]
        if name == LANDING_SUITE:
            return days.landing_view(spark, lh)
        df = spark.read.format("delta").load(lh.path(name))
        if name.startswith("silver.") and "_is_deleted" in df.columns:
            df = live(df)
        return df

    run_ts = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    results: list[CheckResult] = []
    for suite in suites:
        clock = progress.Clock()
        scope = scoped.get(suite.full_name)
        found = run_suite(spark, lh, run_id, run_ts, suite, read, scope, run_days)
        results.extend(found)
        failed = sum(1 for r in found if r.status != "passed")
        progress.table(
            f"quality.{suite.full_name}",
            clock,
            "  quality.%s: %d checks, %d failed (%s)",
            suite.full_name,
            len(found),
            failed,
            _scope_label(suite, scope),
        )
    if results:
        rows = [
            (
                r.run_id,
                r.run_ts,
                r.layer,
                r.table,
                r.check,
                r.kind,
                r.severity,
                r.status,
                r.message,
                r.metric,
                r.value,
                list(r.examples),
                r.details,
            )
            for r in results
        ]
        # mergeSchema: a results table from before `details` existed gains the column.
        spark.createDataFrame(rows, RESULT_SCHEMA).write.format("delta").mode("append").option(
            "mergeSchema", "true"
        ).save(lh.path(RESULTS_TABLE))
    return QualityOutcome(run_id=run_id, results=tuple(results))


def _scope_label(suite: Suite, scope: DataFrame | None) -> str:
    """What a suite checked, for its progress line."""
    if suite.layer == "bronze":
        return "the run's ingest days"
    return "every row" if scope is None else "changed rows"


def run_suite(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    run_ts: dt.datetime,
    suite: Suite,
    read: cross.Reader,
    scope: DataFrame | None = None,
    run_days: Sequence[dt.date] | None = None,
) -> list[CheckResult]:
    """All checks of one suite, in the suite's order: Deequ passes, then cross-table checks.

    Without a `scope`, one Deequ pass over the whole table. With one (the rows this run wrote,
    see `run_quality`): a pass over the whole table for size checks (a count), one over the
    scope for row-wise checks, one per uniqueness key over the table's rows holding the scope's
    keys (key columns only); an empty scope passes every check but the size ones."""
    df = read(suite.full_name)
    by_name: dict[str, CheckResult] = {}

    def result(
        check: CheckSpec,
        passed: bool,
        message: str | None,
        metric: str | None,
        value: float | None,
        examples: tuple[str, ...] = (),
        details: str | None = None,
    ) -> CheckResult:
        return CheckResult(
            run_id,
            run_ts,
            suite.layer,
            suite.table,
            check.name,
            check.kind,
            check.severity,
            "passed" if passed else "failed",
            message,
            metric,
            value,
            examples,
            details,
        )

    deequ_checks = [
        c for c in suite.checks if c.kind not in cross_kinds() and c.kind != "day_anomaly"
    ]
    # The scope is read by several passes: cache it, unless it is cached already (gold's
    # staged rows, which publishing writes afterwards).
    owned = scope is not None and not scope.is_cached
    rows = df if scope is None else (scope.persist(BATCH_STORAGE) if owned else scope)
    try:
        day_checks = [(c.name, c.day_anomaly) for c in suite.checks if c.day_anomaly is not None]
        day_points = days.check_days(df, [spec for _, spec in day_checks], scope, run_days)
        day_outcomes = {
            name: _day_anomaly(spec, points)
            for (name, spec), points in zip(day_checks, day_points, strict=True)
        }
        empty = scope is not None and rows.isEmpty()
        passes = _deequ_passes(df, scope, deequ_checks, empty)
        first_run = _first_run(spark, lh, suite)
        result_ms = int(time.time() * 1000)
        for data, checks in passes:
            for check, passed, message, metric, value in _run_deequ(
                spark, lh, run_id, suite, data, checks, result_ms, first_run
            ):
                examples = () if passed else _examples(data, check)
                by_name[check.name] = result(check, passed, message, metric, value, examples)
        for check in suite.checks:
            if check.name in by_name:
                continue
            if isinstance(check.spec, DayAnomalySpec):
                # Judged even when nothing changed: a day whose rows never came is the point.
                by_name[check.name] = result(check, *day_outcomes[check.name])
                continue
            if empty:
                by_name[check.name] = result(check, True, NOTHING_WRITTEN, None, None)
                continue
            bad, fraction = _run_cross(rows, suite, check, read, scoped=scope is not None)
            threshold = (
                1.0 if isinstance(check.spec, EqualsAggregateSpec) else check.spec.threshold  # type: ignore[attr-defined]
            )
            passed = fraction >= threshold
            message = None if passed else f"Value: {fraction} {UNMET} (>= {threshold})"
            examples = () if passed else tuple(bad.limit(MAX_EXAMPLES).toJSON().collect())
            by_name[check.name] = result(
                check, passed, message, f"{check.kind}_fraction", fraction, examples
            )
    finally:
        if owned:
            rows.unpersist()
    return [by_name[c.name] for c in suite.checks]


UNMET = "does not meet the constraint requirement"
# The message of a row-wise check whose scope is empty: nothing in the table changed.
NOTHING_WRITTEN = "no changed rows to check"


def _day_anomaly(
    spec: DayAnomalySpec, points: list[days.DayPoint]
) -> tuple[bool, str | None, str | None, float | None, tuple[str, ...], str | None]:
    """A `day_anomaly` check's outcome from its points (`days.check_days`): (passed, message,
    metric, value, examples, details). The metric is the fraction of judged days within their
    band; the examples are the flagged days and the details every day of the window with its
    band (the report's chart)."""
    judged = [p for p in points if p.judged]
    flagged = [p for p in judged if p.anomalous]
    metric = f"day_anomaly({spec.value})"
    details = json.dumps([p.to_json() for p in points], default=str, allow_nan=False)
    if not judged:
        checked = [p for p in points if p.checked]
        why = (
            "no day to judge"
            if not checked
            else f"not enough history (fewer than {spec.min_history} earlier days)"
        )
        return True, why, metric, None, (), details
    fraction = 1 - len(flagged) / len(judged)
    if not flagged:
        return True, None, metric, fraction, (), details
    what = spec.value if not spec.where else f"{spec.value} where {spec.where}"
    lines = [days.describe(p, what) for p in flagged[: days.MESSAGE_DAYS]]
    more = len(flagged) - len(lines)
    message = "; ".join(lines) + (f"; and {more} more day(s)" if more > 0 else "")
    examples = tuple(
        json.dumps(p.to_json(), default=str, allow_nan=False) for p in flagged[:MAX_EXAMPLES]
    )
    return False, message, metric, fraction, examples, details


def whole_table(check: CheckSpec) -> bool:
    """Checks about the table as a whole, run on every row even in a scope: sizes, and anomaly
    checks (their history in the metrics repository is of whole tables, `maintain`'s too)."""
    return isinstance(check.spec, (SizeSpec, AnomalySpec))


def _deequ_passes(
    df: DataFrame, scope: DataFrame | None, checks: list[CheckSpec], empty: bool
) -> list[tuple[DataFrame, list[CheckSpec]]]:
    """The Deequ passes of a suite: (data, its checks), see `run_suite`."""
    if scope is None:
        return [(df, checks)] if checks else []
    passes = [(df, [c for c in checks if whole_table(c)])]
    if not empty:
        passes.append(
            (
                scope,
                [c for c in checks if not whole_table(c) and c.kind != "uniqueness"],
            )
        )
        by_key: dict[tuple[str, ...], list[CheckSpec]] = {}
        for check in checks:
            if isinstance(check.spec, UniquenessSpec):
                by_key.setdefault(check.spec.columns, []).append(check)
        for columns, unique in by_key.items():
            passes.append((keyed_rows(df, scope, columns), unique))
    return [(data, group) for data, group in passes if group]


def cross_kinds() -> tuple[str, ...]:
    return ("exists_in", "reconciles", "equals_aggregate")


def _run_cross(
    df: DataFrame, suite: Suite, check: CheckSpec, read: cross.Reader, scoped: bool
) -> tuple[DataFrame, float]:
    """A cross-table check of `df` (the suite's rows, or its scope when `scoped`: then only the
    keys the scope holds are compared)."""
    spec = check.spec
    if isinstance(spec, ExistsInSpec):
        return cross.exists_in(df, spec, read, scoped=scoped)
    if isinstance(spec, ReconcilesSpec):
        keys = None
        left_key = spec.left.key or spec.key
        if scoped and spec.left.table in (None, suite.full_name) and left_key in df.columns:
            keys = df.select(F.col(left_key).alias(spec.key)).distinct()
        return cross.reconciles(suite.full_name, spec, read, keys=keys)
    assert isinstance(spec, EqualsAggregateSpec)
    keys = df.select(spec.key).distinct() if scoped else None
    return cross.equals_aggregate(df, suite.full_name, spec, read, keys=keys)


def row_predicate(check: CheckSpec) -> str | None:
    """The SQL condition each row must meet for row-wise kinds (None for the others)."""
    spec = check.spec
    if isinstance(spec, CompletenessSpec):
        return f"`{spec.column}` IS NOT NULL"
    if isinstance(spec, AllowedSpec):
        values = ", ".join(sql_literal(v) for v in _allowed_values(spec))
        return f"`{spec.column}` IS NULL OR `{spec.column}` IN ({values})"
    if isinstance(spec, RangeSpec):
        bounds = []
        if spec.min is not None:
            bounds.append(f"`{spec.column}` >= {sql_literal(spec.min)}")
        if spec.max is not None:
            bounds.append(f"`{spec.column}` <= {sql_literal(spec.max)}")
        return f"`{spec.column}` IS NULL OR ({' AND '.join(bounds)})"
    if isinstance(spec, NonNegativeSpec):
        return f"`{spec.column}` IS NULL OR `{spec.column}` >= 0"
    if isinstance(spec, SqlSpec):
        return spec.expression
    return None


def _allowed_values(spec: AllowedSpec) -> tuple[str, ...]:
    if spec.values is None:
        # `load_suite` fills omitted values from the table spec or fails.
        raise ValueError(f"allowed check on {spec.column!r} has no values: load it with load_suite")
    return spec.values


def _examples(df: DataFrame, check: CheckSpec) -> tuple[str, ...]:
    """Up to `MAX_EXAMPLES` offending rows as JSON, for kinds that have offending rows."""
    predicate = row_predicate(check)
    if predicate is not None:
        bad = df.where(~F.coalesce(F.expr(f"({predicate})"), F.lit(False)))
    elif isinstance(check.spec, UniquenessSpec):
        cols = list(check.spec.columns)
        bad = df.groupBy(*cols).count().where(F.col("count") > 1)
    else:
        return ()
    return tuple(bad.limit(MAX_EXAMPLES).toJSON().collect())


def _add_constraint(check_obj: Any, check: CheckSpec) -> Any:
    spec = check.spec
    hint = check.name
    if isinstance(spec, SizeSpec):
        lo, hi = spec.min, spec.max
        return check_obj.hasSize(
            lambda x: (lo is None or x >= lo) and (hi is None or x <= hi), hint
        )
    threshold = spec.threshold  # type: ignore[attr-defined]

    def at_least(x: float) -> bool:
        return x >= threshold

    if isinstance(spec, CompletenessSpec):
        return check_obj.hasCompleteness(spec.column, at_least, hint)
    if isinstance(spec, UniquenessSpec):
        return check_obj.hasUniqueness(list(spec.columns), at_least, hint)
    if isinstance(spec, AllowedSpec):
        values = [str(v) for v in _allowed_values(spec)]
        return check_obj.isContainedIn(spec.column, values, at_least, hint)
    if isinstance(spec, NonNegativeSpec):
        return check_obj.isNonNegative(spec.column, at_least, hint)
    predicate = row_predicate(check)
    assert predicate is not None
    return check_obj.satisfies(predicate, check.name, at_least, hint)


def _scala_map(spark: SparkSession, values: Mapping[str, str]) -> Any:
    jvm = spark._jvm
    assert jvm is not None
    java_map = jvm.java.util.HashMap()
    for k, v in values.items():
        java_map.put(k, v)
    return (
        jvm.scala.collection.JavaConverters.mapAsScalaMapConverter(java_map)
        .asScala()
        .toMap(jvm.scala.Predef.conforms())
    )


def _first_run(spark: SparkSession, lh: Lakehouse, suite: Suite) -> bool:
    """Whether the metrics repository holds no earlier result of this table (only asked when
    the suite has an anomaly check)."""
    if not any(isinstance(c.spec, AnomalySpec) for c in suite.checks):
        return False
    from pydeequ.repository import FileSystemMetricsRepository

    repository = FileSystemMetricsRepository(spark, metrics_path(lh))
    loaded = repository.repository.load().withTagValues(
        _scala_map(spark, {"table": suite.full_name})
    )
    return bool(loaded.get().isEmpty())


def _run_deequ(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    suite: Suite,
    df: DataFrame,
    checks: list[CheckSpec],
    result_ms: int,
    first_run: bool,
) -> list[tuple[CheckSpec, bool, str | None, str | None, float | None]]:
    """One `VerificationSuite.run` for the given Deequ and anomaly checks of the suite. Each
    check is its own Deequ `Check` (description = check name) with a single constraint, so
    results map back by name. The passes of one suite share the metrics repository key
    `result_ms` (Deequ appends to it); `first_run`: the repository has no result of this table
    yet, so an anomaly check only stores its metric."""
    from pydeequ.analyzers import Completeness, Size
    from pydeequ.anomaly_detection import RelativeRateOfChangeStrategy
    from pydeequ.checks import Check, CheckLevel
    from pydeequ.repository import FileSystemMetricsRepository, ResultKey
    from pydeequ.verification import VerificationSuite

    jvm = spark._jvm
    assert jvm is not None
    repository = FileSystemMetricsRepository(spark, metrics_path(lh))
    key = ResultKey(
        spark,
        result_ms,
        {"table": suite.full_name, "layer": suite.layer, "run_id": run_id},
    )
    builder = VerificationSuite(spark).onData(df).useRepository(repository).saveOrAppendResult(key)
    for check in checks:
        level = CheckLevel.Error if check.severity == "error" else CheckLevel.Warning
        if isinstance(check.spec, AnomalySpec) and first_run:
            # Deequ fails an anomaly check without history; on a table's first run the metric
            # is only computed and stored (an always-true constraint), so the next run has one.
            first = Check(spark, level, check.name)
            if check.spec.metric == "size":
                builder.addCheck(first.hasSize(lambda _: True, "first run: no history yet"))
            else:
                builder.addCheck(
                    first.hasCompleteness(
                        check.spec.column, lambda _: True, "first run: no history yet"
                    )
                )
        elif isinstance(check.spec, AnomalySpec):
            spec = check.spec
            strategy = RelativeRateOfChangeStrategy(
                maxRateDecrease=spec.max_rate_decrease, maxRateIncrease=spec.max_rate_increase
            )
            strategy._set_jvm(jvm)
            analyzer = Size() if spec.metric == "size" else Completeness(spec.column)
            analyzer._set_jvm(jvm)
            jlevel = (
                jvm.com.amazon.deequ.checks.CheckLevel.Error()
                if check.severity == "error"
                else jvm.com.amazon.deequ.checks.CheckLevel.Warning()
            )
            # pydeequ 1.7 refuses an AnomalyCheckConfig; without one the history would mix
            # tables, so the config (history filtered by this table's tag) is built in the JVM.
            config = jvm.com.amazon.deequ.AnomalyCheckConfig(
                jlevel,
                check.name,
                _scala_map(spark, {"table": suite.full_name}),
                jvm.scala.Option.apply(None),
                jvm.scala.Option.apply(None),
            )
            builder._VerificationRunBuilder.addAnomalyCheck(
                strategy._anomaly_jvm, analyzer._analyzer_jvm, jvm.scala.Option.apply(config)
            )
        else:
            builder.addCheck(_add_constraint(Check(spark, level, check.name), check))
    jresult = builder.run().verificationRun
    outcomes: dict[str, tuple[bool, str | None, str | None, float | None]] = {}
    iterator = jresult.checkResults().values().iterator()
    while iterator.hasNext():
        check_result = iterator.next()
        name = check_result.check().description()
        constraint = check_result.constraintResults().apply(0)
        passed = constraint.status().toString() == "Success"
        message = None
        if not passed and constraint.message().isDefined():
            message = str(constraint.message().get())
        metric_name, value = None, None
        if constraint.metric().isDefined():
            metric = constraint.metric().get()
            instance = metric.instance()
            metric_name = metric.name() if instance == "*" else f"{metric.name()}({instance})"
            if metric.value().isSuccess():
                value = float(metric.value().get())
            elif not passed and message is None:
                message = str(metric.value().failed().get().getMessage())
        outcomes[name] = (passed, message, metric_name, value)
    return [(c, *outcomes[c.name]) for c in checks]
