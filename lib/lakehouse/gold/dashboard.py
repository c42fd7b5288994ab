"""A static, self-contained HTML dashboard of the gold KPIs, and a short terminal summary.

One HTML file (`templates/dashboard.html.j2`, `lakehouse.core.pages`): inline CSS, charts drawn in
the browser by the inlined plotly.js from figures embedded as JSON, nothing fetched from the
network. The figures are embedded twice so tools and tests can read them back: a
`<script type="application/json" id="kpi-data">` block (decimals as strings, exactly as stored)
and the daily table, whose cells carry `data-col` / `data-value`. Totals on the tiles are sums of
the rounded per-day figures; the comparisons and payments by method are described in
docs/REPORTS.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core import pages
from lakehouse.core.context import Lakehouse
from lakehouse.gold.behaviour import top_products
from lakehouse.gold.build import GoldBuildError
from lakehouse.gold.kpis import payments_by_method
from lakehouse.gold.published import published_versions, read_gold
from lakehouse.state import reports

KPI_TABLES = ("daily_kpis", "daily_payments", "customer_retention")
# Payments by method cover the last this many days of gold.daily_payments; the funnel and the
# product table the last this many days of gold.daily_funnel and gold.product_engagement.
METHOD_DAYS = 28
# Products in the dashboard's product table.
TOP_PRODUCTS = 10

Record = dict[str, Any]


def read_kpis(spark: SparkSession, lh: Lakehouse, methods: bool = True) -> dict[str, list[Record]]:
    """The three small KPI tables (`KPI_TABLES`) as lists of dicts, each with every column of
    its table (dates as `date`, money as `Decimal`), ordered by the table's key; as the newest
    published set has them (`gold.published.read_gold`), never a run's half-published state.
    Also `payments_by_method` (`kpis.payments_by_method`) over the last `METHOD_DAYS` days of
    daily_payments, from the published gold.fact_payments (empty when `methods` is false)."""
    out: dict[str, list[Record]] = {}
    published = published_versions(spark, lh)
    for table in KPI_TABLES:
        path = lh.path(f"gold.{table}")
        if not DeltaTable.isDeltaTable(spark, path):
            raise GoldBuildError(f"gold.{table} does not exist at {path}: run build_gold first")
        keys = lh.gold[table].keys
        rows = read_gold(spark, lh, table, published).orderBy(*keys).collect()
        out[table] = [r.asDict() for r in rows]
    out["payments_by_method"] = []
    facts_path = lh.path("gold.fact_payments")
    if methods and out["daily_payments"]:
        if not DeltaTable.isDeltaTable(spark, facts_path):
            raise GoldBuildError(f"gold.fact_payments does not exist at {facts_path}")
        last = out["daily_payments"][-1]["event_date"]
        since = last - dt.timedelta(days=METHOD_DAYS - 1)
        facts = read_gold(spark, lh, "fact_payments", published).where(
            (F.col("event_date") >= F.lit(since)) & (F.col("event_date") <= F.lit(last))
        )
        rows = facts.transform(payments_by_method).orderBy("event_date", "method").collect()
        out["payments_by_method"] = [r.asDict() for r in rows]
    out.update(_behaviour(spark, lh, published) if methods else {})
    return out


def _behaviour(spark: SparkSession, lh: Lakehouse, published: dict[str, int]) -> dict[str, Any]:
    """`daily_funnel`: every row of gold.daily_funnel, by date; `top_products`: `top_products`
    over the last `METHOD_DAYS` days of gold.product_engagement. Empty for a mart no spec names or
    not built yet (gold built before the marts existed)."""
    out: dict[str, list[Record]] = {"daily_funnel": [], "top_products": []}

    def built(table: str) -> bool:
        return table in lh.gold and DeltaTable.isDeltaTable(spark, lh.path(f"gold.{table}"))

    if built("daily_funnel"):
        rows = read_gold(spark, lh, "daily_funnel", published).orderBy("session_date").collect()
        out["daily_funnel"] = [r.asDict() for r in rows]
    if built("product_engagement"):
        engagement = read_gold(spark, lh, "product_engagement", published)
        last = engagement.select(F.max("date")).first()
        if last is not None and last[0] is not None:
            since = last[0] - dt.timedelta(days=METHOD_DAYS - 1)
            recent = engagement.where(F.col("date") >= F.lit(since))
            rows = top_products(recent, TOP_PRODUCTS).collect()
            out["top_products"] = [r.asDict() for r in rows]
    return out


def kpi_data_json(data: dict[str, list[Record]]) -> str:
    """The figures as JSON: dates ISO strings, decimals strings (exact), counts numbers."""

    def plain(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    doc = {t: [{k: plain(v) for k, v in r.items()} for r in rows] for t, rows in data.items()}
    return pages.script_json(doc, indent=1)


def write_dashboard(spark: SparkSession, lh: Lakehouse, run_id: str) -> str:
    """Write the dashboard of the published gold KPI tables (one HTML file) as run `run_id`'s
    `dashboard.html` under the reports root, local or S3, and in `latest/`
    (`lakehouse.state.reports`); return the run's copy's location."""
    return reports.publish(
        lh.config, run_id, "dashboard.html", render_dashboard(read_kpis(spark, lh))
    )


def kpi_summary_text(spark: SparkSession, lh: Lakehouse) -> str:
    """A few lines for the terminal: totals over all days and the figures of the last day."""
    data = read_kpis(spark, lh, methods=False)
    days, pays = data["daily_kpis"], data["daily_payments"]
    if not days:
        return "gold.daily_kpis is empty: no orders yet."
    t = _totals(days, pays)
    last = days[-1]
    last_pay = next((p for p in pays if p["event_date"] == last["order_date"]), None)
    lines = [
        f"Gold KPIs {days[0]['order_date']} .. {last['order_date']} ({len(days)} order days)",
        f"  orders {t['orders']:,}  gross {_usd(t['gross'])}  net {_usd(t['net'])}  "
        f"AOV {_usd(t['aov'])}  new customers {t['new']:,}  unpriced orders {t['unpriced']:,}",
        f"  payments: captured {_usd(t['captured'])}  refunded {_usd(t['refunded'])}  "
        f"failed {t['failed']:,}",
        f"  last day {last['order_date']}: orders {last['orders']:,}, "
        f"gross {_usd(last['gross_revenue_usd'])}, net {_usd(last['net_revenue_usd'])}, "
        f"AOV {_usd(last['avg_order_value_usd'])}, new {last['new_customers']:,}, "
        f"returning {last['returning_customers']:,}, unpriced {last['orders_unpriced']:,}, "
        f"capture rate {_pct(last_pay['capture_rate'] if last_pay else None)}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Formatting


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def _totals(days: list[Record], pays: list[Record]) -> Record:
    orders = sum(d["orders"] for d in days)
    gross = sum((d["gross_revenue_usd"] for d in days), Decimal("0.00"))
    return {
        "orders": orders,
        "gross": gross,
        "net": sum((d["net_revenue_usd"] for d in days), Decimal("0.00")),
        "aov": _per(gross, orders),
        "new": sum(d["new_customers"] for d in days),
        "unpriced": sum(d["orders_unpriced"] for d in days),
        "captured": sum((p["captured_usd"] for p in pays), Decimal("0.00")),
        "refunded": sum((p["refunded_usd"] for p in pays), Decimal("0.00")),
        "failed": sum(p["payments_failed"] for p in pays),
    }


def _data_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _per(amount: Decimal, count: int) -> Decimal | None:
    """`amount / count` to the cent, half-up (metrics.md's rounding); None when `count` is 0."""
    return (amount / count).quantize(Decimal("0.01"), ROUND_HALF_UP) if count else None


# ---------------------------------------------------------------------------------------------
# Comparisons (docs/REPORTS.md, "The KPI dashboard")


@dataclass(frozen=True)
class Comparison:
    """One figure of a period against the period it is compared with; `change` is the relative
    change (None when the earlier figure is missing or 0)."""

    label: str
    current: Decimal | int | None
    previous: Decimal | int | None
    money: bool

    @property
    def change(self) -> Decimal | None:
        if self.current is None or self.previous is None or self.previous == 0:
            return None
        return (Decimal(self.current) - Decimal(self.previous)) / Decimal(self.previous)


def _figures(days: list[Record]) -> list[tuple[str, Decimal | int | None, bool]]:
    orders = sum(d["orders"] for d in days)
    gross = sum((d["gross_revenue_usd"] for d in days), Decimal("0.00"))
    return [
        ("Orders", orders, False),
        ("Gross revenue", gross, True),
        ("Net revenue", sum((d["net_revenue_usd"] for d in days), Decimal("0.00")), True),
        ("Avg order value", _per(gross, orders), True),
        ("New customers", sum(d["new_customers"] for d in days), False),
    ]


def _compare(current: list[Record], previous: list[Record] | None) -> list[Comparison]:
    before = _figures(previous) if previous is not None else None
    return [
        Comparison(label, value, before[i][1] if before is not None else None, money)
        for i, (label, value, money) in enumerate(_figures(current))
    ]


def week_over_week(days: list[Record]) -> tuple[dt.date, dt.date, list[Comparison]] | None:
    """The last order date against the same weekday a week earlier: that day's figures, 0 when
    gold.daily_kpis has no row for it, unknown (None) when the lake's first order date is later;
    None when there is no order date."""
    if not days:
        return None
    last = days[-1]["order_date"]
    before = last - dt.timedelta(days=7)
    earlier = [d for d in days if d["order_date"] == before]
    known = days[0]["order_date"] <= before
    return last, before, _compare([days[-1]], earlier if known else None)


def month_to_date(
    days: list[Record],
) -> tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date], list[Comparison]] | None:
    """The month of the last order date, from its 1st to that date, against the same days of the
    month before (to its last day when it is shorter); None when there is no order date."""
    if not days:
        return None
    last = days[-1]["order_date"]
    start = last.replace(day=1)
    prev_end_of_month = start - dt.timedelta(days=1)
    prev_start = prev_end_of_month.replace(day=1)
    prev_end = prev_start.replace(day=min(last.day, prev_end_of_month.day))
    current = [d for d in days if start <= d["order_date"] <= last]
    previous = [d for d in days if prev_start <= d["order_date"] <= prev_end]
    has_history = days[0]["order_date"] <= prev_start
    return (
        (start, last),
        (prev_start, prev_end),
        _compare(current, previous if has_history else None),
    )


