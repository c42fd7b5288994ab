"""Quality suites: `conf/quality/<layer>.<table>.yaml`, parsed strictly into frozen dataclasses.

A suite lists checks; each check has a unique `name`, a `severity` (`error` stops publishing,
`warning` is reported only) and exactly one kind section:

- Deequ checks, run in one `VerificationSuite` pass per table: `size` (min/max rows),
  `completeness` (column, threshold), `uniqueness` (columns, threshold), `allowed` (column,
  values; without `values`, those the table spec `conf/tables/<table>.yaml` declares for the
  column), `range` (column, min/max), `non_negative` (column), `sql` (a Spark SQL boolean
  expression that must hold for a `threshold` fraction of rows, all of them by default) and
  `anomaly` (Deequ anomaly detection over the metrics repository's history of this table).
- Cross-table checks, computed with Spark joins: `exists_in`, `reconciles`, `equals_aggregate`.
- `day_anomaly`: a metric per day (orders, revenue, records per source) against the median of
  its own recent days, so a missing, short or doubled day is flagged (`quality.days`).

Any mistake fails at load with a `ConfigError` naming the file, the check and what is wrong.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from lakehouse.core.config import DEFAULT_CONF_DIR, ConfigError, load_typed_yaml
from lakehouse.core.context import Lakehouse
from lakehouse.core.specs import TableSpec

Severity = Literal["error", "warning"]
Fail = Callable[..., ConfigError]
LAYERS = ("bronze", "silver", "gold")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
TABLE_RE = re.compile(r"^(silver|gold)\.[a-z][a-z0-9_]*$")
# The one bronze suite: what landed per source and ingest day (`quality.days.landing_view`).
LANDING_SUITE = "bronze.landing"


@dataclass(frozen=True)
class SizeSpec:
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class CompletenessSpec:
    column: str
    threshold: float = 1.0


@dataclass(frozen=True)
class UniquenessSpec:
    columns: tuple[str, ...]
    threshold: float = 1.0


@dataclass(frozen=True)
class AllowedSpec:
    """`column` holds one of `values` (or null). A suite may leave `values` out: a loaded suite
    then carries the column's `allowed` list of the table spec (see `load_suite`)."""

    column: str
    values: tuple[str, ...] | None = None
    threshold: float = 1.0


@dataclass(frozen=True)
class RangeSpec:
    column: str
    min: float | None = None
    max: float | None = None
    threshold: float = 1.0


@dataclass(frozen=True)
class NonNegativeSpec:
    column: str
    threshold: float = 1.0


@dataclass(frozen=True)
class SqlSpec:
    expression: str
    threshold: float = 1.0


@dataclass(frozen=True)
class ExistsInSpec:
    """Every non-null `column` of this table exists as `ref_column` (default: same name) of
    `table`."""

    column: str
    table: str
    ref_column: str | None = None
    threshold: float = 1.0


@dataclass(frozen=True)
class SideSpec:
    """One side of a comparison: rows of `table` (default: the suite's table) kept by `where`,
    summed as the SQL expression `value`, grouped by `key` (default: the check's key)."""

    value: str
    table: str | None = None
    where: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class ReconcilesSpec:
    """Per `key` present on the left, |sum(left) - sum(right)| <= `tolerance` (right missing
    counts as 0) for a `threshold` fraction of keys."""

    key: str
    left: SideSpec
    right: SideSpec
    tolerance: float = 0.01
    threshold: float = 1.0


@dataclass(frozen=True)
class EqualsAggregateSpec:
    """This table's `column` equals `source`'s sum rounded half-up to `decimals`, per `key`; a key
    on only one side is a mismatch (a missing source sum counts as 0)."""

    column: str
    key: str
    source: SideSpec
    decimals: int = 2


@dataclass(frozen=True)
class AnomalySpec:
    metric: Literal["size", "completeness"]
    strategy: Literal["relative_rate_of_change"]
    column: str | None = None
    max_rate_increase: float | None = None
    max_rate_decrease: float | None = None


@dataclass(frozen=True)
class DayAnomalySpec:
    """A day-level metric against its own recent history (`quality.days`): `value`, a SQL
    aggregate over the rows kept by `where`, per `date_column` day (and per `group_by` value);
    each day the run touched is compared with the median of the `history_days` days before it,
    and flagged below `median * (1 - max_decrease) - slack` or above
    `median * (1 + max_increase) + slack`. A day with fewer than `min_history` earlier days
    is not judged. A day (or group) with no rows counts as 0 (`missing: zero`), so a day that
    never came is flagged, or is left out (`missing: skip`, for rates)."""

    date_column: str
    value: str = "count(*)"
    where: str | None = None
    group_by: str | None = None
    history_days: int = 28
    min_history: int = 7
    max_decrease: float | None = None
    max_increase: float | None = None
    slack: float = 0.0
    missing: Literal["zero", "skip"] = "zero"


