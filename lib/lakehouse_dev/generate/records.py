"""One source's records of one day as landing lines: JSON lines or CSV rows, rendered on demand.

`DayRecords` is what `delivery` needs to place records into files and inject defects: how to
render any subset of the records (for any delivery day, because a CSV header may change), how to
name a record in a defect's detail, and for CDC the `lsn` and the next event of the same key.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lakehouse_dev.generate import vocab
from lakehouse_dev.generate.world import (
    CAPTURED,
    CLICK_TYPES,
    COUNTRY_CODES,
    DELETE_ITEMS_MISSING,
    DELETE_KEY_ONLY,
    METHODS,
    OP_C,
    OP_D,
    OP_R,
    OP_U,
    OPS,
    PAYMENT_TYPES,
    STATUSES,
    Cols,
    Orders,
    World,
    hex_ids,
    iso_millis,
    iso_seconds,
)

PRODUCTS_HEADER = "product_id,name,category,brand,list_price,currency,active,updated_at"
PAYMENTS_HEADER = (
    "event_id,payment_id,order_id,event_ts,event_type,amount,currency,method,provider_ref"
)
PAYMENTS_DRIFT_COLUMN = "fee"
FX_HEADER = "rate_date,currency,rate_to_usd"

_CUR = vocab.CURRENCIES
_UA_JSON = [json.dumps(ua) for ua in vocab.USER_AGENTS]


@dataclass
class DayRecords:
    """The records one source commits (or emits) on one day, in their natural delivery order."""

    source: str
    day: int
    n: int
    render: Callable[[np.ndarray, int], list[str]]  # (record indices, delivery day) -> lines
    ident: Callable[[int], str]  # a record's identity for defect details
    header: Callable[[int], str] | None = None  # CSV header line for a delivery day
    lsn: np.ndarray | None = None
    successor: np.ndarray | None = None  # next record of the same key that day, or -1
    can_be_bad: np.ndarray | None = None  # records that hold a row a bad value can go into
    tags: dict[int, str] = field(default_factory=dict)  # record -> detail of a "delete"


def money(cents: int) -> str:
    """Cents as a decimal string with 2 decimals: 1234 -> "12.34", -5 -> "-0.05"."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def _successor(key: np.ndarray) -> np.ndarray:
    """For records already in commit order: the index of the next record with the same key."""
    n = len(key)
    succ = np.full(n, -1, np.int64)
    if n < 2:
        return succ
    order = np.argsort(key, kind="stable")
    same = key[order[1:]] == key[order[:-1]]
    succ[order[:-1][same]] = order[1:][same]
    return succ


def customers_records(world: World, day: int, cols: Cols) -> DayRecords:
    """Customer CDC events: `r` for the initial snapshot, `c` on signup, `u` on a change."""
    customers = world.customers
    ver, op, ts, lsn = cols["ver"], cols["op"], cols["ts"], cols["lsn"]
    ids = customers.ids(cols["cust"])

    def render(idx: np.ndarray, _delivery_day: int) -> list[str]:
        after = customers.rows(ver[idx])
        prev = customers.ver_prev[ver[idx]]
        has_prev = prev >= 0
        before_rows = iter(customers.rows(prev[has_prev]))
        before = [next(before_rows) if p else "null" for p in has_prev.tolist()]
        return [
            f'{{"op":"{OPS[o]}","ts_ms":{t},"lsn":{ln},"before":{b},"after":{a}}}'
            for o, t, ln, b, a in zip(
                op[idx].tolist(), ts[idx].tolist(), lsn[idx].tolist(), before, after, strict=True
            )
        ]

    return DayRecords(
        source="customers",
        day=day,
        n=len(ver),
        render=render,
        ident=lambda i: f"customer_id={ids[i]} lsn={lsn[i]}",
        lsn=lsn,
        successor=_successor(cols["cust"]),
        can_be_bad=np.isin(op, [OP_C, OP_U, OP_R]),
    )