def method_totals(rows: list[Record]) -> list[Record]:
    """Payments by method summed over the rows' days, the largest capture first, with each
    method's share of the captured amount (None when nothing was captured)."""
    methods: dict[str, Record] = {}
    for r in rows:
        m = methods.setdefault(
            r["method"],
            {
                "method": r["method"],
                "captured_usd": Decimal("0.00"),
                "refunded_usd": Decimal("0.00"),
                "payments_failed": 0,
            },
        )
        m["captured_usd"] += r["captured_usd"]
        m["refunded_usd"] += r["refunded_usd"]
        m["payments_failed"] += r["payments_failed"]
    total = sum((m["captured_usd"] for m in methods.values()), Decimal("0.00"))
    out = sorted(methods.values(), key=lambda m: (-m["captured_usd"], m["method"]))
    for m in out:
        m["share"] = m["captured_usd"] / total if total else None
    return out


# ---------------------------------------------------------------------------------------------
# Charts: plotly.js figures ({"data": traces, "layout": ...}), drawn by the page's script

PALETTE = {
    "gross": "#4f46e5",
    "net": "#0ea5e9",
    "orders": "#14b8a6",
    "aov": "#f59e0b",
    "new": "#22c55e",
    "returning": "#6366f1",
    "capture": "#e11d48",
}
METHOD_COLORS = ("#4f46e5", "#0ea5e9", "#f59e0b", "#22c55e", "#e11d48", "#64748b")

