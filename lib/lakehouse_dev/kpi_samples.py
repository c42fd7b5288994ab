"""KPI figures made up directly (no pipeline run), shaped as `lakehouse.gold.dashboard.read_kpis`
returns them: for the dashboard's tests at magnitudes the generator would take an hour to reach
(a shop taking tens of millions of dollars a day) and for looking at the page (`make pages`).

The figures keep the contract's identities (AOV = gross / orders, customers = new + returning,
capture rate = captured / (captured + failed), every cohort's `months_since` 0..newest month), so
a page that shows them wrongly is wrong, whatever the numbers.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Record = dict[str, Any]

CENT = Decimal("0.01")
METHODS = ("card", "paypal", "bank_transfer", "gift_card")


def _money(value: float) -> Decimal:
    return Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)


def _months(later: dt.date, earlier: dt.date) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def synthetic_kpis(
    days: int = 60,
    orders_per_day: int = 100,
    order_value: float = 80.0,
    start: dt.date = dt.date(2024, 1, 1),
    seed: int = 7,
) -> dict[str, list[Record]]:
    """`days` days of a shop with about `orders_per_day` orders of about `order_value` USD (a
    weekly rhythm, noise); a shop of $7M a day is `orders_per_day=70_000, order_value=100`."""
    rng = random.Random(seed)
    kpis: list[Record] = []
    pays: list[Record] = []
    by_method: list[Record] = []
    first_month: dict[dt.date, int] = {}
    for i in range(days):
        day = start + dt.timedelta(days=i)
        weekly = 1.0 + 0.25 * (day.weekday() >= 5)
        orders = max(1, int(orders_per_day * weekly * rng.uniform(0.85, 1.15)))
        gross = _money(orders * order_value * rng.uniform(0.9, 1.1))
        net = _money(float(gross) * rng.uniform(0.9, 0.97))
        customers = max(1, int(orders * rng.uniform(0.8, 0.95)))
        new = int(customers * (0.6 if i < 7 else rng.uniform(0.15, 0.3)))
        month = day.replace(day=1)
        first_month[month] = first_month.get(month, 0) + new
        kpis.append(
            {
                "order_date": day,
                "orders": orders,
                "gross_revenue_usd": gross,
                "net_revenue_usd": net,
                "avg_order_value_usd": (gross / orders).quantize(CENT, ROUND_HALF_UP),
                "customers": customers,
                "new_customers": new,
                "returning_customers": customers - new,
                "orders_unpriced": rng.randint(0, 3),
            }
        )
        captured_n = int(orders * rng.uniform(0.9, 0.98))
        failed = orders - captured_n
        shares = [0.55, 0.25, 0.12, 0.08]
        captured_total = Decimal("0.00")
        refunded_total = Decimal("0.00")
        failed_left = failed
        for i, (method, share) in enumerate(zip(METHODS, shares, strict=True)):
            # Each method's failures; the last takes what is left, so they sum to the day's.
            method_failed = failed_left if i == len(METHODS) - 1 else int(failed * share)
            failed_left -= method_failed
            captured = _money(float(gross) * share * rng.uniform(0.9, 1.05))
            refunded = _money(float(captured) * rng.uniform(0.0, 0.05))
            captured_total += captured
            refunded_total += refunded
            by_method.append(
                {
                    "event_date": day,
                    "method": method,
                    "captured_usd": captured,
                    "refunded_usd": refunded,
                    "payments_failed": method_failed,
                }
            )
        pays.append(
            {
                "event_date": day,
                "captured_usd": captured_total,
                "refunded_usd": refunded_total,
                "payments_failed": failed,
                "capture_rate": (Decimal(captured_n) / Decimal(captured_n + failed)).quantize(
                    Decimal("0.0001"), ROUND_HALF_UP
                ),
                "payments_unpriced": 0,
            }
        )
    newest = (start + dt.timedelta(days=days - 1)).replace(day=1)
    retention = []
    for cohort, size in sorted(first_month.items()):
        if not size:
            continue  # no first order that month: no cohort (as in gold)
        for k in range(_months(newest, cohort) + 1):
            active = size if k == 0 else int(size * rng.uniform(0.15, 0.35))
            retention.append(
                {
                    "cohort_month": cohort,
                    "months_since": k,
                    "cohort_customers": size,
                    "active_customers": active,
                    "retention_rate": (Decimal(active) / Decimal(size)).quantize(
                        Decimal("0.0001"), ROUND_HALF_UP
                    )
                    if size
                    else None,
                }
            )
    last28 = newest_days(by_method, 28)
    return {
        "daily_kpis": kpis,
        "daily_payments": pays,
        "customer_retention": retention,
        "payments_by_method": last28,
        "daily_funnel": [_funnel_day(d["order_date"], d["orders"], rng) for d in kpis],
        "top_products": _top_products(kpis[-28:], rng),
    }


def _rate(numerator: int, denominator: int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def _funnel_day(day: dt.date, orders: int, rng: random.Random) -> Record:
    """A day of gold.daily_funnel whose purchasing sessions are about the day's orders."""
    purchase = orders
    checkout = int(purchase / rng.uniform(0.6, 0.8))
    cart = int(checkout / rng.uniform(0.4, 0.6))
    view = int(cart / rng.uniform(0.25, 0.4))
    sessions = int(view / rng.uniform(0.6, 0.8))
    abandoned = cart - purchase
    return {
        "session_date": day,
        "sessions": sessions,
        "with_page_view": sessions,
        "with_product_view": view,
        "with_add_to_cart": cart,
        "with_checkout": checkout,
        "with_purchase": purchase,
        "view_rate": _rate(view, sessions),
        "cart_rate": _rate(cart, view),
        "checkout_rate": _rate(checkout, cart),
        "purchase_rate": _rate(purchase, checkout),
        "conversion_rate": _rate(purchase, sessions),
        "cart_abandonment_rate": _rate(abandoned, cart),
    }


def _top_products(days: list[Record], rng: random.Random) -> list[Record]:
    """The dashboard's ten products of the last days: lines about 1.5 an order, spread unevenly."""
    lines = int(sum(d["orders"] for d in days) * 1.5)
    out = []
    for i in range(10):
        purchases = max(1, int(lines * 0.3 / (i + 1)))
        views = int(purchases / rng.uniform(0.05, 0.2))
        out.append(
            {
                "product_id": f"P{i + 1:05d}",
                "views": views,
                "add_to_carts": int(views * rng.uniform(0.2, 0.4)),
                "purchases": purchases,
                "view_to_purchase_rate": _rate(purchases, views),
            }
        )
    return out


def newest_days(rows: list[Record], n: int) -> list[Record]:
    """The rows of the newest `n` event dates of `rows`."""
    if not rows:
        return []
    last = max(r["event_date"] for r in rows)
    return [r for r in rows if r["event_date"] > last - dt.timedelta(days=n)]