DEEQU_KINDS = ("size", "completeness", "uniqueness", "allowed", "range", "non_negative", "sql")
CROSS_KINDS = ("exists_in", "reconciles", "equals_aggregate")
KINDS = (*DEEQU_KINDS, "anomaly", *CROSS_KINDS, "day_anomaly")


@dataclass(frozen=True)
class CheckSpec:
    name: str
    severity: Severity = "error"
    description: str | None = None
    size: SizeSpec | None = None
    completeness: CompletenessSpec | None = None
    uniqueness: UniquenessSpec | None = None
    allowed: AllowedSpec | None = None
    range: RangeSpec | None = None
    non_negative: NonNegativeSpec | None = None
    sql: SqlSpec | None = None
    anomaly: AnomalySpec | None = None
    exists_in: ExistsInSpec | None = None
    reconciles: ReconcilesSpec | None = None
    equals_aggregate: EqualsAggregateSpec | None = None
    day_anomaly: DayAnomalySpec | None = None

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> object:
        return getattr(self, self.kind)


@dataclass(frozen=True)
class Suite:
    layer: Literal["bronze", "silver", "gold"]
    table: str
    checks: tuple[CheckSpec, ...] = field(default_factory=tuple)
    description: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.layer}.{self.table}"


def suite_path(table: str, conf_dir: str | Path | None = None) -> Path:
    """`<conf>/quality/<layer>.<table>.yaml` for a table named `layer.table`."""
    return (
        Path(conf_dir if conf_dir is not None else DEFAULT_CONF_DIR) / "quality" / f"{table}.yaml"
    )


def load_suite(path: str | Path, tables: Mapping[str, TableSpec] | None = None) -> Suite:
    """Parse and validate one suite file. An `allowed` check without `values` takes them from
    the column of the silver table's spec in `tables` (source table specs by name); without
    `tables`, or when the spec declares no allowed values for the column, loading fails."""
    path = Path(path)
    try:
        suite = load_typed_yaml(path, Suite)
    except ConfigError as exc:
        raise ConfigError(_name_checks(str(exc), path)) from None
    _validate(suite, path)
    return _with_allowed_values(suite, path, tables)


def load_suites(lh: Lakehouse, tables: list[str] | tuple[str, ...]) -> list[Suite]:
    """The suites of `tables` (names `layer.table`) from the lakehouse's configuration folder
    (`<conf_dir>/quality/<layer>.<table>.yaml`), in order; a table without a file fails."""
    return [load_suite(suite_path(t, lh.config.conf_dir), lh.tables) for t in tables]


def _name_checks(message: str, path: Path) -> str:
    """Put the check's name after the file in a parse error about `checks[i]`."""
    match = re.search(r"checks\[(\d+)\]", message)
    if not match:
        return message
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        item = (raw.get("checks") or [])[int(match.group(1))]
        name = item.get("name") if isinstance(item, dict) else None
    except (OSError, yaml.YAMLError, AttributeError, IndexError, TypeError):
        return message
    if not name:
        return message
    prefix = f"{path}: "
    if message.startswith(prefix):
        return f"{prefix}check '{name}': {message[len(prefix) :]}"
    return f"{message} (check '{name}')"


def _validate(suite: Suite, path: Path) -> None:
    def fail(what: str, check: CheckSpec | None = None) -> ConfigError:
        where = f"check '{check.name}'" if check else "suite"
        return ConfigError(f"{path}: {where}: {what}")

    if not NAME_RE.match(suite.table):
        raise fail(f"table {suite.table!r} is not a snake_case name")
    if suite.layer == "bronze" and suite.full_name != LANDING_SUITE:
        raise fail(f"the only bronze suite is {LANDING_SUITE} (what landed per source and day)")
    if path.name != f"{suite.full_name}.yaml":
        raise fail(f"file must be named {suite.full_name}.yaml for layer/table {suite.full_name}")
    seen: set[str] = set()
    for check in suite.checks:
        if not NAME_RE.match(check.name):
            raise fail("name must be snake_case (a-z, 0-9, _)", check)
        if check.name in seen:
            raise fail("name is used by another check of this suite", check)
        seen.add(check.name)
        kinds = [k for k in KINDS if getattr(check, k) is not None]
        if len(kinds) != 1:
            raise fail(
                f"needs exactly one kind of {', '.join(KINDS)}; got {', '.join(kinds) or 'none'}",
                check,
            )
        _validate_spec(check, suite, fail)


