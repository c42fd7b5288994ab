"""A static, self-contained HTML dashboard of the gold KPIs, and a short terminal summary.

One HTML file: inline CSS, charts drawn here as inline SVG (hover titles, no script), no fonts,
libraries or anything else fetched from the network. The figures are embedded twice so tools and
tests can read them back: a `<script type="application/json" id="kpi-data">` block (decimals as
strings, exactly as stored) and the daily table, whose cells carry `data-col` / `data-value`.
Totals on the tiles are sums of the rounded per-day figures.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.core.context import Lakehouse
from lakehouse.gold.build import GoldBuildError
from lakehouse.gold.published import published_versions, read_gold
from lakehouse.state import reports

KPI_TABLES = ("daily_kpis", "daily_payments", "customer_retention")

Record = dict[str, Any]


def read_kpis(spark: SparkSession, lh: Lakehouse) -> dict[str, list[Record]]:
    """The three small KPI tables (`KPI_TABLES`) as lists of dicts, each with every column of
    its table (dates as `date`, money as `Decimal`), ordered by the table's key; as the newest
    published set has them (`gold.published.read_gold`), never a run's half-published state."""
    out: dict[str, list[Record]] = {}
    published = published_versions(spark, lh)
    for table in KPI_TABLES:
        path = lh.path(f"gold.{table}")
        if not DeltaTable.isDeltaTable(spark, path):
            raise GoldBuildError(f"gold.{table} does not exist at {path}: run build_gold first")
        keys = lh.gold[table].keys
        rows = read_gold(spark, lh, table, published).orderBy(*keys).collect()
        out[table] = [r.asDict() for r in rows]
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
    # "</" would end the <script> element early; "<\/" is the same JSON string.
    return json.dumps(doc, indent=1, sort_keys=True).replace("</", "<\\/")


def write_dashboard(spark: SparkSession, lh: Lakehouse, run_id: str) -> str:
    """Write the dashboard of the published gold KPI tables (one HTML file) as run `run_id`'s
    `dashboard.html` under the reports root, local or S3, and in `latest/`
    (`lakehouse.state.reports`); return the run's copy's location."""
    return reports.publish(
        lh.config, run_id, "dashboard.html", render_dashboard(read_kpis(spark, lh))
    )


def kpi_summary_text(spark: SparkSession, lh: Lakehouse) -> str:
    """A few lines for the terminal: totals over all days and the figures of the last day."""
    data = read_kpis(spark, lh)
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
        "aov": (gross / orders).quantize(Decimal("0.01")) if orders else None,
        "new": sum(d["new_customers"] for d in days),
        "unpriced": sum(d["orders_unpriced"] for d in days),
        "captured": sum((p["captured_usd"] for p in pays), Decimal("0.00")),
        "refunded": sum((p["refunded_usd"] for p in pays), Decimal("0.00")),
        "failed": sum(p["payments_failed"] for p in pays),
    }


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# ---------------------------------------------------------------------------------------------
# SVG charts

_W, _H = 560, 220
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 12, 14, 30
PALETTE = {
    "gross": "#4f46e5",
    "net": "#0ea5e9",
    "orders": "#14b8a6",
    "aov": "#f59e0b",
    "new": "#22c55e",
    "returning": "#6366f1",
    "capture": "#e11d48",
}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _axis(labels: Sequence[str], y_max: float, fmt: Callable[[float], str]) -> list[str]:
    parts: list[str] = []
    plot_h = _H - _PAD_T - _PAD_B
    for i in range(5):
        v = y_max * i / 4
        y = _PAD_T + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(fmt(v))}</text>"
        )
    n = len(labels)
    step = max(1, math.ceil(n / 8))
    slot = (_W - _PAD_L - _PAD_R) / max(n, 1)
    for i in range(0, n, step):
        x = _PAD_L + slot * (i + 0.5)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{_H - 10}" text-anchor="middle">'
            f"{_e(labels[i])}</text>"
        )
    return parts


def _svg(title: str, body: list[str], legend: list[tuple[str, str]]) -> str:
    keys = "".join(
        f'<span class="key"><i style="background:{c}"></i>{_e(n)}</span>' for n, c in legend
    )
    return (
        f'<figure class="card chart"><figcaption>{_e(title)}<span class="legend">{keys}</span>'
        f'</figcaption><svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(title)}">'
        + "".join(body)
        + "</svg></figure>"
    )