# Money axes: "$" and plotly's own abbreviations (exponentformat "B": 10k, $10M, $1.5B; a d3
# "~s" format would write $1.5G, and 500m for a half); hover shows the exact cents.
_MONEY_AXIS = {"tickprefix": "$", "exponentformat": "B", "rangemode": "tozero"}


def _count_axis(values: list[Any]) -> Record:
    """Counts: abbreviated like money, and whole numbers only (a tick a unit when the largest
    count is small, where plotly would mark halves)."""
    top = max((v for v in values if v is not None), default=0)
    return {"exponentformat": "B", "rangemode": "tozero", **({"dtick": 1} if top < 5 else {})}


_MONEY_HOVER = "%{x|%a %Y-%m-%d} %{fullData.name}: $%{y:,.2f}<extra></extra>"
_COUNT_HOVER = "%{x|%a %Y-%m-%d} %{fullData.name}: %{y:,}<extra></extra>"


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _figure(traces: list[Record], yaxis: Record, barmode: str = "group") -> Record:
    return {
        "data": traces,
        "layout": {
            "barmode": barmode,
            "yaxis": {"automargin": True, "fixedrange": True, **yaxis},
            "xaxis": {"type": "date", "automargin": True, "tickformat": "%b %d"},
            "legend": {"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
            "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
            "height": 260,
            "hovermode": "x unified" if len(traces) > 1 else "closest",
        },
    }


def _bars(name: str, color: str, x: list[str], y: list[Any], money: bool) -> Record:
    return {
        "type": "bar",
        "name": name,
        "x": x,
        "y": [_num(v) for v in y],
        "marker": {"color": color},
        "hovertemplate": _MONEY_HOVER if money else _COUNT_HOVER,
    }


def _line(name: str, color: str, x: list[str], y: list[Any], hover: str) -> Record:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": x,
        "y": [_num(v) for v in y],
        "line": {"color": color, "width": 2},
        "marker": {"size": 5},
        "connectgaps": False,
        "hovertemplate": hover,
    }