def orders_records(world: World, day: int, cols: Cols) -> DayRecords:
    """Order CDC events: `c` when placed, `u` per status change, `d` for a deleted order."""
    orders = world.orders
    g, op, to, frm, flag, ts, lsn = (
        cols["g"], cols["op"], cols["to"], cols["frm"], cols["flag"], cols["ts"], cols["lsn"]
    )  # fmt: skip
    ids = Orders.ids(g)

    def render(idx: np.ndarray, _delivery_day: int) -> list[str]:
        gg = g[idx]
        out = []
        for oid, cid, ots, cur, ctry, o, t_, f_, fl, t, ln in zip(
            Orders.ids(gg),
            world.customers.ids(orders.cust[gg]),
            iso_seconds(orders.ts[gg]),
            orders.currency[gg].tolist(),
            orders.country[gg].tolist(),
            op[idx].tolist(),
            to[idx].tolist(),
            frm[idx].tolist(),
            flag[idx].tolist(),
            ts[idx].tolist(),
            lsn[idx].tolist(),
            strict=True,
        ):
            head = f'{{"order_id":"{oid}","customer_id":"{cid}","order_ts":"{ots}","status":"'
            tail = f'","currency":"{_CUR[cur]}","shipping_country":"{COUNTRY_CODES[ctry]}"}}'
            if o == OP_C:
                before, after = "null", head + STATUSES[t_] + tail
            elif o == OP_U:
                before, after = head + STATUSES[f_] + tail, head + STATUSES[t_] + tail
            else:
                after = "null"
                before = (
                    f'{{"order_id":"{oid}"}}'
                    if fl & DELETE_KEY_ONLY
                    else head + STATUSES[f_] + tail
                )
            out.append(
                f'{{"op":"{OPS[o]}","ts_ms":{t},"lsn":{ln},"before":{before},"after":{after}}}'
            )
        return out

    tags = {}
    for i in np.flatnonzero(op == OP_D).tolist():
        missing = "NOT " if flag[i] & DELETE_ITEMS_MISSING else ""
        key_only = "; before holds the key only" if flag[i] & DELETE_KEY_ONLY else ""
        tags[i] = (
            f"order_id={ids[i]} lsn={lsn[i]}: order deleted, "
            f"its item deletes {missing}delivered{key_only}"
        )
    return DayRecords(
        source="orders",
        day=day,
        n=len(g),
        render=render,
        ident=lambda i: f"order_id={ids[i]} lsn={lsn[i]}",
        lsn=lsn,
        successor=_successor(g),
        can_be_bad=op != OP_D,
        tags=tags,
    )


def items_records(world: World, day: int, cols: Cols) -> DayRecords:
    """Order item CDC events: `c` with the order, `d` with a deleted order (when delivered)."""
    catalog = world.catalog
    g, line, op, flag, ts, lsn = (
        cols["g"], cols["line"], cols["op"], cols["flag"], cols["ts"], cols["lsn"]
    )  # fmt: skip
    prod, qty, unit, disc = cols["prod"], cols["qty"], cols["unit"], cols["disc"]
    ids = Orders.ids(g)

    def render(idx: np.ndarray, _delivery_day: int) -> list[str]:
        out = []
        for oid, ln_no, p, q, u, d, o, fl, t, ln in zip(
            Orders.ids(g[idx]),
            line[idx].tolist(),
            prod[idx].tolist(),
            qty[idx].tolist(),
            unit[idx].tolist(),
            disc[idx].tolist(),
            op[idx].tolist(),
            flag[idx].tolist(),
            ts[idx].tolist(),
            lsn[idx].tolist(),
            strict=True,
        ):
            row = (
                f'{{"order_id":"{oid}","line_no":{ln_no},"product_id":"{catalog.ids[p]}",'
                f'"quantity":{q},"unit_price":"{u // 100}.{u % 100:02d}","discount":"0.{d:02d}"}}'
            )
            if o == OP_C:
                before, after = "null", row
            else:
                after = "null"
                before = (
                    f'{{"order_id":"{oid}","line_no":{ln_no}}}' if fl & DELETE_KEY_ONLY else row
                )
            out.append(
                f'{{"op":"{OPS[o]}","ts_ms":{t},"lsn":{ln},"before":{before},"after":{after}}}'
            )
        return out

    tags = {}
    for i in np.flatnonzero(op == OP_D).tolist():
        key_only = "; before holds the key only" if flag[i] & DELETE_KEY_ONLY else ""
        tags[i] = (
            f"order_id={ids[i]} line_no={line[i]} lsn={lsn[i]}: "
            f"item deleted with its order{key_only}"
        )
    return DayRecords(
        source="order_items",
        day=day,
        n=len(g),
        render=render,
        ident=lambda i: f"order_id={ids[i]} line_no={line[i]} lsn={lsn[i]}",
        lsn=lsn,
        successor=_successor(g * 16 + line),
        can_be_bad=op == OP_C,
        tags=tags,
    )


