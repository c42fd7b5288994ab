"""Registering every Delta table in the Spark catalog as `bronze.*`, `silver.*`, `gold.*`,
`quality.*`, `ledger.*`, `quarantine.*` and `audit.*` (erasure requests), so SQL and notebooks
find them by name. The databases carry the environment's `catalog.database_prefix`
(`lakehouse_dev_gold.daily_kpis` on dev; none locally): `Lakehouse.catalog_name`.

Locally the catalog is Spark's in-memory one (registration lasts for the session, so every
session registers again); on EMR the cluster's configuration makes it the Glue Data Catalog and
registration is persistent. Tables are external: dropping a name never deletes data.

The gold tables are views, not tables: `gold.<table>` is `SELECT * FROM delta.`<location>`
VERSION AS OF <n>`, pinned to the table's version in the newest *published set*
(`lakehouse.gold.published`), so a SQL reader of the catalog sees what the dashboard sees and
never a stopped run's half publish. `register_tables` re-points them; it runs at the end of
every pipeline run and backfill (after gold's publish) and of `lakehouse maintain`, `erase` and
`rollback`, which move or restore the published set. A run stopped after its publish and before
its catalog step leaves the views on the previous set, which is whole; the rerun re-points them.
Each view keeps the location and version it is pinned to as table properties
(`lakehouse.location`, `lakehouse.published_version`), so an unchanged one is left alone. A
gold name registered as a table (before views) is dropped and made a view. The other layers'
names are tables at their locations (their newest versions). Athena cannot read Spark views:
`lakehouse emr athena` registers gold for it (`lakehouse.emr.athena`, docs/EMR.md).
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.core.config import LAYERS, join_uri
from lakehouse.core.context import Lakehouse
from lakehouse.core.delta_io import current_version
from lakehouse.gold.published import published_versions

PINNED_LOCATION = "lakehouse.location"
PINNED_VERSION = "lakehouse.published_version"


def table_locations(spark: SparkSession, lh: Lakehouse) -> dict[str, str]:
    """`layer.table` → location, for every Delta table under the lakehouse root."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    found: dict[str, str] = {}
    for layer in LAYERS:
        root = join_uri(lh.root, layer)
        path = jvm.org.apache.hadoop.fs.Path(root)
        fs = path.getFileSystem(hconf)
        if not fs.exists(path):
            continue
        for status in fs.listStatus(path):
            name = status.getPath().getName()
            location = join_uri(root, name)
            if (
                status.isDirectory()
                and not name.startswith(".")
                and DeltaTable.isDeltaTable(spark, location)
            ):
                found[f"{layer}.{name.lstrip('_')}"] = location
    return found


def register_tables(spark: SparkSession, lh: Lakehouse) -> list[str]:
    """Create the missing databases, register each table the catalog does not know yet at its
    location and point each gold view at its published version (`point_gold_views`); returns
    the names registered or re-pointed.

    A table name already in the catalog is left as it is: `CREATE TABLE IF NOT EXISTS` on a
    registered Delta table still reads its log to check the schema, which cost several Spark
    jobs per table on every run for nothing."""
    locations = {lh.catalog_name(n): loc for n, loc in table_locations(spark, lh).items()}
    gold = {lh.catalog_name(f"gold.{t}") for t in lh.gold}
    known = _catalog(spark, {n.split(".", 1)[0] for n in locations})
    names = []
    for name, location in sorted(locations.items()):
        if name in gold or name in known:
            continue
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{_literal(location)}'")
        names.append(name)
    views = {n: loc for n, loc in locations.items() if n in gold}
    return names + point_gold_views(spark, lh, views, known)


def point_gold_views(
    spark: SparkSession,
    lh: Lakehouse,
    locations: dict[str, str],
    known: dict[str, str] | None = None,
) -> list[str]:
    """Make each gold view of `locations` (catalog name, `gold.<table>` or with the environment's
    prefix, -> location) a view of that location at the table's version in the newest published
    set (its newest version when no set records it); returns the names created or re-pointed.
    `known`: name -> catalog table type, when the caller listed the catalog already."""
    if known is None:
        known = _catalog(spark, {lh.config.catalog.database("gold")})
    published = published_versions(spark, lh) if locations else {}
    changed = []
    for name, location in sorted(locations.items()):
        table = name.split(".", 1)[1]
        version = published.get(table)
        if version is None:
            version = current_version(spark, location)
        kind = known.get(name)
        if kind == "VIEW" and pinned_to(spark, name) == (location, version):
            continue
        if kind is not None and kind != "VIEW":
            spark.sql(f"DROP TABLE {name}")  # external: the data stays
        spark.sql(
            f"CREATE OR REPLACE VIEW {name} "
            f"COMMENT 'gold.{table} as published (lakehouse.gold.published)' "
            f"TBLPROPERTIES ('{PINNED_LOCATION}' = '{_literal(location)}', "
            f"'{PINNED_VERSION}' = '{version}') "
            f"AS SELECT * FROM delta.`{location.replace('`', '``')}` VERSION AS OF {version}"
        )
        changed.append(name)
    return changed


def pinned_to(spark: SparkSession, view: str) -> tuple[str, int] | None:
    """The location and version a gold view is pinned to (None: not one of ours)."""
    props = {r[0]: r[1] for r in spark.sql(f"SHOW TBLPROPERTIES {view}").collect()}
    if PINNED_LOCATION not in props or PINNED_VERSION not in props:
        return None
    return props[PINNED_LOCATION], int(props[PINNED_VERSION])


def _catalog(spark: SparkSession, databases: set[str]) -> dict[str, str]:
    """`database.name` -> table type (`EXTERNAL`, `MANAGED`, `VIEW`) of what the catalog holds in
    `databases`, creating the databases it does not have."""
    known: dict[str, str] = {}
    for database in sorted(databases):
        if spark.catalog.databaseExists(database):
            known |= {
                f"{database}.{t.name}": str(t.tableType)
                for t in spark.catalog.listTables(database)
                if not t.isTemporary
            }
        else:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    return known


def _literal(text: str) -> str:
    """`text` for the inside of a single-quoted Spark SQL string."""
    return text.replace("\\", "\\\\").replace("'", "\\'")
