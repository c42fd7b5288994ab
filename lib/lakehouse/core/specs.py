"""Table specs: one file per table tells its whole story, parsed and checked at load.

A source table (`conf/tables/<name>.yaml`) names how its landing files are delivered (`landing`:
format, snapshot or not, the CSV columns it requires), the bronze source, the key, how versions
are ordered (`kind`), the typed columns and their rules, partitioning, its parent and what a
parent's delete does to it, personal data, whether SCD type 2 history is kept, its quality suite
and the Z-order columns of `lakehouse maintain`. A gold table (`conf/gold/<name>.yaml`) names the
silver tables it reads, its key, the column an incremental run replaces by, its quality suite and
its Z-order columns. The engines read these specs; none of them tests a table's name.

Kinds:

- `cdc`: CDC JSON lines, newest `lsn` per key wins, deletes leave a tombstone;
- `events`: one row per event, deduplicated by key, the newest `order_by` value wins;
- `snapshot`: a full snapshot per `ingest_date`; absent from a newer snapshot means inactive;
- `corrections`: a later delivery (`ingest_date`, then file and line) replaces an earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lakehouse.core.config import DEFAULT_CONF_DIR, ConfigError, TableMaintenance, load_typed_yaml

SUITE_RE = re.compile(r"^(silver|gold)\.[a-z][a-z0-9_]*$")

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
    # The landing contract version that added the column (docs/CONTRACTS.md): a lakehouse
    # configured for an older version (`contract.version`) leaves it out of silver and gold.
    since: int = 1


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
class LandingSpec:
    """How the source's files are delivered (landing contract): CDC JSON lines, plain JSON lines
    or CSV with a header. `snapshot: true` means each delivery is a full snapshot, so an unchanged
    record in a newer delivery is a new record, not a duplicate. A CSV file that lacks one of
    `required_columns` is quarantined whole."""

    format: Literal["cdc", "jsonl", "csv"]
    snapshot: bool = False
    required_columns: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ParentSpec:
    """A parent table this one takes columns from (order_items take `order_date` from orders),
    joined on `key`. `on_delete: cascade` tombstones this table's rows of a parent the parent's
    CDC deletes, whether or not their own deletes were delivered; `keep` leaves them."""

    table: str
    key: str
    columns: tuple[str, ...]
    on_delete: Literal["cascade", "keep"] = "keep"


@dataclass(frozen=True)
class TableSpec:
    """A source table: its landing, bronze and silver story (see the module docstring)."""

    name: str
    source: str
    landing: LandingSpec
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
    # The quality suite of `silver.<name>`: `conf/quality/<quality>.yaml`; none when unset.
    quality: str | None = None

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def added_columns(self) -> tuple[str, ...]:
        """Silver columns a contract version after the first added (`since` > 1), personal data
        left out: what gold carries along as it is (`gold.star.fact_orders`)."""
        return tuple(c.name for c in self.columns if c.since > 1 and c.name not in self.pii.fields)

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


# Columns of a bronze record (and of a snapshot table) that a declared column may not shadow.
RESERVED_COLUMNS = ("raw", "fields", "ingest_date", "snapshot_date", "inactive_from")


def _check(spec: TableSpec, path: Path) -> TableSpec:
    names = [c.name for c in spec.columns]
    for name in [*names, *spec.derived]:
        if name.startswith("_") or name in RESERVED_COLUMNS:
            raise ConfigError(
                f"{path}: column '{name}' is reserved (bronze and silver keep their own "
                f"{', '.join(RESERVED_COLUMNS)} and every column starting with '_')"
            )
    for c in spec.columns:
        if c.type not in TYPES and not DECIMAL_RE.match(c.type):
            raise ConfigError(
                f"{path}: column '{c.name}': type '{c.type}' is not one of "
                f"{', '.join(TYPES)} or decimal(p,s)"
            )
    for key in spec.keys:
        if key not in names:
            raise ConfigError(f"{path}: key '{key}' is not a declared column")
    for c in spec.columns:
        if c.since < 1:
            raise ConfigError(f"{path}: column '{c.name}': since must be a contract version >= 1")
        if c.since > 1 and (c.name in spec.keys or c.name in spec.partition_by):
            raise ConfigError(
                f"{path}: column '{c.name}' (since version {c.since}) is a key or partition "
                "column: the rows landed before its contract version have none, so a later "
                "version can only add ordinary columns (docs/CONTRACTS.md)"
            )
        if c.since > 1 and c.required:
            raise ConfigError(
                f"{path}: column '{c.name}' (since version {c.since}) is required: records of "
                "earlier versions (late re-deliveries, replays) have none and would all be "
                "quarantined; declare it optional and check it in the quality suite instead "
                "(docs/CONTRACTS.md)"
            )
    if spec.kind in ("events", "snapshot") and spec.order_by not in names:
        raise ConfigError(f"{path}: kind '{spec.kind}' needs order_by naming a column")
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


def load_tables(
    conf_dir: str | Path | None = None, contract_version: int = 1
) -> dict[str, TableSpec]:
    """Every source table spec by name, in dependency order (parents first), with the columns
    of landing contract `contract_version`: a column declared `since` a later version is left
    out (docs/CONTRACTS.md)."""
    if contract_version < 1:
        raise ConfigError(f"contract.version: {contract_version} is not a version (1, 2, ...)")
    conf = Path(conf_dir or DEFAULT_CONF_DIR)
    folder = conf / "tables"
    specs: dict[str, TableSpec] = {}
    paths: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = _check(load_typed_yaml(path, TableSpec), path)
        spec = replace(spec, columns=tuple(c for c in spec.columns if c.since <= contract_version))
        if spec.name != path.stem:
            raise ConfigError(f"{path}: name '{spec.name}' differs from the file name")
        _check_suite(spec.quality, conf, path)
        specs[spec.name] = spec
        paths[spec.name] = path
    sources = [s.source for s in specs.values()]
    for name, spec in specs.items():
        if sources.count(spec.source) > 1:
            raise ConfigError(f"{paths[name]}: source '{spec.source}' feeds another table too")
        if spec.parent is not None and spec.parent.table not in specs:
            raise ConfigError(
                f"{paths[name]}: parent.table '{spec.parent.table}' is not a table of {folder}"
            )
    ordered = [s for s in specs.values() if s.parent is None]
    ordered += [s for s in specs.values() if s.parent is not None]
    return {s.name: s for s in ordered}


def landing_sources(tables: dict[str, TableSpec]) -> dict[str, LandingSpec]:
    """The landing contract's sources as bronze sees them: source name -> how it is delivered."""
    return {spec.source: spec.landing for spec in tables.values()}


