"""Quality runs on real Deequ: every check kind reports the exact check and status, the gate
fails on errors only, anomaly history works across runs, and the report reads back."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

import moto_server
from lakehouse.cli.maintenance import full_quality_scan
from lakehouse.core.config import AwsConfig
from lakehouse.core.context import Lakehouse
from lakehouse.quality import (
    RESULTS_TABLE,
    QualityGateError,
    gate,
    metrics_path,
    run_quality,
    suggest,
    write_report,
)
from lakehouse.quality.runner import NOTHING_WRITTEN
from lakehouse.state import reports
from lakehouses import local_lakehouse
from moto_server import REGION

moto_url = moto_server.moto_url
moto = moto_server.moto


def lakehouse_at(base: Path, suites: Path | None = None) -> Lakehouse:
    """The shipped configuration with its lakehouse under `base`; with `suites`, quality suites
    read from that configuration folder instead (table specs stay the shipped ones)."""
    lh = local_lakehouse(base)
    return lh if suites is None else lh.with_config(conf_dir=str(suites))


D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)
SHA = "a" * 64

ORDERS = (
    "order_id string, customer_id string, order_ts timestamp, status string, currency string, "
    "shipping_country string, order_date date, _is_deleted boolean"
)
ITEMS = (
    "order_id string, line_no int, product_id string, quantity int, unit_price decimal(18,2), "
    "discount decimal(5,4), order_date date, _is_deleted boolean"
)
PAYMENTS = (
    "event_id string, payment_id string, order_id string, event_ts timestamp, event_type string, "
    "amount decimal(18,2), currency string, method string, event_date date, _is_deleted boolean"
)
CUSTOMERS = (
    "customer_id string, email_hash string, country string, signup_ts timestamp, "
    "_is_deleted boolean"
)
FACT = (
    "order_id string, line_no int, order_date date, status string, is_counted boolean, "
    "line_amount decimal(19,6), line_amount_usd decimal(38,14)"
)
KPIS = (
    "order_date date, orders long, gross_revenue_usd decimal(18,2), "
    "net_revenue_usd decimal(18,2), customers long, new_customers long, returning_customers long"
)


def ts(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour)


def dec(value: str) -> Decimal:
    return Decimal(value)


def clean_data() -> dict[str, tuple[str, list[tuple]]]:
    """A consistent tiny lakehouse. o1's amount is 24.725, which rounds half-up to 24.73."""
    orders = [
        ("o1", "c1", ts(D1, 10), "paid", "USD", "US", D1, False),
        ("o2", "c2", ts(D1, 11), "cancelled", "EUR", "DE", D1, False),
        ("o3", "c1", ts(D2, 9), "delivered", "USD", "US", D2, False),
        # A tombstone breaking several checks: live rows only, so it must not count.
        ("o9", None, ts(D2, 9), "bogus", "XXX", None, D1, True),
    ]
    items = [
        ("o1", 1, "p1", 2, dec("10.00"), dec("0"), D1, False),
        ("o1", 2, "p2", 1, dec("5.25"), dec("0.1"), D1, False),
        ("o2", 1, "p1", 1, dec("10.00"), dec("0"), D1, False),
        ("o3", 1, "p3", 3, dec("1.10"), dec("0"), D2, False),
    ]
    payments = [
        ("e1", "pay1", "o1", ts(D1, 12), "captured", dec("24.73"), "USD", "card", D1, False),
        ("e2", "pay3", "o3", ts(D2, 10), "authorized", dec("3.30"), "USD", "card", D2, False),
        ("e3", "pay3", "o3", ts(D2, 11), "captured", dec("3.30"), "USD", "card", D2, False),
    ]
    customers = [
        ("c1", SHA, "US", ts(D1, 1), False),
        ("c2", SHA, "DE", ts(D1, 2), False),
    ]
    fact = [
        ("o1", 1, D1, "paid", True, dec("20"), dec("20")),
        ("o1", 2, D1, "paid", True, dec("4.725"), dec("4.725")),
        ("o2", 1, D1, "cancelled", False, dec("10"), dec("11")),
        ("o3", 1, D2, "delivered", True, dec("3.3"), dec("3.3")),
    ]
    kpis = [
        (D1, 1, dec("24.73"), dec("24.73"), 1, 1, 0),
        (D2, 1, dec("3.30"), dec("3.30"), 1, 0, 1),
    ]
    return {
        "silver.orders": (ORDERS, orders),
        "silver.order_items": (ITEMS, items),
        "silver.payments": (PAYMENTS, payments),
        "silver.customers": (CUSTOMERS, customers),
        "gold.fact_orders": (FACT, fact),
        "gold.daily_kpis": (KPIS, kpis),
    }