def charts(data: dict[str, list[Record]]) -> list[Record]:
    """The dashboard's charts: each {"id", "title", "figure"}."""
    days, pays = data["daily_kpis"], data["daily_payments"]
    x = [d["order_date"].isoformat() for d in days]
    px = [p["event_date"].isoformat() for p in pays]
    out = [
        (
            "revenue",
            "Revenue per day (USD)",
            _figure(
                [
                    _bars(
                        "gross", PALETTE["gross"], x, [d["gross_revenue_usd"] for d in days], True
                    ),
                    _line(
                        "net", PALETTE["net"], x, [d["net_revenue_usd"] for d in days], _MONEY_HOVER
                    ),
                ],
                _MONEY_AXIS,
            ),
        ),
        (
            "orders",
            "Orders per day",
            _figure(
                [_bars("orders", PALETTE["orders"], x, [d["orders"] for d in days], False)],
                _count_axis([d["orders"] for d in days]),
            ),
        ),
        (
            "aov",
            "Average order value (USD)",
            _figure(
                [
                    _line(
                        "AOV",
                        PALETTE["aov"],
                        x,
                        [d["avg_order_value_usd"] for d in days],
                        _MONEY_HOVER,
                    )
                ],
                _MONEY_AXIS,
            ),
        ),
        (
            "customers",
            "New vs returning customers",
            _figure(
                [
                    _bars("new", PALETTE["new"], x, [d["new_customers"] for d in days], False),
                    _bars(
                        "returning",
                        PALETTE["returning"],
                        x,
                        [d["returning_customers"] for d in days],
                        False,
                    ),
                ],
                _count_axis([d["customers"] for d in days]),
                barmode="stack",
            ),
        ),
        (
            "capture",
            "Capture rate (captured / (captured + failed))",
            _figure(
                [
                    _line(
                        "capture rate",
                        PALETTE["capture"],
                        px,
                        [p["capture_rate"] for p in pays],
                        "%{x|%a %Y-%m-%d}: %{y:.2%}<extra></extra>",
                    )
                ],
                {"tickformat": ".0%", "range": [0, 1.02]},
            ),
        ),
        (
            "methods",
            f"Captured by payment method, last {METHOD_DAYS} days (USD)",
            _methods_figure(data),
        ),
        ("retention", "Retention by cohort", _retention_figure(data["customer_retention"])),
        (
            "funnel",
            f"Purchase funnel, sessions of the last {METHOD_DAYS} days",
            _funnel_figure(data.get("daily_funnel", [])),
        ),
        ("conversion", "Conversion and cart abandonment", _conversion_figure(data)),
    ]
    return [
        {"id": i, "title": t, "figure": f, "empty": not any(tr["x"] for tr in f["data"])}
        for i, t, f in out
    ]


