"""The table is the unit: a spec tells a table's story, one context carries it to the engines.

- A new simple source needs only its spec and its landing files (here in a configuration folder
  of its own, reached through `--conf-dir`, which the engines must honour for the table specs as
  well as for `base.yaml`).
- The engines never test a table's name: what differs per table is a spec field.
- Spec mistakes fail at load, naming the file and the problem.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse import cli
from lakehouse.core.config import PROJECT_ROOT, ConfigError
from lakehouse.core.context import Lakehouse
from lakehouse.core.specs import load_gold, load_tables
from lakehouse.state.catalog import LAYERS
from lakehouse.state.ledger import read_ledger
from lakehouse.state.quarantine import read_quarantine

RETURNS_SPEC = """\
# silver.returns: one current row per return, from the shop database's CDC.
name: returns
source: returns
landing: {format: cdc}
kind: cdc
keys: [return_id]
columns:
  - {name: return_id, type: string, required: true}
  - {name: order_id, type: string, required: true}
  - {name: reason, type: string}
"""


def _cdc(op: str, lsn: int, ts_ms: int, after: dict) -> str:
    envelope = {"op": op, "ts_ms": ts_ms, "lsn": lsn, "before": None, "after": after}
    return json.dumps(envelope, separators=(",", ":"))


def _conf_with_returns(tmp_path: Path) -> Path:
    """The project's configuration, copied, with a `returns` table and local roots under
    `tmp_path`."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    (conf / "tables" / "returns.yaml").write_text(RETURNS_SPEC, encoding="utf-8")
    (conf / "local.yaml").write_text(
        "storage:\n"
        f"  landing_root: {tmp_path / 'landing'}\n"
        f"  lakehouse_root: {tmp_path / 'lake'}\n"
        f"  reports_root: {tmp_path / 'reports'}\n",
        encoding="utf-8",
    )
    return conf