def broken_data() -> dict[str, tuple[str, list[tuple]]]:
    data = clean_data()
    orders = data["silver.orders"][1] + [
        ("o1", "c1", ts(D1, 13), "paid", "USD", "US", D1, False),  # duplicate key
        ("o4", None, ts(D2, 8), "lost", "USD", None, D2, False),  # no customer, bad status
        ("o5", "c2", ts(D2, 8), "paid", "GBP", "GB", D1, False),  # date not the ts's date
    ]
    items = data["silver.order_items"][1] + [
        ("o3", 2, "p4", 0, dec("-1.00"), dec("0"), D2, False),  # quantity 0, negative price
        ("o404", 1, "p1", 1, dec("1.00"), dec("0"), None, False),  # order does not exist
    ]
    payments = [
        ("e1", "pay1", "o1", ts(D1, 12), "captured", dec("30.00"), "USD", "card", D1, False),
        ("e2", "pay3", "o3", ts(D2, 10), "chargeback", dec("3.30"), "USD", "card", D2, False),
        ("e3", "pay3", "o3", ts(D2, 11), "captured", dec("3.30"), "USD", "card", D2, False),
    ]
    kpis = [
        (D1, 1, dec("24.72"), dec("24.72"), 1, 1, 0),  # half-even rounding: off by a cent
        (D2, 1, dec("3.30"), dec("3.30"), 1, 0, 1),
    ]
    data["silver.orders"] = (ORDERS, orders)
    data["silver.order_items"] = (ITEMS, items)
    data["silver.payments"] = (PAYMENTS, payments)
    data["gold.daily_kpis"] = (KPIS, kpis)
    return data


EXPECTED_FAILED = {
    ("silver.orders", "order_id_unique"): "error",
    ("silver.orders", "customer_id_complete"): "error",
    ("silver.orders", "status_allowed"): "error",
    ("silver.orders", "order_date_matches_order_ts"): "error",
    ("silver.orders", "shipping_country_mostly_present"): "warning",
    ("silver.order_items", "quantity_positive"): "error",
    ("silver.order_items", "unit_price_non_negative"): "error",
    ("silver.order_items", "order_exists"): "warning",
    ("silver.payments", "event_type_allowed"): "error",
    ("silver.payments", "captures_match_order_amount"): "warning",
    ("gold.daily_kpis", "gross_revenue_matches_fact_orders"): "error",
}


def write_lakehouse(spark: SparkSession, lh: Lakehouse, data: dict, tables: list[str]) -> None:
    for name in tables:
        schema, rows = data[name]
        spark.createDataFrame(rows, schema).write.format("delta").mode("overwrite").save(
            lh.path(name)
        )


@pytest.fixture(scope="module")
def broken_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    lh = lakehouse_at(tmp_path_factory.mktemp("broken"))
    tables = [
        "silver.orders",
        "silver.order_items",
        "silver.payments",
        "gold.fact_orders",
        "gold.daily_kpis",
    ]
    write_lakehouse(spark, lh, broken_data(), tables)
    return lh, run_quality(spark, lh, "run-broken", tables)


