"""Registering every Delta table in the Spark catalog as `bronze.*`, `silver.*`, `gold.*`,
`quality.*`, `ledger.*`, `quarantine.*` and `audit.*` (erasure requests), so SQL and notebooks
find them by name.

Locally the catalog is Spark's in-memory one (registration lasts for the session, so every
session registers again); on EMR the cluster's configuration makes it the Glue Data Catalog and
registration is persistent. Tables are external: dropping a name never deletes data.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.core.config import join_uri
from lakehouse.core.context import Lakehouse

LAYERS = ("bronze", "silver", "gold", "quality", "ledger", "quarantine", "audit")


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
    """Create the missing databases and register each table the catalog does not know yet at its
    location; returns the names of the tables it registered.

    A name already in the catalog is left as it is: `CREATE TABLE IF NOT EXISTS` on a registered
    Delta table still reads its log to check the schema, which cost several Spark jobs per
    table on every run for nothing."""
    locations = table_locations(spark, lh)
    known: set[str] = set()
    for database in sorted({n.split(".", 1)[0] for n in locations}):
        if spark.catalog.databaseExists(database):
            known |= {f"{database}.{t.name}" for t in spark.catalog.listTables(database)}
        else:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
    names = []
    for name, location in sorted(locations.items()):
        if name in known:
            continue
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{location}'")
        names.append(name)
    return names