def children_of(tables: dict[str, TableSpec], parent: str) -> list[TableSpec]:
    """The tables whose parent is `parent` and whose rows follow the parent's deletes."""
    return [
        s
        for s in tables.values()
        if s.parent is not None and s.parent.table == parent and s.parent.on_delete == "cascade"
    ]


@dataclass(frozen=True)
class GoldSpec:
    """A gold table: the silver tables it reads, its key, and `scope`: the column whose affected
    values an incremental run recomputes and replaces (none: the table is rebuilt whole when its
    inputs change). Its transform is the function of the same name in `lakehouse.gold`."""

    name: str
    description: str
    inputs: tuple[str, ...]
    keys: tuple[str, ...]
    scope: str | None = None
    maintenance: TableMaintenance = field(default_factory=TableMaintenance)
    quality: str | None = None


def load_gold(
    conf_dir: str | Path | None = None, tables: dict[str, TableSpec] | None = None
) -> dict[str, GoldSpec]:
    """Every gold table spec (`conf/gold/*.yaml`) by name, in file-name order; with `tables`,
    every input must be one of them or one's SCD2 history."""
    conf = Path(conf_dir or DEFAULT_CONF_DIR)
    known = set(tables) if tables is not None else None
    specs: dict[str, GoldSpec] = {}
    for path in sorted((conf / "gold").glob("*.yaml")):
        spec = load_typed_yaml(path, GoldSpec)
        if spec.name != path.stem:
            raise ConfigError(f"{path}: name '{spec.name}' differs from the file name")
        if known is not None:
            history = {f"{t}_history" for t in known}
            unknown = [t for t in spec.inputs if t not in known | history]
            if unknown:
                raise ConfigError(f"{path}: inputs: no silver table {', '.join(unknown)}")
        _check_suite(spec.quality, conf, path)
        specs[spec.name] = spec
    return specs


def _check_suite(suite: str | None, conf: Path, path: Path) -> None:
    if suite is None:
        return
    if not SUITE_RE.match(suite):
        raise ConfigError(f"{path}: quality: '{suite}' is not a suite name layer.table")
    if not (conf / "quality" / f"{suite}.yaml").is_file():
        raise ConfigError(f"{path}: quality: no suite file {conf / 'quality' / suite}.yaml")