def test_clean_data_passes_shipped_checks_not_covered_by_broken_run(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The broken run shows every other shipped check passing; here customers and the half-up
    rounded revenue (24.725 -> 24.73) pass too."""
    tables = ["silver.customers", "gold.daily_kpis"]
    lh = lakehouse_at(tmp_path)
    write_lakehouse(spark, lh, clean_data(), [*tables, "gold.fact_orders"])
    outcome = run_quality(spark, lh, "run-clean", tables)
    failed = [(r.table, r.check, r.message) for r in outcome.results if r.failed]
    assert failed == []
    assert len(outcome.results) == 15  # 13 row checks and two day-level checks
    assert outcome.status_of("gold.daily_kpis", "gross_revenue_matches_fact_orders") == "passed"
    assert gate(outcome) is outcome


def test_each_broken_check_is_reported_failed_and_only_those(broken_run) -> None:
    _, outcome = broken_run
    failed = {(f"{r.layer}.{r.table}", r.check): r.severity for r in outcome.results if r.failed}
    assert failed == EXPECTED_FAILED
    passed = {(f"{r.layer}.{r.table}", r.check) for r in outcome.results if not r.failed}
    assert ("silver.orders", "currency_allowed") in passed  # the tombstone's XXX is not live
    assert ("silver.order_items", "key_unique") in passed
    assert ("gold.fact_orders", "key_unique") in passed


def test_failed_results_carry_metric_message_and_examples(broken_run) -> None:
    _, outcome = broken_run
    by = {(r.table, r.check): r for r in outcome.results}
    status = by[("orders", "status_allowed")]
    assert status.value == pytest.approx(5 / 6)
    assert status.metric.startswith("Compliance")
    assert "does not meet the constraint requirement" in status.message
    assert [json.loads(e)["status"] for e in status.examples] == ["lost"]
    unique = by[("orders", "order_id_unique")]
    assert [json.loads(e)["order_id"] for e in unique.examples] == ["o1"]
    revenue = by[("daily_kpis", "gross_revenue_matches_fact_orders")]
    (example,) = [json.loads(e) for e in revenue.examples]
    assert (example["order_date"], example["actual"], example["expected"]) == (
        "2024-01-01", 24.72, 24.73,
    )  # fmt: skip
    (missing,) = [json.loads(e) for e in by[("order_items", "order_exists")].examples]
    assert missing["order_id"] == "o404"
    (mismatch,) = [json.loads(e) for e in by[("payments", "captures_match_order_amount")].examples]
    assert mismatch["order_id"] == "o1"


def test_gate_raises_naming_every_failed_error_check(broken_run) -> None:
    _, outcome = broken_run
    with pytest.raises(QualityGateError) as err:
        gate(outcome)
    message = str(err.value)
    for (table, check), severity in EXPECTED_FAILED.items():
        assert (f"{table}/{check}" in message) == (severity == "error"), (table, check)
    assert len(outcome.errors) == 8 and len(outcome.warnings) == 3


def test_results_and_metrics_are_stored(spark: SparkSession, broken_run) -> None:
    lh, outcome = broken_run
    stored = spark.read.format("delta").load(lh.path(RESULTS_TABLE))
    rows = stored.where("run_id = 'run-broken'").collect()
    assert {(f"{r['layer']}.{r['table']}", r["check"], r["status"]) for r in rows} == {
        (f"{r.layer}.{r.table}", r.check, r.status) for r in outcome.results
    }
    history = json.loads(Path(metrics_path(lh)).read_text())
    tags = {tuple(sorted(h["resultKey"]["tags"].items())) for h in history}
    assert (("layer", "silver"), ("run_id", "run-broken"), ("table", "silver.orders")) in tags


def test_report_says_blocked_first_then_every_check_and_its_json_twin(broken_run, spark) -> None:
    lh, outcome = broken_run
    html_path, json_path = write_report(spark, lh, "run-broken")
    runs = Path(lh.config.storage.reports_root) / "runs"
    assert (html_path, json_path) == (
        str(runs / "run-broken" / "quality.html"),
        str(runs / "run-broken" / "quality.json"),
    )
    page = Path(html_path).read_text(encoding="utf-8")
    latest = runs.parent / "latest" / "quality.html"
    assert latest.read_text(encoding="utf-8") == page
    # The first thing in the page: blocked, and by which error checks.
    body = page.split("<body>", 1)[1].lstrip()
    verdict = re.match(r'<p id="verdict" class="blocked">(.*?)</p>', body, re.S)
    assert verdict is not None
    # In layer order (bronze, silver, gold), then table and check.
    errors = [
        "silver.order_items/quantity_positive",
        "silver.order_items/unit_price_non_negative",
        "silver.orders/customer_id_complete",
        "silver.orders/order_date_matches_order_ts",
        "silver.orders/order_id_unique",
        "silver.orders/status_allowed",
        "silver.payments/event_type_allowed",
        "gold.daily_kpis/gross_revenue_matches_fact_orders",
    ]
    assert sorted(errors) == sorted(f"{r.layer}.{r.table}/{r.check}" for r in outcome.errors)
    assert verdict.group(1) == (
        "Blocked: 8 error check(s) failed, nothing of this run was published; 3 warning(s)"
        f'<span class="by">blocked by: {", ".join(errors)}</span>'
    )
    # Every check once, with its status; failures before the folded passed checks.
    shown = re.findall(r'data-check="([^"]+)" data-severity="(\w+)" data-status="(\w+)"', page)
    assert sorted(shown) == sorted(
        (f"{r.layer}.{r.table}/{r.check}", r.severity, r.status) for r in outcome.results
    )
    statuses = [status for _, _, status in shown]
    assert statuses == sorted(statuses)  # "failed" < "passed"
    assert [sev for _, sev, status in shown if status == "failed"] == ["error"] * 8 + [
        "warning"
    ] * 3
    # A failing row of status_allowed, in words and against its constraint.
    article = page.split('id="check-silver.orders/status_allowed"')[1].split("</article>")[0]
    assert (
        "Column status holds only placed, paid, shipped, delivered, cancelled, returned" in article
    )
    assert "Measured <b>83.33%</b>, requires ≥ 100% of rows" in article
    assert '<td title="lost">lost</td>' in article
    # Self-contained: nothing loaded from elsewhere.
    assert "<script src" not in page and "<link" not in page
    doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
    assert doc["summary"] == {"error": {"passed": 22, "failed": 8},
                              "warning": {"passed": 9, "failed": 3}}  # fmt: skip
    assert doc["verdict"]["blocked_by"] == errors
    assert {(c["table"], c["check"]): c["status"] for c in doc["checks"]} == {
        (f"{r.layer}.{r.table}", r.check): r.status for r in outcome.results
    }
    by_table = {t["table"]: (t["checks"], t["errors"], t["warnings"]) for t in doc["tables"]}
    assert by_table == {
        "silver.orders": (12, 4, 1),
        "silver.order_items": (8, 2, 1),
        "silver.payments": (8, 1, 1),
        "gold.fact_orders": (5, 0, 0),
        "gold.daily_kpis": (9, 1, 0),
    }


def test_the_report_is_kept_in_s3_when_the_reports_root_is_there(broken_run, spark, moto) -> None:
    lh, _ = broken_run
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(
        Bucket="lakehouse-dev-lake", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    storage = dataclasses.replace(lh.config.storage, reports_root="s3://lakehouse-dev-lake/reports")
    aws = AwsConfig(REGION, "s3://unused/a", "s3://unused/l", endpoint_url=moto)
    on_s3 = lh.with_config(storage=storage, aws=aws)

    html_uri, json_uri = write_report(spark, on_s3, "run-broken")

    assert (html_uri, json_uri) == (
        "s3://lakehouse-dev-lake/reports/runs/run-broken/quality.html",
        "s3://lakehouse-dev-lake/reports/runs/run-broken/quality.json",
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lakehouse-dev-lake")["Contents"]]
    assert sorted(keys) == [
        "reports/latest/quality.html",
        "reports/latest/quality.json",
        "reports/runs/run-broken/quality.html",
        "reports/runs/run-broken/quality.json",
    ]
    page = s3.get_object(Bucket="lakehouse-dev-lake", Key="reports/runs/run-broken/quality.html")
    assert page["ContentType"] == "text/html; charset=utf-8"
    # The same report as the local one, but for the moment it was generated at.
    kept = json.loads(reports.read_text(on_s3.config, json_uri))
    local = json.loads(Path(write_report(spark, lh, "run-broken")[1]).read_text(encoding="utf-8"))
    assert {**kept, "generated_at": None} == {**local, "generated_at": None}
    assert kept["summary"]["error"] == {"passed": 22, "failed": 8}
    assert kept["verdict"]["status"] == "blocked"


def scope_of(spark: SparkSession, name: str, keep) -> DataFrame:  # type: ignore[no-untyped-def]
    """The rows of `name` in `broken_data` that `keep` selects, as a run's changed rows."""
    schema, rows = broken_data()[name]
    return spark.createDataFrame([r for r in rows if keep(r)], schema)


def failed_checks(outcome) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(f"{r.layer}.{r.table}", r.check) for r in outcome.results if r.failed}


