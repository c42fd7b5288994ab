"""Gold for Athena (and so QuickSight): every gold table registered in the Glue Data Catalog as a
native Delta Lake table Athena reads, in its own database `<catalog prefix>bi`
(`lakehouse_dev_bi.daily_kpis`), by `lakehouse emr athena --env ENV`.

Why native Delta registration and not symlink manifests: Athena (engine version 3) reads a Delta
table's transaction log itself when its Glue table says `table_type = DELTA`, so the schema and
the files come from the log and follow every commit with nothing to regenerate; manifests must be
rewritten after every write (`GENERATE symlink_format_manifest`), go stale in between, and carry
no schema evolution. Why a database of its own: the gold names of the Spark catalog are Spark
views pinned to the published set (`lakehouse.state.catalog`), which Athena cannot run, and a
Spark-registered Delta table is stored in Glue with a placeholder schema Athena cannot read.

What Athena reads is each table's newest version: after a run stopped half-way through its
publish (the rerun completes it) Athena can see that run's new tables beside the previous set's
others; `gold.published` (`lakehouse_dev_gold.published` in Spark) says which versions make the
published set. Registration sends only Glue requests and needs no Spark: the tables' locations
come from the configuration and the gold specs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from lakehouse.core.context import Lakehouse
from lakehouse.emr.clients import AwsClients, Request, error_code

BI_LAYER = "bi"


def database(lh: Lakehouse) -> str:
    return lh.config.catalog.database(BI_LAYER)


def table_input(lh: Lakehouse, name: str) -> dict[str, Any]:
    """Glue TableInput of gold table `name` as an Athena Delta table."""
    spec = lh.gold[name]
    return {
        "Name": name,
        "Description": spec.description.strip(),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "table_type": "DELTA"},
        "StorageDescriptor": {"Location": lh.path(f"gold.{name}")},
    }


def plan(lh: Lakehouse) -> list[Request]:
    """The Glue requests `register` sends, for `--dry-run`."""
    db = database(lh)
    requests = [
        Request("glue", "get_database", {"Name": db}),
        Request("glue", "create_database", {"DatabaseInput": _database_input(lh)}).only_if(
            f"only if database {db} does not exist"
        ),
    ]
    for name in lh.gold:
        requests += [
            Request("glue", "get_table", {"DatabaseName": db, "Name": name}),
            Request(
                "glue", "update_table", {"DatabaseName": db, "TableInput": table_input(lh, name)}
            ).only_if(f"if {db}.{name} exists"),
            Request(
                "glue", "create_table", {"DatabaseName": db, "TableInput": table_input(lh, name)}
            ).only_if("if it does not"),
        ]
    return requests


def register(clients: AwsClients, lh: Lakehouse, log: Callable[[str], None] = print) -> list[str]:
    """Create the database and each gold table's Glue entry, or put an existing one back as
    defined; returns the `database.table` names."""
    db = database(lh)
    if not _exists(clients, Request("glue", "get_database", {"Name": db})):
        clients.call(Request("glue", "create_database", {"DatabaseInput": _database_input(lh)}))
        log(f"created Glue database {db}")
    names = []
    for name in lh.gold:
        params = {"DatabaseName": db, "TableInput": table_input(lh, name)}
        found = _exists(clients, Request("glue", "get_table", {"DatabaseName": db, "Name": name}))
        clients.call(Request("glue", "update_table" if found else "create_table", params))
        log(f"{'updated' if found else 'registered'} {db}.{name} (Delta, for Athena)")
        names.append(f"{db}.{name}")
    return names


def _database_input(lh: Lakehouse) -> dict[str, str]:
    return {
        "Name": database(lh),
        "Description": f"lakehouse {lh.config.env}: gold tables as Delta tables for Athena",
    }


def _exists(clients: AwsClients, request: Request) -> bool:
    try:
        clients.call(request)
        return True
    except ClientError as exc:
        if error_code(exc) != "EntityNotFoundException":
            raise
        return False