# The funnel's steps: (gold.daily_funnel column, label).
FUNNEL_STEPS = (
    ("sessions", "sessions"),
    ("with_product_view", "viewed a product"),
    ("with_add_to_cart", "added to cart"),
    ("with_checkout", "checked out"),
    ("with_purchase", "purchased"),
)


def funnel_totals(rows: list[Record]) -> list[tuple[str, int]]:
    """Sessions reaching each funnel step over the newest `METHOD_DAYS` session dates of
    gold.daily_funnel rows: [(label, sessions)] in the funnel's order; [] without rows."""
    if not rows:
        return []
    last = max(r["session_date"] for r in rows)
    recent = [r for r in rows if r["session_date"] > last - dt.timedelta(days=METHOD_DAYS)]
    return [(label, sum(r[col] for r in recent)) for col, label in FUNNEL_STEPS]


def _funnel_figure(rows: list[Record]) -> Record:
    steps = funnel_totals(rows)
    trace = {
        "type": "funnel",
        "name": "sessions",
        "y": [label for label, _ in steps],
        "x": [n for _, n in steps],
        "texttemplate": "%{value:,}<br>%{percentInitial:.0%}",
        "marker": {"color": PALETTE["orders"]},
        "hovertemplate": "%{y}: %{x:,} (%{percentInitial:.1%} of sessions)<extra></extra>",
    }
    return {
        "data": [trace],
        "layout": {
            "yaxis": {"automargin": True, "fixedrange": True},
            "xaxis": {"fixedrange": True, "visible": False},
            "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
            "height": 260,
            "showlegend": False,
        },
    }


def _conversion_figure(data: dict[str, list[Record]]) -> Record:
    rows = data.get("daily_funnel", [])
    x = [r["session_date"].isoformat() for r in rows]
    hover = "%{x|%a %Y-%m-%d} %{fullData.name}: %{y:.2%}<extra></extra>"
    return _figure(
        [
            _line("conversion", PALETTE["orders"], x, [r["conversion_rate"] for r in rows], hover),
            _line(
                "cart abandonment",
                PALETTE["capture"],
                x,
                [r["cart_abandonment_rate"] for r in rows],
                hover,
            ),
        ],
        {"tickformat": ".0%", "range": [0, 1.02]},
    )