SCOPED = ["silver.orders", "silver.order_items", "silver.payments", "gold.daily_kpis"]


def test_a_scoped_run_checks_the_changed_rows_and_their_keys_across_the_whole_table(
    spark: SparkSession, broken_run
) -> None:
    """The broken rows outside the scope were checked by the runs that wrote them; a key the
    scope holds is still unique only if no other copy exists anywhere in the table."""
    lh, _ = broken_run
    scopes = {
        "silver.orders": scope_of(spark, "silver.orders", lambda r: r[0] == "o3"
                                  or (r[0] == "o1" and r[2].hour == 10)),
        "silver.order_items": scope_of(spark, "silver.order_items", lambda r: r[0] == "o1"),
        "silver.payments": scope_of(spark, "silver.payments", lambda r: r[0] == "e3"),
        "gold.daily_kpis": scope_of(spark, "gold.daily_kpis", lambda r: r[0] == D2),
    }  # fmt: skip

    outcome = run_quality(spark, lh, "run-scoped", SCOPED, scopes=scopes)

    assert failed_checks(outcome) == {("silver.orders", "order_id_unique")}
    by = {(r.table, r.check): r for r in outcome.results}
    unique = by[("orders", "order_id_unique")]
    assert unique.value == pytest.approx(1 / 3)  # o1, o1, o3: one of three values unique
    assert [json.loads(e)["order_id"] for e in unique.examples] == ["o1"]
    assert by[("orders", "status_allowed")].value == 1.0  # o4's "lost" is not in the scope
    assert by[("orders", "not_empty")].value == 6.0  # size: every live row of the table
    assert by[("daily_kpis", "gross_revenue_matches_fact_orders")].value == 1.0  # D2 only


