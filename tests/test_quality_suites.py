"""Quality suites: the shipped YAML loads, and a YAML mistake names the file, the check and what
is wrong. No Spark needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lakehouse.core.config import PROJECT_ROOT, ConfigError
from lakehouse.core.context import Lakehouse
from lakehouse.quality.suites import load_suite, load_suites

# Every silver and gold table has a suite (issue #21), and what landed has one.
REQUIRED = (
    "bronze.landing",
    "silver.clickstream",
    "silver.customers",
    "silver.fx_rates",
    "silver.orders",
    "silver.payments",
    "silver.products",
    "silver.order_items",
    "gold.customer_retention",
    "gold.daily_funnel",
    "gold.daily_kpis",
    "gold.daily_payments",
    "gold.dim_customers",
    "gold.dim_date",
    "gold.dim_products",
    "gold.fact_orders",
    "gold.fact_payments",
    "gold.product_engagement",
    "gold.sessions",
)


def _write(tmp_path: Path, body: str, name: str = "silver.orders.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lh() -> Lakehouse:
    return Lakehouse.load("local", PROJECT_ROOT / "conf")


def test_every_table_has_a_suite_and_every_check_kind_is_used(lh: Lakehouse) -> None:
    names = [*lh.suites("bronze"), *lh.suites("silver"), *lh.suites("gold")]
    assert names == list(REQUIRED)
    assert {f"silver.{t}" for t in lh.tables} | {f"gold.{t}" for t in lh.gold} <= set(names)
    suites = load_suites(lh, names)
    assert [s.full_name for s in suites] == list(REQUIRED)
    kinds = {c.kind for s in suites for c in s.checks}
    assert kinds == {
        "size", "completeness", "uniqueness", "allowed", "range", "non_negative", "sql",
        "anomaly", "exists_in", "reconciles", "equals_aggregate", "day_anomaly",
    }  # fmt: skip


def test_gold_tables_reconcile_with_their_facts(lh: Lakehouse) -> None:
    """daily_kpis against fact_orders, daily_payments against fact_payments, as error checks."""
    by_table = {s.full_name: s for s in load_suites(lh, ["gold.daily_kpis", "gold.daily_payments"])}
    sources = {
        (name, c.spec.column, c.spec.source.table, c.spec.source.where, c.severity)
        for name, suite in by_table.items()
        for c in suite.checks
        if c.kind == "equals_aggregate"
    }
    assert sources == {
        ("gold.daily_kpis", "gross_revenue_usd", "gold.fact_orders", "is_counted", "error"),
        ("gold.daily_payments", "captured_usd", "gold.fact_payments",
         "event_type = 'captured'", "error"),
        ("gold.daily_payments", "refunded_usd", "gold.fact_payments",
         "event_type = 'refunded'", "error"),
    }  # fmt: skip


def test_check_parses_into_typed_spec(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n"
        "  - {name: q, severity: warning, range: {column: quantity, min: 1, max: 10}}\n",
    )
    (check,) = load_suite(path).checks
    assert (check.kind, check.severity, check.spec.min, check.spec.max) == (
        "range",
        "warning",
        1.0,
        10.0,
    )


def test_wrong_type_names_file_and_check(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n"
        "  - {name: ok_one, size: {min: 1}}\n"
        "  - {name: id_complete, completeness: {column: order_id, threshold: high}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    message = str(err.value)
    assert str(path) in message
    assert "check 'id_complete'" in message
    assert "threshold" in message and "a number" in message


def test_unknown_key_names_file_and_check(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n"
        "  - {name: status_ok, allowed: {column: status, value: [a]}}\n",
    )
    with pytest.raises(ConfigError, match=r"silver\.orders\.yaml.*check 'status_ok'.*unknown key"):
        load_suite(path)


def test_check_without_kind_or_with_two_kinds_fails(tmp_path: Path) -> None:
    none = _write(tmp_path, "layer: silver\ntable: orders\nchecks:\n  - {name: nothing}\n")
    with pytest.raises(ConfigError, match=r"check 'nothing': needs exactly one kind.*got none"):
        load_suite(none)
    two = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n"
        "  - {name: both, size: {min: 1}, sql: {expression: 'a > 0'}}\n",
    )
    with pytest.raises(ConfigError, match=r"check 'both': needs exactly one kind.*got size, sql"):
        load_suite(two)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ("{name: c, severity: fatal, size: {min: 1}}", "one of 'error', 'warning'"),
        ("{name: c, size: {min: 5, max: 1}}", "size.min 5 is greater than size.max 1"),
        ("{name: c, completeness: {column: a, threshold: 1.5}}", "between 0 and 1"),
        ("{name: c, exists_in: {column: a, table: orders}}", "silver.<name> or gold.<name>"),
        (
            "{name: c, anomaly: {metric: size, strategy: relative_rate_of_change}}",
            "max_rate_increase or max_rate_decrease",
        ),
        (
            "{name: c, anomaly: {metric: size, strategy: zscore, max_rate_increase: 2}}",
            "relative_rate_of_change",
        ),
        ("{name: c, day_anomaly: {date_column: d}}", "max_decrease or max_increase"),
        (
            "{name: c, day_anomaly: {date_column: d, max_decrease: 1.5}}",
            "max_decrease must be between 0 and 1",
        ),
        (
            "{name: c, day_anomaly: {date_column: d, max_increase: 1, min_history: 40}}",
            "min_history must be between 1 and history_days",
        ),
        (
            "{name: c, day_anomaly: {date_column: d, max_increase: 1, missing: drop}}",
            "'zero', 'skip'",
        ),
    ],
)
def test_invalid_check_is_rejected_with_reason(tmp_path: Path, check: str, expected: str) -> None:
    path = _write(tmp_path, f"layer: silver\ntable: orders\nchecks:\n  - {check}\n")
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert str(path) in str(err.value)
    assert "check 'c'" in str(err.value)
    assert expected in str(err.value)


def test_duplicate_check_name_fails(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n"
        "  - {name: dup, size: {min: 1}}\n  - {name: dup, size: {max: 9}}\n",
    )
    with pytest.raises(ConfigError, match="check 'dup': name is used by another check"):
        load_suite(path)


def test_file_name_must_match_layer_and_table(tmp_path: Path) -> None:
    path = _write(tmp_path, "layer: gold\ntable: orders\nchecks: []\n", name="silver.orders.yaml")
    with pytest.raises(ConfigError, match=r"must be named gold\.orders\.yaml"):
        load_suite(path)


def test_shipped_allowed_checks_take_their_values_from_the_table_specs(lh: Lakehouse) -> None:
    allowed = {
        (s.table, c.spec.column): c.spec.values
        for s in load_suites(lh, ["silver.orders", "silver.payments"])
        for c in s.checks
        if c.kind == "allowed"
    }
    assert allowed == {
        ("orders", "status"): ("placed", "paid", "shipped", "delivered", "cancelled", "returned"),
        ("orders", "currency"): ("USD", "EUR", "GBP"),
        ("payments", "event_type"): ("authorized", "captured", "failed", "refunded"),
        ("payments", "method"): ("card", "paypal", "bank_transfer", "gift_card"),
    }
    assert allowed[("orders", "status")] == lh.tables["orders"].column("status").allowed


def test_allowed_values_given_in_the_suite_are_kept(tmp_path: Path, lh: Lakehouse) -> None:
    path = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n"
        "  - {name: usd_only, allowed: {column: currency, values: [USD]}}\n",
    )
    (check,) = load_suite(path, lh.tables).checks
    assert check.spec.values == ("USD",)


@pytest.mark.parametrize(
    ("body", "name", "expected"),
    [
        (
            "layer: silver\ntable: orders\nchecks:\n"
            "  - {name: country_ok, allowed: {column: shipping_country}}\n",
            "silver.orders.yaml",
            r"column 'shipping_country' of .*tables/orders\.yaml declares no allowed values",
        ),
        (
            "layer: silver\ntable: orders\nchecks:\n"
            "  - {name: colour_ok, allowed: {column: colour}}\n",
            "silver.orders.yaml",
            r"'colour' is not a column of .*tables/orders\.yaml",
        ),
        (
            "layer: silver\ntable: events\nchecks:\n  - {name: kind_ok, allowed: {column: kind}}\n",
            "silver.events.yaml",
            r"no table spec .*tables/events\.yaml",
        ),
        (
            "layer: gold\ntable: fact_orders\nchecks:\n"
            "  - {name: status_ok, allowed: {column: status}}\n",
            "gold.fact_orders.yaml",
            r"gold\.fact_orders has no table spec to take them from",
        ),
    ],
)
def test_allowed_without_values_fails_naming_file_check_and_why(
    tmp_path: Path, lh: Lakehouse, body: str, name: str, expected: str
) -> None:
    path = _write(tmp_path, body, name=name)
    with pytest.raises(ConfigError) as err:
        load_suite(path, lh.tables)
    message = str(err.value)
    assert message.startswith(f"{path}: check '")
    assert "allowed.values omitted" in message
    assert re.search(expected, message), message


def test_allowed_without_values_needs_the_table_specs(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "layer: silver\ntable: orders\nchecks:\n  - {name: status_ok, allowed: {column: status}}\n",
    )
    expected = r"check 'status_ok': allowed\.values omitted.*table specs"
    with pytest.raises(ConfigError, match=expected):
        load_suite(path)
