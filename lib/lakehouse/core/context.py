"""The context every engine takes: one `Lakehouse` instead of a configuration here, a root string
there and a conf folder elsewhere.

It holds the environment's configuration, the table specs read from the same configuration
folder (`conf/tables/*.yaml`, `conf/gold/*.yaml`), and the one way from a table name to its
location: `lh.path("silver.orders")`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.core import secrets
from lakehouse.core.config import DEFAULT_CONF_DIR, Config, ConfigError, join_uri, load_config
from lakehouse.core.specs import (
    GoldSpec,
    LandingSpec,
    TableSpec,
    children_of,
    landing_sources,
    load_gold,
    load_tables,
)


@dataclass(frozen=True)
class Lakehouse:
    """Configuration, table specs and paths of one lakehouse (see the module docstring).

    `tables` are the source tables (bronze and silver) in dependency order, parents first;
    `gold` the gold tables."""

    config: Config
    tables: Mapping[str, TableSpec]
    gold: Mapping[str, GoldSpec]

    @classmethod
    def of(cls, config: Config) -> Lakehouse:
        """The lakehouse of `config`, its specs read from the folder the configuration came
        from (so `--conf-dir` reaches the table specs as well as `base.yaml`)."""
        tables = load_tables(config.conf_dir, config.contract.version)
        return cls(config, tables, load_gold(config.conf_dir, tables))

    @classmethod
    def load(
        cls,
        env: str = "local",
        conf_dir: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Lakehouse:
        """`load_config(env, conf_dir, overrides)` and its specs."""
        return cls.of(load_config(env, conf_dir, overrides))

    @property
    def root(self) -> str:
        """The lakehouse root: a local folder or an s3:// URI."""
        return self.config.storage.lakehouse_root

    def path(self, name: str) -> str:
        """Location of the table `layer.table` (`silver.orders`, `ledger.runs`, ...)."""
        layer, sep, table = name.partition(".")
        if not sep or not layer or not table:
            raise ValueError(f"expected a table name layer.table, got {name!r}")
        return join_uri(self.root, layer, table)

    def catalog_name(self, name: str) -> str:
        """The catalog's name of the table `layer.table`: its database carries the environment's
        prefix (`catalog.database_prefix`), e.g. `lakehouse_dev_gold.daily_kpis` on dev."""
        layer, _, table = name.partition(".")
        return f"{self.config.catalog.database(layer)}.{table}"

    def landing_path(self, source: str) -> str:
        """Location of one source's landing folder."""
        return self.config.landing_path(source)

    @property
    def sources(self) -> dict[str, LandingSpec]:
        """The landing contract's sources (bronze tables) by name."""
        return landing_sources(dict(self.tables))

    def table(self, name: str) -> TableSpec:
        """The spec of source table `name` (without its layer)."""
        try:
            return self.tables[name]
        except KeyError:
            raise ConfigError(
                f"no table '{name}' in {self.config.conf_dir}/tables "
                f"(known: {', '.join(self.tables)})"
            ) from None

    def children(self, parent: str) -> list[TableSpec]:
        """Tables whose rows follow `parent`'s deletes (`parent.on_delete: cascade`)."""
        return children_of(dict(self.tables), parent)

    def suites(self, layer: str) -> tuple[str, ...]:
        """The quality suites of a layer's tables (`silver` or `gold`), in table order; for
        `bronze`, the landing suite (`bronze.landing`: what landed per source and day) when its
        file is in the configuration's `quality/` folder."""
        if layer == "bronze":
            conf = Path(self.config.conf_dir) if self.config.conf_dir else DEFAULT_CONF_DIR
            landing = conf / "quality" / "bronze.landing.yaml"
            return ("bronze.landing",) if landing.is_file() else ()
        specs: list[TableSpec | GoldSpec] = list(
            self.tables.values() if layer == "silver" else self.gold.values()
        )
        return tuple(s.quality for s in specs if s.quality)

    def pii_hmac_key(self) -> bytes:
        """The pseudonymisation key (`lakehouse.core.secrets.pii_hmac_key`)."""
        return secrets.pii_hmac_key(self.config)

    def only(self, names: Iterable[str]) -> Lakehouse:
        """The same lakehouse with only the source tables `names` (a run of some sources)."""
        wanted = set(names)
        unknown = wanted - set(self.tables)
        if unknown:
            raise ConfigError(f"no table {', '.join(sorted(unknown))} in {self.config.conf_dir}")
        tables = {n: s for n, s in self.tables.items() if n in wanted}
        return dataclasses.replace(self, tables=tables)

    def with_config(self, **changes: Any) -> Lakehouse:
        """The same specs with configuration sections replaced (a scratch copy's storage)."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))