def _short(day: dt.date) -> str:
    return day.strftime("%b %d")


def bar_chart(
    title: str,
    labels: Sequence[dt.date],
    series: Sequence[tuple[str, str, Sequence[float]]],
    fmt: Callable[[float], str],
    stacked: bool = False,
    line: tuple[str, str, Sequence[float | None]] | None = None,
) -> str:
    """Bars per day (side by side, or stacked), optionally with a line on the same scale."""
    n = len(labels)
    totals = (
        [sum(s[2][i] for s in series) for i in range(n)]
        if stacked
        else [max((s[2][i] for s in series), default=0) for i in range(n)]
    )
    line_vals = [v for v in (line[2] if line else []) if v is not None]
    y_max = _nice_max(max([*totals, *line_vals, 0]))
    plot_h = _H - _PAD_T - _PAD_B
    slot = (_W - _PAD_L - _PAD_R) / max(n, 1)
    body = _axis([_short(d) for d in labels], y_max, fmt)
    groups = 1 if stacked else len(series)
    width = slot * 0.72 / groups
    for i, day in enumerate(labels):
        base: float = _PAD_T + plot_h
        for j, (name, color, values) in enumerate(series):
            h = plot_h * values[i] / y_max
            x = _PAD_L + slot * i + slot * 0.14 + (0 if stacked else j * width)
            y = base - h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0.5):.1f}" height="{h:.1f}" '
                f'rx="2" fill="{color}"><title>{_e(day.isoformat())} {_e(name)}: '
                f"{_e(fmt(values[i]))}</title></rect>"
            )
            if stacked:
                base = y
    if line:
        body.append(_polyline(labels, line, y_max, fmt))
    legend = [(s[0], s[1]) for s in series] + ([(line[0], line[1])] if line else [])
    return _svg(title, body, legend)


def _polyline(
    labels: Sequence[dt.date],
    line: tuple[str, str, Sequence[float | None]],
    y_max: float,
    fmt: Callable[[float], str],
) -> str:
    name, color, values = line
    plot_h = _H - _PAD_T - _PAD_B
    slot = (_W - _PAD_L - _PAD_R) / max(len(labels), 1)
    points, dots = [], []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = _PAD_L + slot * (i + 0.5)
        y = _PAD_T + plot_h - plot_h * v / y_max
        points.append(f"{x:.1f},{y:.1f}")
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{color}"><title>'
            f"{_e(labels[i].isoformat())} {_e(name)}: {_e(fmt(v))}</title></circle>"
        )
    path = (
        f'<polyline fill="none" stroke="{color}" stroke-width="2.2" stroke-linejoin="round" '
        f'points="{" ".join(points)}"/>'
        if len(points) > 1
        else ""
    )
    return path + "".join(dots)


def line_chart(
    title: str,
    labels: Sequence[dt.date],
    line: tuple[str, str, Sequence[float | None]],
    fmt: Callable[[float], str],
    y_max: float | None = None,
) -> str:
    vals = [v for v in line[2] if v is not None]
    top = y_max if y_max is not None else _nice_max(max([*vals, 0]))
    body = _axis([_short(d) for d in labels], top, fmt)
    body.append(_polyline(labels, line, top, fmt))
    return _svg(title, body, [(line[0], line[1])])