def test_a_new_source_needs_only_its_spec_and_its_files(
    spark: SparkSession, tmp_path: Path
) -> None:
    conf = _conf_with_returns(tmp_path)
    day = tmp_path / "landing" / "returns" / "ingest_date=2024-01-05"
    day.mkdir(parents=True)
    lines = [
        _cdc("c", 1, 1704445200000, {"return_id": "R1", "order_id": "O1", "reason": "size"}),
        _cdc("c", 2, 1704445201000, {"return_id": "R2", "order_id": "O2", "reason": None}),
        _cdc("u", 3, 1704445202000, {"return_id": "R1", "order_id": "O1", "reason": "colour"}),
        # R2 again, re-sent with another commit time: a new bronze record, the same version.
        _cdc("c", 2, 1704445209000, {"return_id": "R2", "order_id": "O2", "reason": None}),
        _cdc("c", 4, 1704445203000, {"return_id": "R3", "reason": "late"}),  # no order_id
    ]
    (day / "returns-0001.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    try:
        assert cli.main(["--conf-dir", str(conf), "ingest"]) == 0
        assert cli.main(["--conf-dir", str(conf), "silver"]) == 0
    finally:
        # The commands register this lakehouse's tables in the session's catalog, which later
        # tests' lakehouses would find taken (registration only adds missing names).
        for database in LAYERS:
            spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")

    lh = Lakehouse.load("local", conf)
    rows = (
        spark.read.format("delta")
        .load(lh.path("silver.returns"))
        .select("return_id", "order_id", "reason", "_lsn", "_is_deleted")
        .orderBy("return_id")
        .collect()
    )
    assert [tuple(r) for r in rows] == [
        ("R1", "O1", "colour", 3, False),
        ("R2", "O2", None, 2, False),
    ]
    ledger = {
        (r["layer"], r["table_name"]): r
        for r in read_ledger(spark, lh).where("table_name = 'returns'").collect()
    }
    bronze, silver = ledger[("bronze", "returns")], ledger[("silver", "returns")]
    assert (bronze["records_read"], bronze["records_written"]) == (5, 5)
    assert (
        silver["records_read"],
        silver["inserted"],
        silver["duplicates"],
        silver["stale_ignored"],
        silver["quarantined"],
    ) == (5, 2, 1, 1, 1)
    [bad] = read_quarantine(spark, lh).where("source = 'returns'").collect()
    assert (bad["layer"], bad["column_name"], bad["reason"]) == (
        "silver",
        "order_id",
        "order_id: missing",
    )


def test_conf_dir_reaches_the_table_and_gold_specs(tmp_path: Path) -> None:
    conf = _conf_with_returns(tmp_path)
    (conf / "gold" / "dim_date.yaml").unlink()

    lh = Lakehouse.load("local", conf)

    assert "returns" in lh.tables
    assert "returns" in lh.sources
    assert "dim_date" not in lh.gold
    assert lh.config.conf_dir == str(conf.resolve())
    assert lh.path("silver.returns") == f"{tmp_path / 'lake'}/silver/returns"


ENGINE_WINGS = ("bronze", "silver", "gold", "quality", "state", "ops", "pipeline.py")


def _engine_files() -> list[Path]:
    package = PROJECT_ROOT / "lib" / "lakehouse"
    files: list[Path] = []
    for wing in ENGINE_WINGS:
        path = package / wing
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def _names_a_table(node: ast.expr) -> bool:
    """An expression that holds the name of the table being processed: `spec.name`,
    `spec.source`, `table`, `table_name`, `name`, ... (a gold transform reading its silver inputs
    by name, `changes["orders"]`, is not a test of which table is processed)."""
    ident = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return ident in {"name", "source", "table", "layer"} or ident.endswith("_name")


def test_no_engine_compares_a_table_name_to_a_literal() -> None:
    names = set(load_tables()) | set(load_gold()) | {"customers_history", "products_history"}
    found = []
    for path in _engine_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            literals = [
                c.value
                for c in [node.left, *node.comparators]
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            literals += [
                e.value
                for c in node.comparators
                if isinstance(c, ast.Tuple | ast.List | ast.Set)
                for e in c.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            operands = [node.left, *node.comparators]
            if any(v in names or v.split(".")[-1] in names for v in literals) and any(
                _names_a_table(o) for o in operands
            ):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")

    assert len(_engine_files()) > 20
    assert found == []


def test_order_lines_follow_their_orders_deletes_by_declaration() -> None:
    tables = load_tables()

    assert tables["order_items"].parent is not None
    assert tables["order_items"].parent.on_delete == "cascade"
    assert [t.name for t in Lakehouse.load().children("orders")] == ["order_items"]
    assert Lakehouse.load().children("customers") == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("parent: {table: orders,", "parent: {table: shipments,"), "parent.table 'shipments'"),
        (("quality: silver.order_items", "quality: silver.lines"), "no suite file"),
        (("on_delete: cascade", "on_delete: remove"), "on_delete"),
    ],
)
def test_a_wrong_table_spec_fails_at_load_naming_the_file(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    spec = conf / "tables" / "order_items.yaml"
    text = spec.read_text(encoding="utf-8")
    assert edit[0] in text
    spec.write_text(text.replace(*edit), encoding="utf-8")

    with pytest.raises(ConfigError, match=message) as error:
        load_tables(conf)

    assert "order_items.yaml" in str(error.value)


def test_a_gold_spec_reading_an_unknown_table_fails_at_load(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    spec = conf / "gold" / "daily_payments.yaml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("[payments, fx_rates]", "[refunds, fx_rates]"),
        encoding="utf-8",
    )

    with pytest.raises(ConfigError, match=r"daily_payments\.yaml: inputs: no silver table refunds"):
        Lakehouse.load("local", conf)


def test_a_column_may_not_shadow_what_bronze_and_silver_keep(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    (conf / "tables" / "returns.yaml").write_text(
        RETURNS_SPEC.replace("name: reason", "name: raw"), encoding="utf-8"
    )

    with pytest.raises(ConfigError, match=r"returns\.yaml: column 'raw' is reserved"):
        load_tables(conf)