def _validate_spec(check: CheckSpec, suite: Suite, fail: Fail) -> None:
    spec = check.spec
    threshold = getattr(spec, "threshold", None)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise fail(f"{check.kind}.threshold must be between 0 and 1, got {threshold}", check)
    if isinstance(spec, SizeSpec):
        if spec.min is None and spec.max is None:
            raise fail("size needs min or max", check)
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            raise fail(f"size.min {spec.min} is greater than size.max {spec.max}", check)
    elif isinstance(spec, RangeSpec):
        if spec.min is None and spec.max is None:
            raise fail("range needs min or max", check)
        if spec.min is not None and spec.max is not None and spec.min > spec.max:
            raise fail(f"range.min {spec.min} is greater than range.max {spec.max}", check)
    elif isinstance(spec, UniquenessSpec) and not spec.columns:
        raise fail("uniqueness.columns must list at least one column", check)
    elif isinstance(spec, AllowedSpec) and spec.values is not None and not spec.values:
        raise fail("allowed.values must list at least one value", check)
    elif isinstance(spec, SqlSpec) and not spec.expression.strip():
        raise fail("sql.expression is empty", check)
    elif isinstance(spec, AnomalySpec):
        if spec.metric == "completeness" and not spec.column:
            raise fail("anomaly on completeness needs column", check)
        if spec.max_rate_increase is None and spec.max_rate_decrease is None:
            raise fail("anomaly needs max_rate_increase or max_rate_decrease", check)
    elif isinstance(spec, ExistsInSpec):
        _check_table(spec.table, "exists_in.table", check, fail)
    elif isinstance(spec, ReconcilesSpec):
        for side, s in (("left", spec.left), ("right", spec.right)):
            if s.table is not None:
                _check_table(s.table, f"reconciles.{side}.table", check, fail)
        if spec.tolerance < 0:
            raise fail("reconciles.tolerance must not be negative", check)
    elif isinstance(spec, EqualsAggregateSpec):
        if spec.source.table is not None:
            _check_table(spec.source.table, "equals_aggregate.source.table", check, fail)
        if not 0 <= spec.decimals <= 18:
            raise fail("equals_aggregate.decimals must be between 0 and 18", check)
    elif isinstance(spec, DayAnomalySpec):
        if spec.max_decrease is None and spec.max_increase is None:
            raise fail("day_anomaly needs max_decrease or max_increase", check)
        if spec.max_decrease is not None and not 0 <= spec.max_decrease <= 1:
            raise fail("day_anomaly.max_decrease must be between 0 and 1", check)
        if spec.max_increase is not None and spec.max_increase < 0:
            raise fail("day_anomaly.max_increase must not be negative", check)
        if spec.slack < 0:
            raise fail("day_anomaly.slack must not be negative", check)
        if not 1 <= spec.min_history <= spec.history_days:
            raise fail("day_anomaly.min_history must be between 1 and history_days", check)


def _check_table(name: str, key: str, check: CheckSpec, fail: Fail) -> None:
    if not TABLE_RE.match(name):
        raise fail(f"{key} must be a table named silver.<name> or gold.<name>, got {name!r}", check)


def _with_allowed_values(suite: Suite, path: Path, tables: Mapping[str, TableSpec] | None) -> Suite:
    """`suite` with every `allowed` check that omits `values` given the table spec's."""
    checks = []
    for check in suite.checks:
        spec = check.allowed
        if spec is not None and spec.values is None:
            values = _spec_allowed(suite, check, spec.column, path, tables)
            check = dataclasses.replace(check, allowed=dataclasses.replace(spec, values=values))
        checks.append(check)
    return dataclasses.replace(suite, checks=tuple(checks))


def _spec_allowed(
    suite: Suite,
    check: CheckSpec,
    column: str,
    path: Path,
    tables: Mapping[str, TableSpec] | None,
) -> tuple[str, ...]:
    def fail(what: str) -> ConfigError:
        return ConfigError(f"{path}: check '{check.name}': allowed.values omitted, {what}")

    # The table spec beside the suite: <conf>/quality/silver.x.yaml -> <conf>/tables/x.yaml.
    spec_file = path.parent.parent / "tables" / f"{suite.table}.yaml"
    if suite.layer != "silver":
        raise fail(f"but {suite.full_name} has no table spec to take them from: list them")
    if tables is None:
        raise fail("and no table specs were given to take them from")
    table = tables.get(suite.table)
    if table is None:
        raise fail(f"but there is no table spec {spec_file} to take them from")
    col = next((c for c in table.columns if c.name == column), None)
    if col is None:
        raise fail(f"but '{column}' is not a column of {spec_file}")
    if not col.allowed:
        raise fail(f"but column '{column}' of {spec_file} declares no allowed values")
    return col.allowed
