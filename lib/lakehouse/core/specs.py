"""Silver table definitions (`conf/tables/*.yaml`), parsed and checked at load.

A definition names the bronze source, the key, how versions are ordered (`kind`), the typed
columns and their rules, partitioning, personal data, whether SCD type 2 history is kept and the
Z-order columns of `lakehouse maintain`.
Kinds:

- `cdc`: CDC JSON lines, newest `lsn` per key wins, deletes leave a tombstone;
- `events`: one row per event, deduplicated by key, the newest `order_by` value wins;
- `snapshot`: a full snapshot per `ingest_date`; absent from a newer snapshot means inactive;
- `corrections`: a later delivery (`ingest_date`, then file and line) replaces an earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lakehouse.core.config import DEFAULT_CONF_DIR, ConfigError, TableMaintenance, load_typed_yaml

TYPES = ("string", "int", "long", "boolean", "timestamp", "date")
DECIMAL_RE = re.compile(r"^decimal\((\d+),(\d+)\)$")


@dataclass(frozen=True)
class ColumnSpec:
    """A typed column and its rules; bounds apply to numbers, `scale` is the most decimals."""

    name: str
    type: str
    required: bool = False
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: float | None = None
    max_exclusive: float | None = None
    scale: int | None = None


@dataclass(frozen=True)
class PiiSpec:
    """Personal data of a source: columns hashed or dropped on the way to silver. For erasure
    (`lakehouse.ops.erasure`): `subject` is the column naming the customer a record belongs to, and
    `linked_by` columns tie other records to the same person (a clickstream session)."""

    hash: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    subject: str | None = None
    linked_by: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """Every personal field of the source's records."""
        return (*self.hash, *self.drop)


@dataclass(frozen=True)
class ParentSpec:
    """A parent table this one takes columns from (order_items take `order_date` from orders)."""

    table: str
    key: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    name: str
    source: str
    kind: Literal["cdc", "events", "snapshot", "corrections"]
    keys: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    order_by: str | None = None
    partition_by: tuple[str, ...] = ()
    derived: dict[str, str] = field(default_factory=dict)
    history: Literal["current", "scd2"] = "current"
    pii: PiiSpec = field(default_factory=PiiSpec)
    parent: ParentSpec | None = None
    maintenance: TableMaintenance = field(default_factory=TableMaintenance)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Business columns of the silver table, in order: personal data hashed or dropped."""
        out: list[str] = []
        for c in self.columns:
            if c.name in self.pii.drop:
                continue
            out.append(f"{c.name}_hash" if c.name in self.pii.hash else c.name)
        out.extend(self.derived)
        if self.parent:
            out.extend(c for c in self.parent.columns if c not in out)
        return tuple(out)


def _check(spec: TableSpec, path: Path) -> TableSpec:
    names = [c.name for c in spec.columns]
    for c in spec.columns:
        if c.type not in TYPES and not DECIMAL_RE.match(c.type):
            raise ConfigError(
                f"{path}: column '{c.name}': type '{c.type}' is not one of "
                f"{', '.join(TYPES)} or decimal(p,s)"
            )
    for key in spec.keys:
        if key not in names:
            raise ConfigError(f"{path}: key '{key}' is not a declared column")
    if spec.kind == "events" and spec.order_by not in names:
        raise ConfigError(f"{path}: kind 'events' needs order_by naming a column")
    for p in spec.partition_by:
        parent_cols = spec.parent.columns if spec.parent else ()
        if p not in names and p not in spec.derived and p not in parent_cols:
            raise ConfigError(f"{path}: partition column '{p}' is neither a column nor derived")
    for col in (*spec.pii.hash, *spec.pii.drop):
        if col not in names:
            raise ConfigError(f"{path}: personal-data column '{col}' is not a declared column")
    linking = [spec.pii.subject] if spec.pii.subject else []
    for col in [*linking, *spec.pii.linked_by]:
        if col not in names:
            raise ConfigError(f"{path}: pii: column '{col}' is not a declared column")
    silver_columns = spec.output_columns
    for col in spec.maintenance.zorder_by:
        if col in spec.partition_by:
            raise ConfigError(
                f"{path}: maintenance.zorder_by: '{col}' is a partition column (Delta Z-orders "
                "files inside a partition, never by its partition columns)"
            )
        if col not in silver_columns:
            raise ConfigError(
                f"{path}: maintenance.zorder_by: '{col}' is not a column of silver.{spec.name} "
                f"(columns: {', '.join(silver_columns)})"
            )
        if col.removesuffix("_hash") in spec.pii.hash:
            raise ConfigError(
                f"{path}: maintenance.zorder_by: '{col}' is personal data, which keeps no "
                "statistics (docs/MAINTENANCE.md) and cannot be Z-ordered"
            )
    return spec


def load_tables(conf_dir: str | Path | None = None) -> dict[str, TableSpec]:
    """Every silver table definition by name, in dependency order (parents first)."""
    folder = Path(conf_dir or DEFAULT_CONF_DIR) / "tables"
    specs = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = _check(load_typed_yaml(path, TableSpec), path)
        if spec.name != path.stem:
            raise ConfigError(f"{path}: name '{spec.name}' differs from the file name")
        specs[spec.name] = spec
    ordered = [s for s in specs.values() if s.parent is None]
    ordered += [s for s in specs.values() if s.parent is not None]
    return {s.name: s for s in ordered}
