"""Fingerprints of every data table of a lakehouse: row count and a SHA-256 of its rows, compared
by key and value.

Columns that name the run or request, or the wall clock (`_run_id`, `_updated_at`, `_ingested_at`,
`run_id`, `request_id`, `quarantined_at`, ...) are left out: they differ between any two runs by
design. Every other column is in, so two lakehouses built from the same landing by two versions of
the engines have the same fingerprints exactly when they hold the same rows.

`python -m lakehouse_dev.fingerprint LAKEHOUSE_ROOT OUT.json` writes them (how
`tests/golden/pipeline.json` was made, from the engines before the architecture rework); the
pipeline tests and the crash suite (`lakehouse_dev.chaos`) compare lakehouses with them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

VOLATILE = {
    "_run_id",
    "_updated_at",
    "_ingested_at",
    "run_id",
    "ingested_at",
    "quarantined_at",
    "published_at",
    "computed_at",
    "consumed_at",
    # An erasure's request id and time (bronze._erased): a rerun of a stopped erasure keeps
    # the ids the stopped request recorded.
    "request_id",
    "erased_at",
}
LAYERS = ("bronze", "silver", "gold", "quarantine")
# State, not data: which silver versions gold consumed (and which gold versions it published)
# depend on how many commits each table made.
SKIPPED = {"gold._consumed_versions", "gold._published"}


def table_fingerprint(spark: SparkSession, path: str) -> dict[str, Any]:
    """Row count and the SHA-256 of the table's rows (volatile columns dropped), each row as
    canonical JSON, sorted."""
    return frame_fingerprint(spark.read.format("delta").load(path))


def frame_fingerprint(df: DataFrame, volatile: set[str] = VOLATILE) -> dict[str, Any]:
    """`table_fingerprint` of any frame (a table read at a version, say)."""
    kept = sorted(c for c in df.columns if c not in volatile)
    rows = df.select(F.to_json(F.struct(*[F.col(c) for c in kept])).alias("j")).collect()
    lines = sorted(r["j"] for r in rows)
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return {"rows": len(lines), "sha256": digest}


def lakehouse_fingerprints(spark: SparkSession, root: str) -> dict[str, dict[str, Any]]:
    """`layer.table` -> fingerprint for every Delta table of the data layers under `root`."""
    out = {}
    for layer in LAYERS:
        folder = Path(root) / layer
        if not folder.is_dir():
            continue
        for table in sorted(p for p in folder.iterdir() if (p / "_delta_log").is_dir()):
            name = f"{layer}.{table.name}"
            if name not in SKIPPED:
                out[name] = table_fingerprint(spark, str(table))
    return out


if __name__ == "__main__":
    from lakehouse.core.config import SparkConfig
    from lakehouse.core.spark import get_spark

    session = get_spark(SparkConfig(mode="local"), app_name="fingerprint")
    result = lakehouse_fingerprints(session, sys.argv[1])
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
