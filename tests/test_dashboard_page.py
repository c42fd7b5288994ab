"""The KPI dashboard as a reader gets it: its comparisons and payments by method computed by hand,
then the page opened in headless Chromium at 1366 px, for a small shop and for one taking tens of
millions a day (docs/REPORTS.md). The page built from a real pipeline run is opened in
tests/test_pipeline.py."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.gold.dashboard import (
    FUNNEL_STEPS,
    METHOD_DAYS,
    charts,
    funnel_totals,
    method_totals,
    month_to_date,
    render_dashboard,
    week_over_week,
)
from lakehouse.gold.kpis import payments_by_method
from lakehouse_dev.browser import PageCheck, inspect_page
from lakehouse_dev.kpi_samples import synthetic_kpis

D = dt.date


def day(date: dt.date, orders: int, gross: str, net: str, new: int = 1) -> dict[str, Any]:
    return {
        "order_date": date,
        "orders": orders,
        "gross_revenue_usd": Decimal(gross),
        "net_revenue_usd": Decimal(net),
        "avg_order_value_usd": None,
        "customers": new,
        "new_customers": new,
        "returning_customers": 0,
        "orders_unpriced": 0,
    }


def figures(comparisons: list[Any]) -> dict[str, tuple[Any, Any, Any]]:
    return {c.label: (c.current, c.previous, c.change) for c in comparisons}


# ---------------------------------------------------------------------------------------------
# Comparisons and payments by method


def test_the_last_day_is_compared_with_the_same_weekday_a_week_before() -> None:
    days = [
        day(D(2024, 3, 5), 4, "100.00", "90.00", new=2),  # a Tuesday
        day(D(2024, 3, 8), 9, "999.00", "999.00"),
        day(D(2024, 3, 12), 5, "150.00", "120.00", new=3),  # the next Tuesday
    ]

    last, before, comparisons = week_over_week(days)  # type: ignore[misc]

    assert (last, before) == (D(2024, 3, 12), D(2024, 3, 5))
    assert figures(comparisons) == {
        "Orders": (5, 4, Decimal("0.25")),
        "Gross revenue": (Decimal("150.00"), Decimal("100.00"), Decimal("0.5")),
        "Net revenue": (Decimal("120.00"), Decimal("90.00"), Decimal("30") / Decimal("90")),
        "Avg order value": (Decimal("30.00"), Decimal("25.00"), Decimal("0.2")),
        "New customers": (3, 2, Decimal("0.5")),
    }


def test_a_weekday_without_orders_counts_0_and_one_before_the_lake_is_unknown() -> None:
    days = [day(D(2024, 3, 1), 1, "9.00", "9.00"), day(D(2024, 3, 12), 5, "150.00", "120.00")]
    _, _, comparisons = week_over_week(days)  # type: ignore[misc]
    assert figures(comparisons)["Orders"] == (5, 0, None)  # no row for Mar 5: no orders
    assert figures(comparisons)["Gross revenue"] == (Decimal("150.00"), Decimal("0.00"), None)
    _, _, comparisons = week_over_week(days[1:])  # type: ignore[misc]
    assert figures(comparisons)["Orders"] == (5, None, None)  # the lake began after Mar 5
    assert week_over_week([]) is None


def test_month_to_date_is_compared_with_the_same_days_of_the_month_before() -> None:
    days = [
        day(D(2024, 2, 1), 1, "10.00", "10.00"),
        day(
            D(2024, 2, 29), 2, "20.00", "20.00"
        ),  # after Mar 30's day of month: left out? no, Feb ends on 29
        day(D(2024, 3, 1), 3, "33.33", "30.00"),
        day(D(2024, 3, 30), 4, "40.01", "40.00"),
    ]

    (start, end), (p_start, p_end), comparisons = month_to_date(days)  # type: ignore[misc]

    # March 1-30 against February 1-29 (February has no 30th: to its last day).
    assert (start, end, p_start, p_end) == (
        D(2024, 3, 1),
        D(2024, 3, 30),
        D(2024, 2, 1),
        D(2024, 2, 29),
    )
    got = figures(comparisons)
    assert got["Orders"] == (7, 3, Decimal(4) / Decimal(3))
    assert got["Gross revenue"][:2] == (Decimal("73.34"), Decimal("30.00"))
    # 73.34 / 7 = 10.477... -> 10.48; 30 / 3 = 10.00
    assert got["Avg order value"][:2] == (Decimal("10.48"), Decimal("10.00"))


def test_month_to_date_leaves_out_the_days_of_the_month_before_after_the_same_day() -> None:
    days = [
        day(D(2024, 2, 15), 2, "20.00", "20.00"),
        day(D(2024, 2, 16), 50, "500.00", "500.00"),  # after February 15th: left out
        day(D(2024, 3, 15), 3, "33.00", "33.00"),
    ]
    _, (p_start, p_end), comparisons = month_to_date(days)  # type: ignore[misc]
    assert (p_start, p_end) == (D(2024, 2, 1), D(2024, 2, 15))
    # The lake began on February 15th, after February 1st: February's figures are unknown.
    assert figures(comparisons)["Orders"] == (3, None, None)
    days = [day(D(2024, 1, 31), 1, "1.00", "1.00"), *days]
    _, _, comparisons = month_to_date(days)  # type: ignore[misc]
    assert figures(comparisons)["Orders"] == (3, 2, Decimal("0.5"))
    assert figures(comparisons)["Gross revenue"][:2] == (Decimal("33.00"), Decimal("20.00"))


def test_month_to_date_against_a_month_with_no_orders_and_before_the_lake_began() -> None:
    # February 1-10 against January 1-10, when the lake began in December: January's 1-10 had
    # no orders (0, and no relative change from 0).
    days = [day(D(2023, 12, 15), 1, "5.00", "5.00"), day(D(2024, 2, 10), 2, "8.00", "8.00")]
    _, (p_start, p_end), comparisons = month_to_date(days)  # type: ignore[misc]
    assert (p_start, p_end) == (D(2024, 1, 1), D(2024, 1, 10))
    assert figures(comparisons)["Orders"] == (2, 0, None)
    # When the lake began after January 1st, January's figures are unknown, not 0.
    days = [day(D(2024, 1, 20), 1, "5.00", "5.00"), day(D(2024, 2, 10), 2, "8.00", "8.00")]
    _, _, comparisons = month_to_date(days)  # type: ignore[misc]
    assert figures(comparisons)["Orders"] == (2, None, None)


def test_payments_by_method_per_day_rounded_half_up_with_unpriced_left_out(
    spark: SparkSession,
) -> None:
    rows = [
        ("2024-01-01", "card", "captured", "10.005"),
        ("2024-01-01", "card", "captured", "0.000"),
        ("2024-01-01", "card", "refunded", "2.5"),
        ("2024-01-01", "card", "failed", None),
        ("2024-01-01", "paypal", "captured", None),  # no usable rate: left out of the sum
        ("2024-01-01", "paypal", "failed", None),
        ("2024-01-02", "card", "failed", None),
    ]
    facts = spark.createDataFrame(
        rows, "event_date string, method string, event_type string, amount_usd string"
    ).selectExpr(
        "CAST(event_date AS DATE) AS event_date",
        "method",
        "event_type",
        "CAST(amount_usd AS DECIMAL(38,10)) AS amount_usd",
    )

    got = [
        r.asDict()
        for r in facts.transform(payments_by_method).orderBy("event_date", "method").collect()
    ]

    assert got == [
        {
            "event_date": D(2024, 1, 1),
            "method": "card",
            "captured_usd": Decimal("10.01"),
            "refunded_usd": Decimal("2.50"),
            "payments_failed": 1,
        },
        {
            "event_date": D(2024, 1, 1),
            "method": "paypal",
            "captured_usd": Decimal("0.00"),
            "refunded_usd": Decimal("0.00"),
            "payments_failed": 1,
        },
        {
            "event_date": D(2024, 1, 2),
            "method": "card",
            "captured_usd": Decimal("0.00"),
            "refunded_usd": Decimal("0.00"),
            "payments_failed": 1,
        },
    ]


def test_method_totals_sum_the_days_and_give_each_methods_share() -> None:
    rows = [
        {"event_date": D(2024, 1, 1), "method": "paypal", "captured_usd": Decimal("25.00"),
         "refunded_usd": Decimal("1.00"), "payments_failed": 1},
        {"event_date": D(2024, 1, 1), "method": "card", "captured_usd": Decimal("50.00"),
         "refunded_usd": Decimal("0.00"), "payments_failed": 0},
        {"event_date": D(2024, 1, 2), "method": "card", "captured_usd": Decimal("25.00"),
         "refunded_usd": Decimal("2.00"), "payments_failed": 3},
    ]  # fmt: skip
    assert [
        (m["method"], m["captured_usd"], m["refunded_usd"], m["payments_failed"], m["share"])
        for m in method_totals(rows)
    ] == [
        ("card", Decimal("75.00"), Decimal("2.00"), 3, Decimal("0.75")),
        ("paypal", Decimal("25.00"), Decimal("1.00"), 1, Decimal("0.25")),
    ]


def funnel_day(day: dt.date, *counts: int) -> dict[str, Any]:
    return {
        "session_date": day,
        **{col: n for (col, _), n in zip(FUNNEL_STEPS, counts, strict=True)},
    }


def test_the_funnel_sums_the_sessions_of_each_step_over_the_last_28_session_dates() -> None:
    first = D(2024, 1, 1)
    rows = [funnel_day(first + dt.timedelta(days=i), 10 + i, 6, 3, 2, 1) for i in range(30)]
    # the first two dates are more than 28 days before the newest (Jan 30): left out
    assert funnel_totals(rows) == [
        ("sessions", sum(10 + i for i in range(2, 30))),
        ("viewed a product", 6 * 28),
        ("added to cart", 3 * 28),
        ("checked out", 2 * 28),
        ("purchased", 28),
    ]
    assert funnel_totals([]) == []


# ---------------------------------------------------------------------------------------------
# The page


def test_the_page_is_one_file_with_its_figures_embedded() -> None:
    data = synthetic_kpis(days=10)
    page = render_dashboard(data)

    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page)
    assert "Plotly.newPlot" in page and "plotly.js v" in page  # the library is inlined
    embedded = json.loads(page.split('id="kpi-data">', 1)[1].split("</script>", 1)[0])
    assert [d["orders"] for d in embedded["daily_kpis"]] == [
        d["orders"] for d in data["daily_kpis"]
    ]
    assert len(embedded["payments_by_method"]) == len(data["payments_by_method"]) == 10 * 4
    figures = json.loads(page.split('id="chart-data">', 1)[1].split("</script>", 1)[0])
    assert sorted(figures) == sorted(c["id"] for c in charts(data))
    assert figures["revenue"]["data"][0]["y"] == [
        float(d["gross_revenue_usd"]) for d in data["daily_kpis"]
    ]


def test_text_in_the_figures_cannot_end_or_change_the_pages_scripts() -> None:
    data = synthetic_kpis(days=3)
    for row in data["payments_by_method"]:
        row["method"] = "<!--<script>x</script>&"
    page = render_dashboard(data)
    assert "<!--<script>" not in page and "x</script>&" not in page
    embedded = json.loads(page.split('id="kpi-data">', 1)[1].split("</script>", 1)[0])
    assert embedded["payments_by_method"][0]["method"] == "<!--<script>x</script>&"


SHOPS = {
    # (days, orders a day, order value): about $8,000 and about $20M a day
    "small": (5, 100, 80.0),
    "large": (60, 200_000, 100.0),
}


@pytest.fixture(scope="module", params=sorted(SHOPS))
def opened(
    request: pytest.FixtureRequest, chromium: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], PageCheck, Path]:
    days, orders, value = SHOPS[request.param]
    data = synthetic_kpis(days=days, orders_per_day=orders, order_value=value)
    folder = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    path = folder / "dashboard.html"
    path.write_text(render_dashboard(data), encoding="utf-8")
    check = inspect_page(
        chromium,
        path,
        texts=["#tiles", "#compare-week", "#compare-month", "#methods", "#products"],
    )
    return data, check, folder


def test_the_page_opens_offline_without_errors_and_fits_a_laptop_screen(
    opened: tuple[dict[str, Any], PageCheck, Path],
) -> None:
    _, check, folder = opened
    assert check.problems == []
    assert check.console_errors == [] and check.requests == []
    assert check.page_width <= 1366 and check.overflowing == [] and check.clipped == []
    assert (
        Path(check.screenshot) == folder / "dashboard.png"
        and Path(check.screenshot).stat().st_size > 10_000
    )


def test_every_chart_draws_a_mark_per_figure(
    opened: tuple[dict[str, Any], PageCheck, Path],
) -> None:
    data, check, _ = opened
    n = len(data["daily_kpis"])
    method_days = len({r["event_date"] for r in data["payments_by_method"]})
    marks = {c: v["marks"] for c, v in check.charts.items()}
    assert marks == {
        "revenue": n + 1,  # a bar a day, and the net line
        "orders": n,
        "aov": 1,
        "customers": 2 * n,
        "capture": 1,
        "methods": 4 * method_days,
        "retention": 1,  # the heat map is one image
        "funnel": 2 * len(FUNNEL_STEPS),  # a bar a step and the connector under it
        "conversion": 2,
    }


def test_the_tiles_show_the_totals_of_the_days(
    opened: tuple[dict[str, Any], PageCheck, Path],
) -> None:
    data, check, _ = opened
    days = data["daily_kpis"]
    gross = sum((d["gross_revenue_usd"] for d in days), Decimal("0.00"))
    orders = sum(d["orders"] for d in days)
    tiles = check.texts["#tiles"]
    assert f"${gross:,.2f}" in tiles and f"{orders:,}" in tiles
    last = days[-1]
    week_before = last["order_date"] - dt.timedelta(days=7)
    before = next((d for d in days if d["order_date"] == week_before), None)
    if before is None:  # the made-up lake began after that day: unknown
        prev_orders, prev_gross = "—", "—"
    else:
        prev_orders = f"{before['orders']:,}"
        prev_gross = f"${before['gross_revenue_usd']:,.2f}"
    lines = check.texts["#compare-week"].splitlines()
    assert lines[2].startswith(f"Orders\t{last['orders']:,}\t{prev_orders}\t")
    assert lines[3].startswith(f"Gross revenue\t${last['gross_revenue_usd']:,.2f}\t{prev_gross}\t")
    month = [d for d in days if d["order_date"].month == last["order_date"].month]
    orders_mtd = sum(d["orders"] for d in month)
    lines = check.texts["#compare-month"].splitlines()
    assert lines[2].startswith(f"Orders\t{orders_mtd:,}\t")


def test_the_money_axes_abbreviate_large_amounts(
    opened: tuple[dict[str, Any], PageCheck, Path],
) -> None:
    data, check, _ = opened
    ticks = check.charts["revenue"]["ticks"]
    top = max(float(d["gross_revenue_usd"]) for d in data["daily_kpis"])
    assert ticks[0] == "$0" and all(t.startswith("$") and len(t) <= 6 for t in ticks), ticks
    if top > 10_000_000:
        assert any(t.endswith("M") for t in ticks), ticks
    # The orders axis counts whole orders ("k" for thousands; never a milli- or G suffix).
    assert all(re.fullmatch(r"[\d.]+k?", t) for t in check.charts["orders"]["ticks"])


def test_the_funnel_and_the_product_table_show_the_behaviour_marts(
    opened: tuple[dict[str, Any], PageCheck, Path],
) -> None:
    data, check, _ = opened
    lines = check.texts["#products"].splitlines()
    top = data["top_products"][0]
    assert lines[1] == "Product\tViews\tAdded to cart\tPurchases\tPurchases per view"
    assert lines[2] == (
        f"{top['product_id']}\t{top['views']:,}\t{top['add_to_carts']:,}\t"
        f"{top['purchases']:,}\t{top['view_to_purchase_rate'] * 100:.2f}%"
    )
    assert len(lines) == 2 + len(data["top_products"])
    # the funnel sums the last 28 session dates of gold.daily_funnel, step by step
    days = data["daily_funnel"]
    recent = days[-28:]
    assert recent[0]["session_date"] == days[-1]["session_date"] - dt.timedelta(days=27) or (
        len(days) < 28
    )
    figure = next(c for c in charts(data) if c["id"] == "funnel")["figure"]
    assert figure["data"][0]["x"] == [
        sum(d[col] for d in recent)
        for col in (
            "sessions",
            "with_product_view",
            "with_add_to_cart",
            "with_checkout",
            "with_purchase",
        )
    ]
    assert figure["data"][0]["y"] == [
        "sessions",
        "viewed a product",
        "added to cart",
        "checked out",
        "purchased",
    ]


def test_the_payments_by_method_table_covers_the_last_days(
    opened: tuple[dict[str, Any], PageCheck, Path],
) -> None:
    data, check, _ = opened
    totals = method_totals(data["payments_by_method"])
    text = check.texts["#methods"]
    assert f"last {METHOD_DAYS} days" in text
    for m in totals:
        assert f"{m['method']}\t${m['captured_usd']:,.2f}" in text


def test_the_checker_itself_catches_a_broken_page(chromium: Any, tmp_path: Path) -> None:
    """The measures above can fail: a page with an error, a request, an empty chart, a box
    wider than its parent and a label pushed out of its chart is reported for each."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><html><body style="margin:0;width:1366px">'
        '<div style="width:300px"><p style="white-space:nowrap">'
        + "$1,000,000,000.00 "
        * 5
        + "</p></div>"
        '<div data-chart="empty"><svg class="main-svg"></svg></div>'
        '<div data-chart="clip" style="width:100px;height:50px"><svg class="main-svg">'
        '<g class="ytick"><text x="300" y="20">$10,000,000</text></g></svg></div>'
        '<img src="http://127.0.0.1:9/x.png">'
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    check = inspect_page(chromium, page)
    problems = "\n".join(check.problems)
    assert "console error: boom" in problems
    assert "request beyond the file: http://127.0.0.1:9/x.png" in problems
    assert "chart empty drew nothing" in problems
    assert "wider than its box: div" in problems
    assert "label outside its chart: clip: $10,000,000" in problems