def test_a_scoped_run_fails_the_checks_its_changed_rows_break(
    spark: SparkSession, broken_run
) -> None:
    lh, _ = broken_run
    scopes = {
        "silver.orders": scope_of(spark, "silver.orders", lambda r: r[0] == "o4"),
        "silver.order_items": scope_of(spark, "silver.order_items", lambda r: r[0] == "o404"),
        "silver.payments": scope_of(spark, "silver.payments", lambda r: r[0] == "e1"),
        "gold.daily_kpis": scope_of(spark, "gold.daily_kpis", lambda r: r[0] == D1),
    }

    outcome = run_quality(spark, lh, "run-scoped-bad", SCOPED, scopes=scopes)

    assert failed_checks(outcome) == {
        ("silver.orders", "customer_id_complete"),
        ("silver.orders", "status_allowed"),
        ("silver.orders", "shipping_country_mostly_present"),
        ("silver.order_items", "order_exists"),
        ("silver.payments", "captures_match_order_amount"),
        ("gold.daily_kpis", "gross_revenue_matches_fact_orders"),
    }
    by = {(r.table, r.check): r for r in outcome.results}
    assert by[("orders", "status_allowed")].value == 0.0
    (mismatch,) = [json.loads(e) for e in by[("payments", "captures_match_order_amount")].examples]
    assert mismatch["order_id"] == "o1"


def test_an_empty_scope_passes_every_check_but_the_whole_table_ones(
    spark: SparkSession, broken_run
) -> None:
    lh, _ = broken_run
    nothing = scope_of(spark, "silver.orders", lambda r: False)

    outcome = run_quality(
        spark, lh, "run-nothing", ["silver.orders"], scopes={"silver.orders": nothing}
    )

    assert failed_checks(outcome) == set()
    computed = {r.check: r.value for r in outcome.results if r.message != NOTHING_WRITTEN}
    # A day-level check judges the days a run touched: none here.
    assert computed == {
        "not_empty": 6.0,
        "row_count_jump": 6.0,
        "shipping_country_null_rate_per_day": None,
    }
    assert len(outcome.results) == 12