def heat_map(rows: list[Record]) -> str:
    """Cohorts down, months since across; cell colour and text give the retention rate."""
    if not rows:
        return (
            '<figure class="card"><figcaption>Retention by cohort</figcaption>'
            '<p class="muted">No cohorts yet.</p></figure>'
        )
    cohorts = sorted({r["cohort_month"] for r in rows})
    width = max(r["months_since"] for r in rows) + 1
    cell = {(r["cohort_month"], r["months_since"]): r for r in rows}
    cw, ch, left, top = 64, 30, 120, 28
    w, h = left + cw * width + 8, top + ch * len(cohorts) + 8
    body = [
        f'<text class="tick" x="{left + cw * k + cw / 2}" y="18" text-anchor="middle">'
        f"+{k} mo</text>"
        for k in range(width)
    ]
    for i, cohort in enumerate(cohorts):
        y = top + ch * i
        size = next(r["cohort_customers"] for r in rows if r["cohort_month"] == cohort)
        body.append(
            f'<text class="tick" x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end">'
            f"{cohort.strftime('%Y-%m')} · {size}</text>"
        )
        for k in range(width):
            r = cell.get((cohort, k))
            if r is None:
                continue
            rate = float(r["retention_rate"])
            # From a pale to a deep indigo as retention rises.
            light = 96 - 58 * rate
            text = "#fff" if rate > 0.55 else "#1e1b4b"
            body.append(
                f'<rect x="{left + cw * k + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" '
                f'rx="4" fill="hsl(243 75% {light:.0f}%)"><title>cohort '
                f"{cohort.strftime('%Y-%m')}, +{k} months: {r['active_customers']} of "
                f"{r['cohort_customers']} active ({_pct(r['retention_rate'])})</title></rect>"
                f'<text x="{left + cw * k + cw / 2}" y="{y + ch / 2 + 4}" text-anchor="middle" '
                f'class="cell" fill="{text}">{_pct(r["retention_rate"])}</text>'
            )
    return (
        '<figure class="card wide"><figcaption>Retention by cohort '
        '<span class="muted">(share of the cohort with a counted order, by months since the '
        "first order; rows: cohort · customers)</span></figcaption>"
        f'<svg viewBox="0 0 {w} {h}" style="max-width:{w}px" role="img" '
        f'aria-label="Retention heat map">' + "".join(body) + "</svg></figure>"
    )


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