def test_a_lakehouse_without_orders_gets_a_page_that_says_so(chromium: Any, tmp_path: Path) -> None:
    empty: dict[str, list[Any]] = {
        "daily_kpis": [],
        "daily_payments": [],
        "customer_retention": [],
        "payments_by_method": [],
    }
    path = tmp_path / "dashboard.html"
    path.write_text(render_dashboard(empty), encoding="utf-8")

    check = inspect_page(chromium, path, texts=["main"])

    assert check.problems == [] and check.charts == {}
    assert check.texts["main"].count("No data yet.") == 9
    assert "No payments yet." in check.texts["main"]
    assert "No product activity yet." in check.texts["main"]


def test_billions_a_day_and_a_handful_of_orders_keep_readable_axes(
    chromium: Any, tmp_path: Path
) -> None:
    data = synthetic_kpis(days=3, orders_per_day=2, order_value=1_000_000_000.0)
    path = tmp_path / "dashboard.html"
    path.write_text(render_dashboard(data), encoding="utf-8")

    check = inspect_page(chromium, path)

    assert check.problems == []
    assert any(re.fullmatch(r"\$[\d.]+B", t) for t in check.charts["revenue"]["ticks"])
    top = max(d["orders"] for d in data["daily_kpis"])
    assert check.charts["orders"]["ticks"] == [
        str(n) for n in range(len(check.charts["orders"]["ticks"]))
    ]
    assert int(check.charts["orders"]["ticks"][-1]) >= top