def test_maintain_runs_every_suite_on_every_row_and_fails_on_an_error(
    spark: SparkSession, broken_run, capsys: pytest.CaptureFixture[str]
) -> None:
    lh, _ = broken_run

    status = full_quality_scan(spark, lh, "maintain-scan")
    out = capsys.readouterr().out

    assert status == 1
    (left_out,) = [line for line in out.splitlines() if "not built yet" in line]
    assert left_out.split("left out: ")[1].split(", ") == [
        "bronze.landing",
        "silver.clickstream",
        "silver.customers",
        "silver.fx_rates",
        "silver.products",
        "gold.customer_retention",
        "gold.daily_funnel",
        "gold.daily_payments",
        "gold.dim_customers",
        "gold.dim_date",
        "gold.dim_products",
        "gold.fact_payments",
        "gold.product_engagement",
        "gold.sessions",
    ]
    assert "full quality scan (every row) maintain-scan: 42 checks, 8 errors, 3 warnings" in out
    failed = {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("  ")}
    assert failed == {f"{table}/{check}" for table, check in EXPECTED_FAILED}


ANOMALY_SUITE = """
layer: silver
table: events
checks:
  - {name: at_most_five_rows, severity: warning, size: {max: 5}}
  - name: rows_jump
    severity: error
    anomaly: {metric: size, strategy: relative_rate_of_change, max_rate_increase: 2.0}
"""


def test_anomaly_passes_on_normal_day_and_fails_on_jump(spark: SparkSession, tmp_path) -> None:
    conf = tmp_path / "conf"
    (conf / "quality").mkdir(parents=True)
    (conf / "quality" / "silver.events.yaml").write_text(ANOMALY_SUITE, encoding="utf-8")
    lh = lakehouse_at(tmp_path, suites=conf)

    def day(run_id: str, rows: int):
        data = [(f"e{i}", False) for i in range(rows)]
        spark.createDataFrame(data, "event_id string, _is_deleted boolean").write.format(
            "delta"
        ).mode("overwrite").save(lh.path("silver.events"))
        return run_quality(spark, lh, run_id, ["silver.events"])

    first, normal, jump = day("d1", 2), day("d2", 3), day("d3", 9)
    assert first.status_of("silver.events", "rows_jump") == "passed"  # no history yet
    assert normal.status_of("silver.events", "rows_jump") == "passed"  # 1.5x <= 2x
    assert gate(normal) is normal
    assert jump.status_of("silver.events", "rows_jump") == "failed"  # 3x > 2x
    assert jump.status_of("silver.events", "at_most_five_rows") == "failed"
    assert [r.check for r in jump.warnings] == ["at_most_five_rows"]
    with pytest.raises(QualityGateError, match=r"silver\.events/rows_jump"):
        gate(jump)
    doc = json.loads(Path(write_report(spark, lh, "d3")[1]).read_text())
    assert [p["value"] for p in doc["trends"]["silver.events/rows_jump"]] == [2.0, 3.0, 9.0]


def test_warning_only_failures_do_not_fail_the_gate(spark: SparkSession, tmp_path) -> None:
    conf = tmp_path / "conf"
    (conf / "quality").mkdir(parents=True)
    (conf / "quality" / "silver.events.yaml").write_text(
        "layer: silver\ntable: events\nchecks:\n"
        "  - {name: few_rows, severity: warning, size: {max: 1}}\n"
        "  - {name: ids_present, severity: error, completeness: {column: event_id}}\n",
        encoding="utf-8",
    )
    lh = lakehouse_at(tmp_path, suites=conf)
    spark.createDataFrame([("a", False), ("b", False)], "event_id string, _is_deleted boolean") \
        .write.format("delta").save(lh.path("silver.events"))  # fmt: skip
    outcome = run_quality(spark, lh, "w1", ["silver.events"])
    assert [(r.check, r.status) for r in outcome.results] == [
        ("few_rows", "failed"),
        ("ids_present", "passed"),
    ]
    assert gate(outcome) is outcome


def test_suggest_drafts_a_loadable_suite(spark: SparkSession, tmp_path: Path) -> None:
    from lakehouse.quality.suites import load_suite

    lh = lakehouse_at(tmp_path)
    spark.createDataFrame(
        [(f"o{i}", "paid" if i % 2 else "placed", i) for i in range(20)],
        "order_id string, status string, quantity int",
    ).write.format("delta").save(lh.path("silver.orders"))
    draft = suggest(spark, lh, "silver.orders")
    path = tmp_path / "silver.orders.yaml"
    path.write_text(draft, encoding="utf-8")
    kinds = {(c.kind, getattr(c.spec, "column", None)) for c in load_suite(path).checks}
    assert ("completeness", "order_id") in kinds
    assert ("non_negative", "quantity") in kinds