def _methods_figure(data: dict[str, list[Record]]) -> Record:
    rows = data.get("payments_by_method", [])
    methods = [m["method"] for m in method_totals(rows)]
    dates = sorted({r["event_date"] for r in rows})
    by = {(r["event_date"], r["method"]): r["captured_usd"] for r in rows}
    traces = [
        _bars(
            method,
            METHOD_COLORS[i % len(METHOD_COLORS)],
            [d.isoformat() for d in dates],
            [by.get((d, method), Decimal("0.00")) for d in dates],
            True,
        )
        for i, method in enumerate(methods)
    ]
    return _figure(traces, _MONEY_AXIS, barmode="stack")


def _retention_figure(rows: list[Record]) -> Record:
    cohorts = sorted({r["cohort_month"] for r in rows})
    width = max((r["months_since"] for r in rows), default=-1) + 1
    cell = {(r["cohort_month"], r["months_since"]): r for r in rows}
    size = {r["cohort_month"]: r["cohort_customers"] for r in rows}
    z, text = [], []
    for cohort in cohorts:
        found = [cell.get((cohort, k)) for k in range(width)]
        z.append([None if r is None else _num(r["retention_rate"]) for r in found])
        text.append(["" if r is None else _pct(r["retention_rate"]) for r in found])  # "—" if null
    labels = [f"{c.strftime('%Y-%m')} · {size[c]:,}" for c in cohorts]
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [f"+{k} mo" for k in range(width)],
                "y": labels,
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "zmin": 0,
                "zmax": 1,
                "colorscale": [[0, "#eef2ff"], [1, "#312e81"]],
                "showscale": False,
                "hovertemplate": "cohort %{y}, %{x}: %{z:.2%} active<extra></extra>",
                "xgap": 2,
                "ygap": 2,
            }
        ],
        "layout": {
            "yaxis": {"autorange": "reversed", "automargin": True, "type": "category"},
            "xaxis": {"side": "top", "automargin": True, "type": "category"},
            "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
            "height": max(160, 34 * len(cohorts) + 60),
        },
    }


# ---------------------------------------------------------------------------------------------
# Page

_TABLE_COLUMNS = (
    ("order_date", "Date", "k"),
    ("orders", "Orders", "k"),
    ("gross_revenue_usd", "Gross", "k"),
    ("net_revenue_usd", "Net", "k"),
    ("avg_order_value_usd", "AOV", "k"),
    ("customers", "Customers", "k"),
    ("new_customers", "New", "k"),
    ("returning_customers", "Returning", "k"),
    ("orders_unpriced", "Unpriced", "k"),
    ("captured_usd", "Captured", "p"),
    ("refunded_usd", "Refunded", "p"),
    ("payments_failed", "Failed", "p"),
    ("capture_rate", "Capture rate", "p"),
    ("payments_unpriced", "Pay. unpriced", "p"),
)
_MONEY = {
    "gross_revenue_usd",
    "net_revenue_usd",
    "avg_order_value_usd",
    "captured_usd",
    "refunded_usd",
}


def _shown(col: str, value: Any) -> str:
    if col in _MONEY:
        return _usd(value)
    if col == "capture_rate":
        return _pct(value)
    return "—" if value is None else f"{value:,}"


def daily_rows(days: list[Record], pays: list[Record]) -> list[Record]:
    """The daily table: one row per date of either table, newest first; each cell carries its
    table, column, exact value (empty for null) and shown text; a cell of a table with no row
    that day is blank (table None)."""
    kpi_by = {d["order_date"]: d for d in days}
    pay_by = {p["event_date"]: p for p in pays}
    rows = []
    for day in sorted(set(kpi_by) | set(pay_by), reverse=True):
        cells: list[dict[str, str | None]] = []
        for col, _, source in _TABLE_COLUMNS[1:]:
            rec = kpi_by.get(day) if source == "k" else pay_by.get(day)
            if rec is None:
                cells.append({"table": None})
                continue
            cells.append(
                {
                    "table": "daily_kpis" if source == "k" else "daily_payments",
                    "col": col,
                    "value": _data_value(rec[col]),
                    "shown": _shown(col, rec[col]),
                }
            )
        rows.append({"date": day.isoformat(), "cells": cells})
    return rows


