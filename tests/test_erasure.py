"""Erasure of a customer (issue #7): after `erase` and a maintenance run past the retention
(a test-only retention of zero), no version of any table, no file under the lakehouse root and no
line of any transaction log holds the customer's raw email, names, phone or ip; their orders stay.

One small generated shop, plus hand-written landing lines that give the customer every kind of
record erasure must find: a newer version with distinctive personal data, a record with a bad
value (quarantined by silver), one without its key but with their email (bronze keeps it, silver
quarantines it), a truncated line (quarantined by bronze) and a signed-in and an anonymous
clickstream event of one session. The story (module fixture): pipeline, erase, a re-delivery of
the customer's file and the pipeline again, maintenance with retention 0, a second erase.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq
import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.core.context import Lakehouse
from lakehouse.core.specs import load_tables
from lakehouse.ops.erasure import (
    ERASED_HASH,
    ERASED_TEXT,
    ErasureError,
    ErasureResult,
    erase,
    read_audit,
    redact_json,
    scrub_text,
)
from lakehouse.ops.maintenance import MaintenanceRun, maintain
from lakehouse.pipeline import run_bronze, run_gold, run_silver
from lakehouse.state.ledger import LedgerEntry
from lakehouse_dev.generate import generate_landing
from lakehouses import local_lakehouse

SPECS = load_tables()
NEW = {
    "email": "zebulon.quaxworth@example.org",
    "first_name": "Zebulon",
    "last_name": "Quaxworth",
    "phone": "+44 20 7946 0999",
}
SESSION = "s_erasure_test_0001"
IPS = ("203.0.113.77", "203.0.113.78")


# --- landing helpers -----------------------------------------------------------------------------


def landing_lines(root: Path, source: str) -> list[tuple[Path, str]]:
    out = []
    for path in sorted((root / source).glob("ingest_date=*/*")):
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
        out += [(path, line) for line in text.splitlines() if line.strip()]
    return out


def parsed(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def images(record: dict) -> list[dict]:
    return [i for i in (record.get("before"), record.get("after")) if isinstance(i, dict)]


def pick_customer(landing: Path) -> str:
    """The customer with the most orders in the landing zone."""
    counts: Counter[str] = Counter()
    for _, line in landing_lines(landing, "orders"):
        record = parsed(line)
        for img in images(record or {}):
            if img.get("customer_id"):
                counts[img["customer_id"]] += 1
    known = {
        img.get("customer_id")
        for _, line in landing_lines(landing, "customers")
        for img in images(parsed(line) or {})
    }
    return max((n, c) for c, n in counts.items() if c in known)[1]


def inject(landing: Path, customer_id: str) -> Path:
    """Hand-written landing files for the customer on the last ingest day; returns the customers
    file."""
    rows = [
        (r["lsn"], img)
        for _, line in landing_lines(landing, "customers")
        if (r := parsed(line)) and isinstance(r.get("lsn"), int)
        for img in images(r)
        if img.get("customer_id") == customer_id and "email" in img
    ]
    newest = dict(max(rows, key=lambda x: x[0])[1])
    day = sorted(p.name for p in (landing / "customers").glob("ingest_date=*"))[-1]
    date = day.split("=")[1]
    ts = int(__import__("datetime").datetime.fromisoformat(f"{date}T12:00:00+00:00").timestamp())
    ts_ms = ts * 1000

    def cdc(lsn: int, after: dict) -> str:
        event = {"op": "u", "ts_ms": ts_ms, "lsn": lsn, "before": None, "after": after}
        return json.dumps(event, separators=(",", ":"))

    updated = {**newest, **NEW}
    truncated = cdc(900_000_003, updated)
    truncated = truncated[: truncated.index('"last_name"')]
    customers = landing / "customers" / day / "customers-erasure-test.jsonl"
    customers.write_text(
        "\n".join(
            [
                cdc(900_000_000, updated),
                cdc(900_000_001, {**updated, "signup_ts": "not a time"}),
                cdc(900_000_002, {**updated, "customer_id": None}),
                truncated,
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    clicks = [
        {
            "event_id": "ev_erasure_test_1",
            "event_ts": f"{date}T12:01:00Z",
            "session_id": SESSION,
            "customer_id": None,
            "event_type": "page_view",
            "product_id": None,
            "order_id": None,
            "ip": IPS[1],
            "user_agent": "test-agent",
        },
        {
            "event_id": "ev_erasure_test_2",
            "event_ts": f"{date}T12:02:00Z",
            "session_id": SESSION,
            "customer_id": customer_id,
            "event_type": "page_view",
            "product_id": None,
            "order_id": None,
            "ip": IPS[0],
            "user_agent": "test-agent",
        },
    ]
    (landing / "clickstream" / day / "clickstream-erasure-test.jsonl").write_text(
        "\n".join(json.dumps(c, separators=(",", ":")) for c in clicks) + "\n", encoding="utf-8"
    )
    return customers


def personal_strings(landing: Path, customer_id: str) -> set[str]:
    """The customer's raw personal values in the landing zone (every version, and the ips of
    their sessions) that no record of anybody else contains, so finding one anywhere means a
    leak."""
    values: set[str] = set()
    sessions: set[str] = set()
    for _, line in landing_lines(landing, "customers"):
        for img in images(parsed(line) or {}):
            if img.get("customer_id") == customer_id:
                values |= {
                    str(img[f]) for f in ("email", "first_name", "last_name", "phone") if img.get(f)
                }
    for _, line in landing_lines(landing, "clickstream"):
        record = parsed(line) or {}
        if record.get("customer_id") == customer_id:
            sessions.add(record["session_id"])
    for _, line in landing_lines(landing, "clickstream"):
        record = parsed(line) or {}
        if record.get("session_id") in sessions and record.get("ip"):
            values.add(record["ip"])

    def theirs(line: str) -> bool:
        record = parsed(line)
        if record is None:
            return customer_id in line or any(v in line for v in NEW.values())
        imgs = images(record) or [record]
        return any(
            i.get("customer_id") == customer_id
            or i.get("email") in values
            or i.get("session_id") in sessions
            for i in imgs
        )

    others = [
        line
        for source in (
            "customers",
            "orders",
            "order_items",
            "payments",
            "products",
            "fx_rates",
            "clickstream",
        )
        for _, line in landing_lines(landing, source)
        if not theirs(line)
    ]
    return {v for v in values if not any(v in line for line in others)}


# --- the story -----------------------------------------------------------------------------------


@dataclass
class Story:
    lh: Lakehouse
    customer_id: str
    strings: set[str]
    customers_file: str
    orders_before: int
    facts_before: int
    first: ErasureResult
    redelivery: list[LedgerEntry]
    maintenance: MaintenanceRun
    second: ErasureResult
    versions_before_second: dict[str, int]
    versions_after_second: dict[str, int]


def delta_tables(root: Path) -> dict[str, Path]:
    """Every Delta table under `root`, by its folder relative to the root."""
    return {
        str(log.parent.relative_to(root)): log.parent
        for log in sorted(root.rglob("_delta_log"))
        if log.is_dir()
    }


def versions(spark: SparkSession, root: Path) -> dict[str, int]:
    return {
        name: int(DeltaTable.forPath(spark, str(path)).history(1).first()["version"])
        for name, path in delta_tables(root).items()
    }


def run(spark: SparkSession, lh: Lakehouse, run_id: str) -> list[LedgerEntry]:
    bronze = run_bronze(spark, lh, run_id)
    run_silver(spark, lh, run_id)
    run_gold(spark, lh, run_id)
    return bronze


def customer_orders(spark: SparkSession, lh: Lakehouse, customer_id: str) -> tuple[int, int]:
    silver = (
        spark.read.format("delta")
        .load(lh.path("silver.orders"))
        .where(~F.col("_is_deleted") & (F.col("customer_id") == customer_id))
        .count()
    )
    gold = (
        spark.read.format("delta")
        .load(lh.path("gold.fact_orders"))
        .where(F.col("customer_id") == customer_id)
        .count()
    )
    return silver, gold


@pytest.fixture(scope="module")
def story(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Story:
    lh = local_lakehouse(tmp_path_factory.mktemp("erasure"))
    landing = Path(lh.config.storage.landing_root)
    generate_landing(landing, replace(lh.config.generator, customers=12, days=2, orders_per_day=12))
    customer_id = pick_customer(landing)
    customers_file = inject(landing, customer_id)
    strings = personal_strings(landing, customer_id)
    run(spark, lh, "run-1")
    orders_before, facts_before = customer_orders(spark, lh, customer_id)

    first = erase(spark, lh, customer_id, request_id="req-1", reason="customer request")
    shutil.copy(customers_file, customers_file.with_name("customers-erasure-test-again.jsonl"))
    redelivery = run(spark, lh, "run-2")
    maintenance = maintain(spark, lh, retention_hours=0, allow_below_window_for_tests=True)
    root = Path(lh.root)
    before = versions(spark, root)
    second = erase(spark, lh, customer_id, request_id="req-2")
    return Story(
        lh,
        customer_id,
        strings,
        str(customers_file.relative_to(landing)),
        orders_before,
        facts_before,
        first,
        redelivery,
        maintenance,
        second,
        before,
        versions(spark, root),
    )


def test_the_customer_has_distinctive_personal_data_to_look_for(story: Story) -> None:
    assert {*NEW.values(), *IPS} <= story.strings
    assert story.orders_before > 0 and story.facts_before > 0


def files_by_version(table: Path) -> dict[int, frozenset[str]]:
    """The data files of every version, replayed from the commit files of `_delta_log` (all are
    kept: log cleanup only drops commits older than the retention)."""
    live: set[str] = set()
    out = {}
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text(encoding="utf-8").splitlines():
            action = json.loads(line)
            if "add" in action:
                live.add(unquote(action["add"]["path"]))
            elif "remove" in action:
                live.discard(unquote(action["remove"]["path"]))
        out[int(commit.stem)] = frozenset(live)
    return out


def test_no_readable_version_of_any_table_holds_the_customers_personal_data(
    spark: SparkSession, story: Story
) -> None:
    """Every version of every table whose files all still exist is read (versions with the same
    files once, in one job per table); the others cannot be read at all."""
    root = Path(story.lh.root)
    needles = sorted(story.strings | {json.dumps(s)[1:-1] for s in story.strings})
    leaks, readable = [], Counter[str]()
    for name, path in delta_tables(root).items():
        seen: set[frozenset[str]] = set()
        frames = []
        for version, files in sorted(files_by_version(path).items()):
            if not all((path / f).exists() for f in files):
                continue  # VACUUM removed some of its files: this version cannot be read
            readable[name] += 1
            if files in seen:
                continue
            seen.add(files)
            df = spark.read.format("delta").option("versionAsOf", version).load(str(path))
            text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns]))
            hit = reduce(lambda a, b: a | b, [F.instr(text, n) > 0 for n in needles])
            frames.append(df.where(hit).select(F.lit(version).alias("version")))
        if frames:
            found = reduce(DataFrame.unionByName, frames).groupBy("version").count().collect()
            leaks += [(name, r["version"], r["count"]) for r in found]

    assert leaks == []
    # The newest version of every table is readable (and was searched).
    assert set(readable) == set(delta_tables(root))


def test_no_file_under_the_lakehouse_root_holds_it_not_even_the_transaction_logs(
    story: Story,
) -> None:
    root = Path(story.lh.root)
    needles = story.strings | {json.dumps(s)[1:-1] for s in story.strings}
    leaks, logs, data = [], 0, 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
            data += 1
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        logs += "_delta_log" in path.parts
        leaks += [(str(path.relative_to(root)), n) for n in needles if n in text]

    assert leaks == []
    assert logs > 0 and data > 0


def test_vacuum_left_only_the_files_of_the_current_versions(story: Story) -> None:
    reports = {r.table_name: r for r in story.maintenance.tables}

    assert (
        reports["bronze.customers"].storage_files_after == reports["bronze.customers"].files_after
    )
    assert (
        reports["bronze.customers"].storage_files_before
        > reports["bronze.customers"].storage_files_after
    )


def test_the_customers_orders_stay_in_silver_and_gold(spark: SparkSession, story: Story) -> None:
    assert customer_orders(spark, story.lh, story.customer_id) == (
        story.orders_before,
        story.facts_before,
    )


def test_silver_and_gold_keep_the_customer_with_an_erased_identity(
    spark: SparkSession, story: Story
) -> None:
    def identities(table: str) -> set[tuple]:
        return {
            (r["email_hash"], r["phone_hash"])
            for r in spark.read.format("delta")
            .load(story.lh.path(table))
            .where(F.col("customer_id") == story.customer_id)
            .collect()
        }

    erased = {(ERASED_HASH, None)}
    assert identities("silver.customers") == erased
    assert identities("silver.customers_history") == erased
    assert identities("gold.dim_customers") == erased


def test_bronze_keeps_the_records_without_their_personal_fields(
    spark: SparkSession, story: Story
) -> None:
    rows = (
        spark.read.format("delta")
        .load(story.lh.path("bronze.customers"))
        .where(F.col("_file") == story.customers_file)
        .orderBy("_line")
        .collect()
    )
    bodies = [json.loads(r["raw"])["after"] for r in rows]

    assert [r["_line"] for r in rows] == [1, 2, 3]
    assert [b["customer_id"] for b in bodies] == [story.customer_id, story.customer_id, None]
    assert all(b[f] is None for b in bodies for f in ("email", "first_name", "last_name", "phone"))
    assert {b["country"] for b in bodies} != {None}


def test_quarantined_records_of_the_customer_are_erased(spark: SparkSession, story: Story) -> None:
    quarantined = (
        spark.read.format("delta")
        .load(f"{story.lh.root}/quarantine/records")
        .where(F.col("file") == story.customers_file)
        .orderBy("line")
        .select("layer", "line", "raw")
        .collect()
    )

    assert [(r["layer"], r["line"]) for r in quarantined] == [
        ("silver", 2),
        ("silver", 3),
        ("bronze", 4),
    ]
    assert quarantined[2]["raw"] == ERASED_TEXT
    assert json.loads(quarantined[0]["raw"])["after"]["customer_id"] == story.customer_id
    assert json.loads(quarantined[1]["raw"])["after"]["email"] is None


def test_the_audit_records_the_request_and_no_personal_data(
    spark: SparkSession, story: Story
) -> None:
    audit = read_audit(spark, story.lh).orderBy("requested_at").collect()
    first = audit[0]
    text = json.dumps([r.asDict(recursive=True) for r in audit], default=str, ensure_ascii=False)

    assert [(r["request_id"], r["customer_id"], r["status"]) for r in audit] == [
        ("req-1", story.customer_id, "erased"),
        ("req-2", story.customer_id, "nothing_left"),
    ]
    assert {t["table"] for t in first["tables"]} == {
        "bronze.customers",
        "bronze.clickstream",
        "quarantine.records",
        "silver.customers",
        "silver.customers_history",
        "gold.dim_customers",
    }
    changed = {t["table"]: t["rows_changed"] for t in first["tables"]}
    assert changed["quarantine.records"] >= 3
    assert changed["bronze.clickstream"] >= 2
    assert story.customers_file in first["landing_files"]
    assert first["unrecoverable_after"] > first["requested_at"]
    assert not [s for s in story.strings if s in text]


def test_a_second_erasure_of_the_same_customer_changes_no_table_but_the_audit(
    story: Story,
) -> None:
    changed = {
        name
        for name, v in story.versions_after_second.items()
        if story.versions_before_second.get(name) != v
    }

    assert story.second.status == "nothing_left"
    assert story.second.tables == ()
    assert changed == {"audit/erasures"}


def test_a_redelivery_after_erasure_is_recognised_as_already_ingested(story: Story) -> None:
    customers = next(e for e in story.redelivery if e.table_name == "customers")

    assert customers.files_read == 1
    assert customers.records_read == 4
    assert customers.records_written == 0


def test_erasure_records_the_ids_of_the_bronze_records_it_rewrote_for_bronze_at_any_age(
    spark: SparkSession, story: Story
) -> None:
    # Bronze treats these ids as held whatever their age (its own look-up is bounded by
    # bronze.dedup_window_days): a copy of an erased record delivered late is not landed again.
    erased = spark.read.format("delta").load(story.lh.path("bronze._erased"))
    rewritten = sum(c.rows_changed for c in story.first.tables if c.table.startswith("bronze."))

    assert rewritten > 0
    assert erased.where(F.col("request_id") == "req-1").count() == rewritten
    assert erased.select("record_id").distinct().count() == rewritten
    assert erased.where(F.col("request_id") == "req-2").count() == 0


def test_erasure_waits_until_silver_has_applied_every_bronze_record(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh = local_lakehouse(tmp_path)
    day = tmp_path / "landing" / "customers" / "ingest_date=2024-01-01"
    day.mkdir(parents=True)
    after = {
        "customer_id": "c1",
        "email": "a@example.org",
        "first_name": "A",
        "last_name": "B",
        "phone": None,
        "country": "DE",
        "city": "Berlin",
        "signup_ts": "2024-01-01T00:00:00Z",
        "marketing_opt_in": True,
    }
    (day / "customers-1.jsonl").write_text(
        json.dumps({"op": "c", "ts_ms": 1704067200000, "lsn": 1, "before": None, "after": after})
        + "\n",
        encoding="utf-8",
    )
    run_bronze(spark, lh, "run-1")

    with pytest.raises(ErasureError, match=r"run `lakehouse silver` first"):
        erase(spark, lh, "c1")
    assert not (tmp_path / "lake" / "audit").exists()


def test_quality_examples_naming_the_customer_are_dropped(
    spark: SparkSession, tmp_path: Path
) -> None:
    lh = local_lakehouse(tmp_path)
    theirs = json.dumps({"customer_id": "c1", "email_hash": "ab"}, separators=(",", ":"))
    other = json.dumps({"customer_id": "c11", "email_hash": "cd"}, separators=(",", ":"))
    spark.createDataFrame(
        [("email_hash_complete", [theirs, other]), ("not_empty", None)],
        "check string, examples array<string>",
    ).write.format("delta").save(lh.path("quality.results"))

    result = erase(spark, lh, "c1")
    rows = spark.read.format("delta").load(lh.path("quality.results")).collect()

    assert {r["check"]: r["examples"] for r in rows} == {
        "email_hash_complete": [other],
        "not_empty": None,
    }
    assert [(t.table, t.rows_changed) for t in result.tables] == [("quality.results", 1)]


# --- the record rewrites, without Spark ---------------------------------------------------------


def test_a_cdc_record_loses_every_personal_field_of_both_images() -> None:
    raw = json.dumps(
        {
            "op": "u",
            "lsn": 7,
            "before": {"customer_id": "c1", "email": "old@x.org", "phone": "1"},
            "after": {
                "customer_id": "c1",
                "email": "new@x.org",
                "first_name": "Ann",
                "last_name": "Lee",
                "phone": None,
                "country": "DE",
            },
        }
    )

    assert json.loads(redact_json(SPECS["customers"], raw) or "") == {
        "op": "u",
        "lsn": 7,
        "before": {"customer_id": "c1", "email": None, "phone": None},
        "after": {
            "customer_id": "c1",
            "email": None,
            "first_name": None,
            "last_name": None,
            "phone": None,
            "country": "DE",
        },
    }


def test_a_clickstream_event_loses_its_ip_and_an_erased_record_is_left_alone() -> None:
    raw = '{"event_id":"e1","session_id":"s1","customer_id":null,"ip":"10.0.0.1"}'
    erased = redact_json(SPECS["clickstream"], raw)

    assert erased == '{"event_id":"e1","session_id":"s1","customer_id":null,"ip":null}'
    assert redact_json(SPECS["clickstream"], erased or "") is None
    assert redact_json(SPECS["clickstream"], '{"event_id":"e1","ip":"1.2') is None


def test_a_reason_quoting_a_personal_value_is_scrubbed() -> None:
    assert scrub_text("email: 'a@x.org' is odd", ["a@x.org"]) == "email: '[erased]' is odd"
    assert scrub_text("signup_ts: missing", ["a@x.org"]) is None