def payments_records(world: World, day: int, cols: Cols, drift_from: int | None) -> DayRecords:
    """Payment provider events as CSV rows; from day `drift_from` on the report has a `fee`
    column (schema drift)."""
    salt = world.salts
    event_ids = hex_ids("pev_", cols["event"], salt[0])
    ts, g, kind, attempt = cols["ts"], cols["g"], cols["type"], cols["attempt"]
    amount, method, event = cols["amount"], cols["method"], cols["event"]
    currency = world.orders.currency

    def drifted(delivery_day: int) -> bool:
        return drift_from is not None and delivery_day >= drift_from

    def header(delivery_day: int) -> str:
        return PAYMENTS_HEADER + ("," + PAYMENTS_DRIFT_COLUMN if drifted(delivery_day) else "")

    def render(idx: np.ndarray, delivery_day: int) -> list[str]:
        amounts = amount[idx].tolist()
        kinds = kind[idx].tolist()
        rows = [
            f"{e},{p},{o},{t},{PAYMENT_TYPES[k]},{a // 100}.{a % 100:02d},"
            f"{_CUR[c]},{METHODS[m]},{r}"
            for e, p, o, t, k, a, c, m, r in zip(
                [event_ids[i] for i in idx.tolist()],
                hex_ids("pay_", attempt[idx], salt[1]),
                Orders.ids(g[idx]),
                iso_seconds(ts[idx]),
                kinds,
                amounts,
                currency[g[idx]].tolist(),
                method[idx].tolist(),
                hex_ids("psp_", event[idx], salt[2]),
                strict=True,
            )
        ]
        if drifted(delivery_day):
            fees = [
                money(a * 29 // 1000 + 30) if k == CAPTURED else "0.00"
                for a, k in zip(amounts, kinds, strict=True)
            ]
            rows = [f"{r},{f}" for r, f in zip(rows, fees, strict=True)]
        return rows

    return DayRecords(
        source="payments",
        day=day,
        n=len(ts),
        render=render,
        ident=lambda i: f"event_id={event_ids[i]}",
        header=header,
        can_be_bad=np.ones(len(ts), bool),
    )


def clickstream_records(world: World, day: int, events: Cols, sessions: Cols) -> DayRecords:
    """Web front-end events as JSON lines, millisecond timestamps."""
    salt = world.salts
    event_ids = hex_ids("ev_", events["event"], salt[3])
    sess, kind, prod, order, ts = (
        events["sess"], events["type"], events["prod"], events["order"], events["ts"]
    )  # fmt: skip
    # Index -1 (no product) picks the trailing "null".
    product_json = [f'"{p}"' for p in world.catalog.ids] + ["null"]
    type_json = [f'"event_type":"{t}"' for t in CLICK_TYPES]

    def render(idx: np.ndarray, _delivery_day: int) -> list[str]:
        # What belongs to the session is formatted once per session of the chunk.
        uniq, inv = np.unique(sess[idx], return_inverse=True)
        custs = sessions["cust"][uniq]
        known = custs >= 0
        cust_ids = iter(world.customers.ids(custs[known]))
        cust_json = [f'"{next(cust_ids)}"' if k else "null" for k in known.tolist()]
        head = [
            f'"session_id":"{sid}","customer_id":{c}'
            for sid, c in zip(hex_ids("s_", sessions["sid"][uniq], salt[4]), cust_json, strict=True)
        ]
        tail = [
            f'"ip":"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}",'
            f'"user_agent":{_UA_JSON[ua]}}}'
            for ip, ua in zip(
                sessions["ip"][uniq].tolist(), sessions["ua"][uniq].tolist(), strict=True
            )
        ]
        orders = order[idx]
        has_order = orders >= 0
        order_ids = iter(Orders.ids(orders[has_order]))
        order_json = [f'"{next(order_ids)}"' if h else "null" for h in has_order.tolist()]
        return [
            f'{{"event_id":"{e}","event_ts":"{t}",{head[j]},{type_json[k]},'
            f'"product_id":{product_json[p]},"order_id":{o},{tail[j]}'
            for e, t, j, k, p, o in zip(
                [event_ids[i] for i in idx.tolist()],
                iso_millis(ts[idx]),
                inv.tolist(),
                kind[idx].tolist(),
                prod[idx].tolist(),
                order_json,
                strict=True,
            )
        ]

    return DayRecords(
        source="clickstream",
        day=day,
        n=len(sess),
        render=render,
        ident=lambda i: f"event_id={event_ids[i]}",
        can_be_bad=np.ones(len(sess), bool),
    )


def csv_lines(rows: list[list[str]]) -> list[str]:
    """RFC 4180 rows (quoted only where needed), one string per row, no line break."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().split("\n")[:-1]


def products_records(world: World, day: int) -> DayRecords:
    """The catalog's full snapshot of `day`, listed products only, ordered by product_id."""
    cat = world.catalog
    listed = np.flatnonzero(cat.listed[day])
    updated = iso_seconds(cat.updated[day, listed])
    lines = csv_lines(
        [
            [
                cat.ids[p],
                cat.names[p],
                cat.categories[p],
                cat.brands[p],
                money(int(cat.price[day, p])),
                "USD",
                "true" if cat.active[day, p] else "false",
                u,
            ]
            for p, u in zip(listed.tolist(), updated, strict=True)
        ]
    )
    return DayRecords(
        source="products",
        day=day,
        n=len(lines),
        render=lambda idx, _d: [lines[i] for i in idx.tolist()],
        ident=lambda i: f"product_id={cat.ids[listed[i]]}",
        header=lambda _d: PRODUCTS_HEADER,
    )


def fx_records(world: World, day: int) -> DayRecords:
    """Treasury's file of `day`: that day's rates, now and then a correction of an earlier day."""
    rows = world.fx.deliveries[day]
    lines = csv_lines([list(r) for r in rows])
    return DayRecords(
        source="fx_rates",
        day=day,
        n=len(lines),
        render=lambda idx, _d: [lines[i] for i in idx.tolist()],
        ident=lambda i: f"rate_date={rows[i][0]} currency={rows[i][1]}",
        header=lambda _d: FX_HEADER,
    )