def _daily_table(days: list[Record], pays: list[Record]) -> str:
    """One row per date of either table; a cell carries `data-table`, `data-col` and
    `data-value` (exact, empty for null); a blank cell means the table has no row that day."""
    kpi_by = {d["order_date"]: d for d in days}
    pay_by = {p["event_date"]: p for p in pays}
    head = "".join(f"<th>{_e(label)}</th>" for _, label, _ in _TABLE_COLUMNS)
    body = []
    for day in sorted(set(kpi_by) | set(pay_by)):
        cells = []
        for col, _, source in _TABLE_COLUMNS:
            rec = kpi_by.get(day) if source == "k" else pay_by.get(day)
            table = "daily_kpis" if source == "k" else "daily_payments"
            if col == "order_date":
                cells.append(f'<td data-col="date" data-value="{day.isoformat()}">{day}</td>')
                continue
            if rec is None:
                cells.append('<td class="muted"></td>')
                continue
            value = rec[col]
            shown = (
                _usd(value)
                if col in _MONEY
                else _pct(value)
                if col == "capture_rate"
                else f"{value:,}"
            )
            cells.append(
                f'<td data-table="{table}" data-col="{col}" '
                f'data-value="{_e(_data_value(value))}">{_e(shown)}</td>'
            )
        body.append(f'<tr data-date="{day.isoformat()}">{"".join(cells)}</tr>')
    return (
        '<section class="card wide"><h2>Daily figures</h2><div class="scroll">'
        f'<table id="daily-figures"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _tile(label: str, value: str, note: str = "") -> str:
    return (
        f'<div class="tile"><div class="label">{_e(label)}</div>'
        f'<div class="value">{_e(value)}</div><div class="note">{_e(note)}</div></div>'
    )


_CSS = """
:root{--bg:#f6f7fb;--card:#fff;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--accent:#4f46e5}
@media (prefers-color-scheme:dark){:root{--bg:#0f172a;--card:#111827;--ink:#e5e7eb;
--muted:#9ca3af;--line:#1f2937}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header{padding:28px 32px 8px}h1{margin:0;font-size:24px;letter-spacing:-.01em}
header p{margin:4px 0 0;color:var(--muted)}main{padding:16px 32px 40px;display:grid;gap:16px;
grid-template-columns:repeat(auto-fit,minmax(460px,1fr))}
.tiles{grid-column:1/-1;display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(150px,1fr))}
.tile,.card{background:var(--card);border:1px solid var(--line);border-radius:14px;
box-shadow:0 1px 2px rgba(0,0,0,.04)}.tile{padding:14px 16px}
.tile .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
.tile .value{font-size:22px;font-weight:650;margin-top:4px;font-variant-numeric:tabular-nums}
.tile .note{color:var(--muted);font-size:12px;min-height:1em}
.card{margin:0;padding:14px 16px}.wide{grid-column:1/-1}
figcaption,h2{font-weight:600;font-size:15px;margin:0 0 8px;display:flex;flex-wrap:wrap;
gap:10px;align-items:center}h2{display:block}
.legend{margin-left:auto;display:flex;gap:12px;font-weight:400;color:var(--muted);font-size:12px}
.key i{display:inline-block;width:10px;height:10px;border-radius:3px;margin-right:5px}
svg{width:100%;height:auto;display:block}.grid{stroke:var(--line);stroke-width:1}
.tick{fill:var(--muted);font-size:11px}.cell{font-size:11px;font-weight:600}
.muted{color:var(--muted);font-weight:400}.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;text-align:right;white-space:nowrap;border-bottom:1px solid var(--line)}
th:first-child,td:first-child{text-align:left}th{color:var(--muted);font-weight:600;font-size:12px}
tbody tr:hover{background:rgba(79,70,229,.06)}
footer{color:var(--muted);padding:0 32px 28px;font-size:12px}
"""


def render_dashboard(data: dict[str, list[Record]]) -> str:
    """The whole HTML page for the KPI tables read by `read_kpis`."""
    days, pays, cohorts = data["daily_kpis"], data["daily_payments"], data["customer_retention"]
    t = _totals(days, pays)
    span = f"{days[0]['order_date']} to {days[-1]['order_date']}" if days else "no orders yet"
    dates = [d["order_date"] for d in days]
    pay_dates = [p["event_date"] for p in pays]

    def money(v: float) -> str:
        return f"${v:,.0f}" if v >= 100 else f"${v:,.2f}"

    def count(v: float) -> str:
        return f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"

    def pct(v: float) -> str:
        return f"{v * 100:.0f}%"

    def as_float(values: list[Any]) -> list[float | None]:
        return [None if v is None else float(v) for v in values]

    charts = [
        bar_chart(
            "Revenue per day (USD)",
            dates,
            [("gross", PALETTE["gross"], [float(d["gross_revenue_usd"]) for d in days])],
            money,
            line=("net", PALETTE["net"], as_float([d["net_revenue_usd"] for d in days])),
        ),
        bar_chart(
            "Orders per day",
            dates,
            [("orders", PALETTE["orders"], [float(d["orders"]) for d in days])],
            count,
        ),
        line_chart(
            "Average order value (USD)",
            dates,
            ("AOV", PALETTE["aov"], as_float([d["avg_order_value_usd"] for d in days])),
            money,
        ),
        bar_chart(
            "New vs returning customers",
            dates,
            [
                ("new", PALETTE["new"], [float(d["new_customers"]) for d in days]),
                (
                    "returning",
                    PALETTE["returning"],
                    [float(d["returning_customers"]) for d in days],
                ),
            ],
            count,
            stacked=True,
        ),
        line_chart(
            "Capture rate (captured / (captured + failed))",
            pay_dates,
            ("capture rate", PALETTE["capture"], as_float([p["capture_rate"] for p in pays])),
            pct,
            y_max=1.0,
        ),
    ]
    tiles = "".join(
        [
            _tile("Gross revenue", _usd(t["gross"]), f"net {_usd(t['net'])}"),
            _tile("Orders", f"{t['orders']:,}", f"{t['unpriced']:,} awaiting an FX rate"),
            _tile("Avg order value", _usd(t["aov"]), "gross / orders"),
            _tile("New customers", f"{t['new']:,}", f"over {len(days)} order days"),
            _tile("Captured", _usd(t["captured"]), f"refunded {_usd(t['refunded'])}"),
            _tile("Failed payments", f"{t['failed']:,}", ""),
        ]
    )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lakehouse KPIs · {_e(span)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>E-commerce KPIs</h1>
<p>Orders {_e(span)} · all dates UTC · money in USD, rounded half-up per day</p></header>
<main>
<section class="tiles">{tiles}</section>
{"".join(charts)}
{heat_map(cohorts)}
{_daily_table(days, pays)}
</main>
<footer>Generated {generated} from gold.daily_kpis, gold.daily_payments and
gold.customer_retention (see contracts/metrics.md for what each figure means).</footer>
<script type="application/json" id="kpi-data">
{kpi_data_json(data)}
</script>
</body>
</html>
"""