def _change(c: Comparison) -> str:
    change = c.change
    if change is None:
        return "—"
    return f"{'+' if change > 0 else ''}{change * 100:.1f}%"


def _comparison_rows(comparisons: list[Comparison]) -> list[Record]:
    def shown(c: Comparison, value: Decimal | int | None) -> str:
        if value is None:
            return "—"
        return _usd(value) if c.money else f"{value:,}"  # type: ignore[arg-type]

    return [
        {
            "label": c.label,
            "current": shown(c, c.current),
            "previous": shown(c, c.previous),
            "change": _change(c),
            "direction": ""
            if c.change is None
            else ("up" if c.change > 0 else "down" if c.change < 0 else ""),
        }
        for c in comparisons
    ]


def _span(start: dt.date, end: dt.date) -> str:
    return start.strftime("%b %d, %Y") if start == end else f"{start:%b %d} to {end:%b %d, %Y}"


def render_dashboard(data: dict[str, list[Record]]) -> str:
    """The whole HTML page for the KPI tables read by `read_kpis`."""
    days, pays = data["daily_kpis"], data["daily_payments"]
    t = _totals(days, pays)
    span = f"{days[0]['order_date']} to {days[-1]['order_date']}" if days else "no orders yet"
    tiles = [
        ("Gross revenue", _usd(t["gross"]), f"net {_usd(t['net'])}"),
        ("Orders", f"{t['orders']:,}", f"{t['unpriced']:,} awaiting an FX rate"),
        ("Avg order value", _usd(t["aov"]), "gross / orders"),
        ("New customers", f"{t['new']:,}", f"over {len(days)} order days"),
        ("Captured", _usd(t["captured"]), f"refunded {_usd(t['refunded'])}"),
        ("Failed payments", f"{t['failed']:,}", ""),
    ]
    comparisons = []
    wow = week_over_week(days)
    if wow is not None:
        last, before, figures = wow
        comparisons.append(
            {
                "id": "week",
                "title": f"{last:%a %b %d} against {before:%a %b %d}",
                "note": "the last order date against the same weekday a week before",
                "current": f"{last:%b %d}",
                "previous": f"{before:%b %d}",
                "rows": _comparison_rows(figures),
            }
        )
    mtd = month_to_date(days)
    if mtd is not None:
        (start, end), (p_start, p_end), figures = mtd
        comparisons.append(
            {
                "id": "month",
                "title": f"Month to date: {_span(start, end)} against {_span(p_start, p_end)}",
                "note": "the same days of the month before",
                "current": f"{start:%b}",
                "previous": f"{p_start:%b}",
                "rows": _comparison_rows(figures),
            }
        )
    methods = [
        {
            "method": m["method"],
            "captured": _usd(m["captured_usd"]),
            "refunded": _usd(m["refunded_usd"]),
            "failed": f"{m['payments_failed']:,}",
            "share": _pct(m["share"]),
        }
        for m in method_totals(data.get("payments_by_method", []))
    ]
    products = [
        {
            "product": p["product_id"],
            "views": f"{p['views']:,}",
            "add_to_carts": f"{p['add_to_carts']:,}",
            "purchases": f"{p['purchases']:,}",
            "rate": _pct(p["view_to_purchase_rate"]),
        }
        for p in data.get("top_products", [])
    ]
    drawn = charts(data)
    return pages.render(
        "dashboard.html.j2",
        span=span,
        tiles=tiles,
        comparisons=comparisons,
        charts=drawn,
        charts_json=pages.script_json({c["id"]: c["figure"] for c in drawn if not c["empty"]}),
        methods=methods,
        method_days=METHOD_DAYS,
        products=products,
        columns=[label for _, label, _ in _TABLE_COLUMNS],
        rows=daily_rows(days, pays),
        kpi_data=kpi_data_json(data),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
