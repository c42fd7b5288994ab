"""The shop as it happened: customers, catalog, FX rates, orders with their lifecycle, payments and
clickstream, simulated with numpy one day at a time.

Everything here is truth; the landing defects are added later by `delivery`. The one exception is
deletes of orders: they change the truth (the order is gone), so they are decided here, from their
own random stream, and the events after a delete are never generated.

Times are int64 epoch milliseconds UTC throughout. Each kind of draw has its own random stream
(`rng_for(seed, tag, day)`), so switching a defect on or off never changes the clean data drawn
from the other streams.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from lakehouse.core.generator_spec import GeneratorSpec
from lakehouse_dev.generate import vocab
from lakehouse_dev.generate.summary import FxNote

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
SEC_MS = 1_000

STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
PLACED, PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED = range(6)
OPS = ("c", "u", "d", "r")
OP_C, OP_U, OP_D, OP_R = range(4)
PAYMENT_TYPES = ("authorized", "captured", "failed", "refunded")
AUTHORIZED, CAPTURED, FAILED, REFUNDED = range(4)
METHODS = ("card", "paypal", "bank_transfer", "gift_card")
CLICK_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "purchase")
PAGE_VIEW, PRODUCT_VIEW, ADD_TO_CART, CHECKOUT, PURCHASE = range(5)

# Delete flags on order and item `d` events.
DELETE_KEY_ONLY = 1  # `before` holds the key only
DELETE_ITEMS_MISSING = 2  # the order's item deletes are not delivered

# Random stream tags: one stream per kind of draw (and per day where it is drawn daily).
TAG_CUSTOMERS, TAG_CATALOG, TAG_FX, TAG_ORDERS, TAG_CLICKS, TAG_DELETES, TAG_IDS = range(1, 8)

# Orders per UTC hour: quiet nights, busy evenings.
_HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 6, 6, 7, 8, 9, 10, 10, 9, 6, 4], dtype=np.float64
)
HOUR_WEIGHTS = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()
DISCOUNTS = np.array([5, 10, 15, 20, 25, 30, 50], dtype=np.int64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

Cols = dict[str, np.ndarray]


def rng_for(seed: int, *tags: int) -> np.random.Generator:
    """An independent, reproducible random stream for `seed` and the given tags."""
    return np.random.default_rng([seed, *tags])


def take(cols: Cols, idx: np.ndarray | slice) -> Cols:
    """The rows `idx` (an index or boolean array) of every column."""
    return {k: v[idx] for k, v in cols.items()}


def concat(batches: list[Cols], template: dict[str, type]) -> Cols:
    """Columns of all batches one after the other; empty columns of `template` dtypes if none."""
    if not batches:
        return {k: np.empty(0, dtype=t) for k, t in template.items()}
    return {k: np.concatenate([b[k] for b in batches]) for k in template}


def hex_ids(prefix: str, numbers: np.ndarray, salt: int) -> list[str]:
    """Unique, random-looking ids: a bijection of the 64-bit `numbers`, as 16 hex digits."""
    mixed = (numbers.astype(np.uint64) * _GOLDEN) ^ np.uint64(salt)
    digits = np.frombuffer(mixed.astype(">u8").tobytes().hex().encode("ascii"), dtype="S16")
    return [prefix + h for h in digits.astype("U16").tolist()]


def numbered_ids(prefix: str, numbers: np.ndarray, width: int) -> list[str]:
    """`prefix` and the zero-padded number, e.g. ("o", 42, 9) -> "o000000042" (numbers >= 0)."""
    text = (numbers.astype(np.int64) + 10**width).astype(f"U{width + 1}")
    text.view("U1").reshape(len(text), width + 1)[:, 0] = prefix
    return text.tolist()


def iso_seconds(ms: np.ndarray) -> list[str]:
    """`2024-01-03T14:05:09Z` for each epoch-millisecond value."""
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="s", timezone="UTC").tolist()


def iso_millis(ms: np.ndarray) -> list[str]:
    """`2024-01-03T14:05:09.123Z` for each epoch-millisecond value."""
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()


def day_string(start_ms: int, day: int) -> str:
    """The `YYYY-MM-DD` of day index `day`."""
    return (datetime.fromtimestamp(start_ms / 1000, UTC) + timedelta(days=day)).strftime("%Y-%m-%d")


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _json(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


class Buckets:
    """Events waiting for the day they are committed on (days past the range are dropped)."""

    def __init__(self, days: int, template: dict[str, type]) -> None:
        self.template = template
        self._days: list[list[Cols]] = [[] for _ in range(days)]

    def add(self, cols: Cols, ts_key: str, start_ms: int) -> None:
        day = (cols[ts_key] - start_ms) // DAY_MS
        keep = (day >= 0) & (day < len(self._days))
        cols, day = take(cols, keep), day[keep]
        order = np.argsort(day, kind="stable")
        cols, day = take(cols, order), day[order]
        bounds = np.searchsorted(day, np.arange(len(self._days) + 1))
        for d in range(len(self._days)):
            if bounds[d + 1] > bounds[d]:
                self._days[d].append(take(cols, slice(bounds[d], bounds[d + 1])))

    def pop(self, day: int) -> Cols:
        batches, self._days[day] = self._days[day], []
        return concat(batches, self.template)


# --------------------------------------------------------------------------------------------
# Customers


@dataclass
class Customers:
    """Every customer (ordered by signup time) and every version of every customer row."""

    n: int
    first: np.ndarray
    last: np.ndarray
    domain: np.ndarray
    country: np.ndarray
    signup_ms: np.ndarray
    popularity_cum: np.ndarray
    # one entry per row version
    ver_cust: np.ndarray
    ver_city: np.ndarray
    ver_phone: np.ndarray
    ver_opt: np.ndarray
    ver_prev: np.ndarray

    def ids(self, cust: np.ndarray) -> list[str]:
        return numbered_ids("c", cust + 1, 8)

    def rows(self, ver: np.ndarray) -> list[str]:
        """The JSON text of each customer row version, fields in contract order."""
        c = self.ver_cust[ver]
        ids = self.ids(c)
        signup = iso_seconds(self.signup_ms[c])
        fn, ln = _FIRST, _LAST
        fa, la, dom = _FIRST_ASCII, _LAST_ASCII, _DOMAINS
        cc, cities, prefix = COUNTRY_CODES, _CITIES_JSON, _PHONE_PREFIX
        out = []
        for cid, ci, f, la_i, d, k, city, ph, opt, st in zip(
            ids,
            c.tolist(),
            self.first[c].tolist(),
            self.last[c].tolist(),
            self.domain[c].tolist(),
            self.country[c].tolist(),
            self.ver_city[ver].tolist(),
            self.ver_phone[ver].tolist(),
            self.ver_opt[ver].tolist(),
            signup,
            strict=True,
        ):
            phone = "null" if ph < 0 else f'"{prefix[k]}{ph:04d}"'
            out.append(
                f'{{"customer_id":"{cid}","email":"{fa[f]}.{la[la_i]}{ci + 1}@{dom[d]}",'
                f'"first_name":{fn[f]},"last_name":{ln[la_i]},"phone":{phone},'
                f'"country":"{cc[k]}","city":{cities[city]},"signup_ts":"{st}",'
                f'"marketing_opt_in":{"true" if opt else "false"}}}'
            )
        return out


_FIRST = [_json(x) for x in vocab.FIRST_NAMES]
_LAST = [_json(x) for x in vocab.LAST_NAMES]
_FIRST_ASCII = [_ascii(x) for x in vocab.FIRST_NAMES]
_LAST_ASCII = [_ascii(x) for x in vocab.LAST_NAMES]
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")
COUNTRY_CODES = [c[0] for c in vocab.COUNTRIES]
_COUNTRY_WEIGHTS = np.array([c[2] for c in vocab.COUNTRIES]) / sum(c[2] for c in vocab.COUNTRIES)
_COUNTRY_CURRENCY = np.array([vocab.CURRENCIES.index(c[1]) for c in vocab.COUNTRIES], np.int8)
_PHONE_PREFIX = [vocab.PHONE_PREFIX[c[0]] for c in vocab.COUNTRIES]
# Cities flattened: a country's cities are _CITY_START[k] .. _CITY_START[k] + _CITY_COUNT[k] - 1.
_CITIES_JSON = [_json(city) for c in vocab.COUNTRIES for city in c[3]]
_CITY_COUNT = np.array([len(c[3]) for c in vocab.COUNTRIES], np.int64)
_CITY_START = np.concatenate([[0], np.cumsum(_CITY_COUNT)[:-1]]).astype(np.int64)

CUSTOMER_EVENT_TEMPLATE: dict[str, type] = {
    "ts": np.int64,
    "ver": np.int64,
    "cust": np.int64,
    "op": np.int8,
}


def _random_city(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    pick = (rng.random(len(country)) * _CITY_COUNT[country]).astype(np.int64)
    return _CITY_START[country] + pick


def make_customers(spec: GeneratorSpec, start_ms: int, end_ms: int, events: Buckets) -> Customers:
    """Customers signing up before and during the range, with occasional updates (city, opt-in,
    phone); their `r` (initial snapshot), `c` and `u` events go into `events`."""
    rng = rng_for(spec.seed, TAG_CUSTOMERS)
    n = spec.customers
    existing = max(1, round(n * 0.6))
    before = start_ms - rng.integers(DAY_MS, 730 * DAY_MS, existing)
    during = start_ms + rng.integers(0, end_ms - start_ms, n - existing)
    signup = np.concatenate([np.sort(before), np.sort(during)]).astype(np.int64)
    first = rng.integers(0, len(vocab.FIRST_NAMES), n)
    last = rng.integers(0, len(vocab.LAST_NAMES), n)
    domain = rng.integers(0, len(_DOMAINS), n)
    country = rng.choice(len(COUNTRY_CODES), n, p=_COUNTRY_WEIGHTS)
    city = _random_city(rng, country)
    phone = np.where(rng.random(n) < 0.8, rng.integers(0, 10_000, n), -1)
    opt = rng.random(n) < 0.45
    # Scale-free popularity: a customer's weight depends on its rank as a fraction of all customers,
    # so the top customer orders ~13x the average at any scale.
    rank = (rng.permutation(n) + 1) / n
    popularity_cum = np.cumsum((rank + 0.01) ** -0.8)

    # Updates: ~2% of customers per day change city, opt-in or phone.
    lo = np.maximum(signup, start_ms) + 1
    count = rng.poisson(0.02 * (end_ms - lo) / DAY_MS)
    u_cust = np.repeat(np.arange(n), count)
    u_ts = lo[u_cust] + (rng.random(len(u_cust)) * (end_ms - lo[u_cust])).astype(np.int64)
    order = np.lexsort((u_ts, u_cust))
    u_cust, u_ts = u_cust[order], u_ts[order]
    u_kind = rng.choice(3, len(u_cust), p=[0.5, 0.35, 0.15])
    u_step = rng.integers(1, 1_000_000, len(u_cust))  # a move goes to another city of the country
    u_phone = rng.integers(0, 10_000, len(u_cust))

    total = n + len(u_cust)
    ver_cust = np.concatenate([np.arange(n), u_cust]).astype(np.int64)
    ver_city = np.concatenate([city, np.zeros(len(u_cust), np.int64)])
    ver_phone = np.concatenate([phone, np.zeros(len(u_cust), np.int64)])
    ver_opt = np.concatenate([opt, np.zeros(len(u_cust), bool)])
    ver_prev = np.full(total, -1, np.int64)
    cur_city, cur_phone, cur_opt = city.tolist(), phone.tolist(), opt.tolist()
    latest = list(range(n))
    v_city, v_phone, v_opt, v_prev = (
        ver_city.tolist(), ver_phone.tolist(), ver_opt.tolist(), ver_prev.tolist()
    )  # fmt: skip
    starts, counts = _CITY_START.tolist(), _CITY_COUNT.tolist()
    for j, (c, kind, step, new_phone) in enumerate(
        zip(u_cust.tolist(), u_kind.tolist(), u_step.tolist(), u_phone.tolist(), strict=True)
    ):
        k = int(country[c])
        if kind == 0 and counts[k] > 1:
            offset = cur_city[c] - starts[k]
            cur_city[c] = starts[k] + (offset + 1 + step % (counts[k] - 1)) % counts[k]
        elif kind == 1 or counts[k] == 1:
            cur_opt[c] = not cur_opt[c]
        else:
            cur_phone[c] = new_phone if new_phone != cur_phone[c] else (new_phone + 1) % 10_000
        v = n + j
        v_city[v], v_phone[v], v_opt[v], v_prev[v] = (
            cur_city[c],
            cur_phone[c],
            cur_opt[c],
            latest[c],
        )
        latest[c] = v

    ver_ts = np.concatenate([np.where(signup < start_ms, start_ms, signup), u_ts])
    ver_op = np.concatenate(
        [np.where(signup < start_ms, OP_R, OP_C), np.full(len(u_cust), OP_U)]
    ).astype(np.int8)
    events.add(
        {"ts": ver_ts, "ver": np.arange(total, dtype=np.int64), "cust": ver_cust, "op": ver_op},
        "ts",
        start_ms,
    )
    return Customers(
        n=n,
        first=first,
        last=last,
        domain=domain,
        country=country,
        signup_ms=signup,
        popularity_cum=popularity_cum,
        ver_cust=ver_cust,
        ver_city=np.array(v_city, np.int64),
        ver_phone=np.array(v_phone, np.int64),
        ver_opt=np.array(v_opt, bool),
        ver_prev=np.array(v_prev, np.int64),
    )


# --------------------------------------------------------------------------------------------
# Catalog


@dataclass
class Catalog:
    """Products and, per day, whether each is in that day's snapshot, active, its price (USD cents)
    and `updated_at`."""

    ids: list[str]
    names: list[str]
    categories: list[str]
    brands: list[str]
    popularity: np.ndarray
    listed: np.ndarray  # (days, n) bool
    active: np.ndarray  # (days, n) bool
    price: np.ndarray  # (days, n) int64 cents
    updated: np.ndarray  # (days, n) int64 ms

    def available(self, day: int) -> np.ndarray:
        """Products that can be ordered on `day`: in that day's snapshot and active."""
        return np.flatnonzero(self.listed[day] & self.active[day])


def make_catalog(spec: GeneratorSpec, start_ms: int) -> Catalog:
    """A catalog whose daily snapshots drop a few products, bring some back, add new ones,
    deactivate some and change some prices."""
    rng = rng_for(spec.seed, TAG_CATALOG)
    days = spec.days
    base = int(min(5000, max(40, spec.customers // 2)))
    added_per_day = max(1, base // 100)
    n = base + added_per_day * (days - 1)
    names, categories = [], []
    cat_pick = rng.integers(0, len(vocab.CATEGORIES), n).tolist()
    adj_pick = rng.integers(0, len(vocab.ADJECTIVES), n).tolist()
    noun_pick = rng.integers(0, 6, n).tolist()
    for c, a, k in zip(cat_pick, adj_pick, noun_pick, strict=True):
        category, nouns = vocab.CATEGORIES[c]
        names.append(f"{vocab.ADJECTIVES[a]} {nouns[k % len(nouns)]}")
        categories.append(category)
    brands = [vocab.BRANDS[b] for b in rng.integers(0, len(vocab.BRANDS), n).tolist()]
    base_price = np.clip(np.rint(np.exp(rng.normal(np.log(2500), 0.8, n))), 199, 99_999)
    popularity = ((rng.permutation(n) + 1) / n + 0.02) ** -0.9

    listed = np.zeros((days, n), bool)
    active = np.zeros((days, n), bool)
    price = np.zeros((days, n), np.int64)
    updated = np.zeros((days, n), np.int64)
    introduced = np.zeros(n, bool)
    introduced[:base] = True
    listed[0, :base] = True
    active[0, :base] = rng.random(base) >= 0.05
    price[0] = base_price.astype(np.int64)
    updated[0] = start_ms - rng.integers(DAY_MS, 400 * DAY_MS, n)
    for d in range(1, days):
        prev_listed, prev_active = listed[d - 1], active[d - 1]
        changed_at = start_ms + (d - 1) * DAY_MS + rng.integers(HOUR_MS, 23 * HOUR_MS, n)
        drop = prev_listed & (rng.random(n) < 0.02)
        back = introduced & ~prev_listed & (rng.random(n) < 0.25)
        new = np.zeros(n, bool)
        new[base + (d - 1) * added_per_day : base + d * added_per_day] = True
        introduced |= new
        listed[d] = (prev_listed & ~drop) | back | new
        flip = prev_listed & (rng.random(n) < np.where(prev_active, 0.01, 0.2))
        active[d] = np.where(new | back, True, prev_active ^ flip)
        reprice = prev_listed & (rng.random(n) < 0.03)
        factor = rng.uniform(0.85, 1.15, n)
        price[d] = np.where(
            reprice, np.maximum(99, np.rint(price[d - 1] * factor)), price[d - 1]
        ).astype(np.int64)
        touched = reprice | flip | new | back
        updated[d] = np.where(touched, changed_at, updated[d - 1])
    return Catalog(
        ids=[f"p{i + 1:06d}" for i in range(n)],
        names=names,
        categories=categories,
        brands=brands,
        popularity=popularity,
        listed=listed,
        active=active,
        price=price,
        updated=updated,
    )


# --------------------------------------------------------------------------------------------
# FX


@dataclass
class Fx:
    """Treasury's rates: the true daily rate per currency (USD, EUR, GBP columns) and what each
    ingest day's file holds."""

    true_rate: np.ndarray  # (days, 3) float
    deliveries: list[list[tuple[str, str, str]]]  # per ingest day: (rate_date, currency, rate)
    missing: list[FxNote]
    corrections: list[FxNote]


def _rate_text(rate: float) -> str:
    text = f"{rate:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def make_fx(spec: GeneratorSpec, start_ms: int) -> Fx:
    """Daily EUR and GBP rates to USD as a bounded random walk, with a rate missing now and then
    (never on the first day) and now and then a correction of an earlier day delivered later."""
    rng = rng_for(spec.seed, TAG_FX)
    days = spec.days
    true = np.ones((days, 3))
    walk = {1: (rng.uniform(1.07, 1.09), 1.05, 1.10), 2: (rng.uniform(1.26, 1.29), 1.25, 1.30)}
    for cur, (level, lo, hi) in walk.items():
        steps = rng.normal(0, 0.0025, days)
        steps[0] = 0.0
        true[:, cur] = np.round(np.clip(level + np.cumsum(steps), lo, hi), 6)
    # Some days carry only 4 decimals, as treasury's feed does now and then.
    coarse = rng.random(days) < 0.3
    true[coarse, 1:] = np.round(true[coarse, 1:], 4)

    missing = rng.random((days, 3)) < 0.08
    missing[0] = False
    missing[:, 0] = False
    if days >= 3 and not missing.any():
        missing[int(rng.integers(1, days)), int(rng.integers(1, 3))] = True
    usd_text = ("1", "1.0", "1.000000")
    usd_pick = rng.integers(0, 4, days)  # 3 means USD absent that day

    dates = [day_string(start_ms, d) for d in range(days)]
    delivered: dict[tuple[int, int], float] = {}
    deliveries: list[list[tuple[str, str, str]]] = []
    corrections: list[FxNote] = []
    forced_day = min(2, days - 1)
    for d in range(days):
        rows: list[tuple[str, str, str]] = []
        if usd_pick[d] < 3:
            rows.append((dates[d], "USD", usd_text[usd_pick[d]]))
        for cur in (1, 2):
            if not missing[d, cur]:
                rows.append((dates[d], vocab.CURRENCIES[cur], _rate_text(true[d, cur])))
                delivered[(d, cur)] = float(true[d, cur])
        wants = rng.random() < 0.25 or (d == forced_day and d >= 1 and not corrections)
        candidates = [k for k in sorted(delivered) if d - 3 <= k[0] < d]
        if wants and candidates:
            rate_day, cur = candidates[int(rng.integers(0, len(candidates)))]
            delta = rng.uniform(0.0002, 0.002) * (1 if rng.random() < 0.5 else -1)
            fixed = round(delivered[(rate_day, cur)] + delta, 6)
            delivered[(rate_day, cur)] = fixed
            text = _rate_text(fixed)
            rows.append((dates[rate_day], vocab.CURRENCIES[cur], text))
            corrections.append(FxNote(dates[rate_day], vocab.CURRENCIES[cur], dates[d], text))
        deliveries.append(rows)
    missing_notes = [
        FxNote(dates[d], vocab.CURRENCIES[c], None, None)
        for d in range(days)
        for c in (1, 2)
        if missing[d, c]
    ]
    return Fx(true, deliveries, missing_notes, corrections)


# --------------------------------------------------------------------------------------------
# Orders, items, payments

ORDER_EVENT_TEMPLATE: dict[str, type] = {
    "ts": np.int64,
    "g": np.int64,
    "op": np.int8,
    "to": np.int8,
    "frm": np.int8,
    "flag": np.int8,
}
ITEM_EVENT_TEMPLATE: dict[str, type] = {
    "ts": np.int64,
    "g": np.int64,
    "line": np.int64,
    "prod": np.int64,
    "qty": np.int64,
    "unit": np.int64,
    "disc": np.int64,
    "op": np.int8,
    "flag": np.int8,
}
PAYMENT_EVENT_TEMPLATE: dict[str, type] = {
    "ts": np.int64,
    "g": np.int64,
    "type": np.int8,
    "attempt": np.int64,
    "amount": np.int64,
    "method": np.int8,
}


@dataclass
class OrdersToday:
    """The orders placed on one day, as the clickstream needs them."""

    g: np.ndarray  # global order number
    ts: np.ndarray
    cust: np.ndarray
    item_order: np.ndarray  # index into g of each item
    item_prod: np.ndarray


class Orders:
    """All orders: their attributes by global order number `g` (day * orders_per_day + i)."""

    def __init__(self, spec: GeneratorSpec) -> None:
        total = spec.days * spec.orders_per_day
        self.cust = np.zeros(total, np.int64)
        self.ts = np.zeros(total, np.int64)
        self.country = np.zeros(total, np.int8)
        self.currency = np.zeros(total, np.int8)
        self.amount = np.zeros(total, np.int64)  # cents, order currency

    @staticmethod
    def ids(g: np.ndarray) -> list[str]:
        return numbered_ids("o", g + 1, 9)


CLICK_TEMPLATE: dict[str, type] = {
    "ts": np.int64,
    "sess": np.int64,
    "pos": np.int64,
    "type": np.int8,
    "prod": np.int64,
    "order": np.int64,
    "event": np.int64,
}
SESSION_TEMPLATE: dict[str, type] = {
    "sid": np.int64,
    "cust": np.int64,
    "ip": np.int64,
    "ua": np.int8,
}


def _sessions_of(events: Cols, sessions: Cols) -> tuple[Cols, Cols]:
    """`events` with the rows of `sessions` they belong to, renumbered from 0."""
    used, index = np.unique(events["sess"], return_inverse=True)
    return {**events, "sess": index.astype(np.int64)}, take(sessions, used)


def _uniform(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    return rng.integers(lo, hi, n, dtype=np.int64)


class World:
    """The simulated shop; `advance(day)` creates that day's orders and schedules their future."""

    def __init__(self, spec: GeneratorSpec) -> None:
        self.spec = spec
        self.start_ms = int(
            datetime(
                spec.start_date.year, spec.start_date.month, spec.start_date.day, tzinfo=UTC
            ).timestamp()
            * 1000
        )
        self.end_ms = self.start_ms + spec.days * DAY_MS
        self.dates = [day_string(self.start_ms, d) for d in range(spec.days)]
        self.customer_events = Buckets(spec.days, CUSTOMER_EVENT_TEMPLATE)
        self.order_events = Buckets(spec.days, ORDER_EVENT_TEMPLATE)
        self.item_events = Buckets(spec.days, ITEM_EVENT_TEMPLATE)
        self.payment_events = Buckets(spec.days, PAYMENT_EVENT_TEMPLATE)
        self.customers = make_customers(spec, self.start_ms, self.end_ms, self.customer_events)
        self.catalog = make_catalog(spec, self.start_ms)
        self.fx = make_fx(spec, self.start_ms)
        self.orders = Orders(spec)
        salts = rng_for(spec.seed, TAG_IDS).integers(0, 2**63, 8)
        self.salts = [int(s) for s in salts]
        self.next_lsn = 10_000
        self.next_payment_event = 0
        self.next_click_event = 0
        self.next_session = 0
        # Events after midnight of sessions that began the day before, and those sessions.
        self.click_carry: tuple[Cols, Cols] | None = None

    # -- customers -------------------------------------------------------------------------

    def _pick_customers(self, rng: np.random.Generator, ts: np.ndarray) -> np.ndarray:
        signup = self.customers.signup_ms
        weights = self.customers.popularity_cum
        n = len(ts)
        known = np.maximum(np.searchsorted(signup, ts, side="left"), 1)
        u = rng.random(n) * weights[known - 1]
        cust = np.minimum(np.searchsorted(weights, u, side="right"), known - 1)
        # A fifth of orders come from someone who signed up in the last two days: first orders.
        recent_lo = np.searchsorted(signup, ts - 2 * DAY_MS, side="left")
        recent = (rng.random(n) < 0.2) & (known > recent_lo)
        pick = recent_lo + (rng.random(n) * (known - recent_lo)).astype(np.int64)
        return np.where(recent, pick, cust).astype(np.int64)

    # -- one day ---------------------------------------------------------------------------

    def advance(self, day: int) -> OrdersToday:
        """Create day `day`'s orders and items; schedule their status changes, payments and
        deletes into the event buckets of the days they happen on."""
        spec = self.spec
        rng = rng_for(spec.seed, TAG_ORDERS, day)
        n = spec.orders_per_day
        day_start = self.start_ms + day * DAY_MS
        g = day * n + np.arange(n, dtype=np.int64)
        hours = rng.choice(24, n, p=HOUR_WEIGHTS)
        ts0 = np.sort(day_start + hours * HOUR_MS + _uniform(rng, 0, HOUR_MS, n))
        cust = self._pick_customers(rng, ts0)
        abroad = rng.random(n) < 0.05
        country = np.where(
            abroad,
            rng.choice(len(COUNTRY_CODES), n, p=_COUNTRY_WEIGHTS),
            self.customers.country[cust],
        ).astype(np.int8)
        currency = _COUNTRY_CURRENCY[country]

        # Items, priced from the day's catalog converted at the day's true rate.
        lines = rng.choice(5, n, p=[0.45, 0.25, 0.15, 0.1, 0.05]) + 1
        starts = np.cumsum(lines) - lines
        item_order = np.repeat(np.arange(n), lines)
        line_no = np.arange(len(item_order)) - starts[item_order] + 1
        available = self.catalog.available(day)
        weights = self.catalog.popularity[available]
        prod = available[rng.choice(len(available), len(item_order), p=weights / weights.sum())]
        qty = rng.choice(4, len(item_order), p=[0.72, 0.18, 0.07, 0.03]) + 1
        rate = self.fx.true_rate[day, currency[item_order]]
        unit = np.maximum(1, np.rint(self.catalog.price[day, prod] / rate)).astype(np.int64)
        disc = np.where(
            rng.random(len(item_order)) < 0.8, 0, rng.choice(DISCOUNTS, len(item_order))
        )
        # Exact line amounts in 1/10000 of the currency unit, order amount rounded half-up.
        raw = qty * unit * (100 - disc)
        amount = (np.add.reduceat(raw, starts) + 50) // 100

        o = self.orders
        o.cust[g], o.ts[g], o.country[g], o.currency[g], o.amount[g] = (
            cust, ts0, country, currency, amount
        )  # fmt: skip

        # Lifecycle, all times relative to placement.
        method0 = rng.choice(4, n, p=[0.65, 0.2, 0.1, 0.05]).astype(np.int8)
        method1 = np.where(rng.random(n) < 0.7, method0, rng.integers(0, 4, n)).astype(np.int8)
        no_payment = rng.random(n) < 0.03
        fail_first = ~no_payment & (rng.random(n) < 0.06)
        retry_ok = fail_first & (rng.random(n) < 0.7)
        t_first = ts0 + _uniform(rng, 5 * SEC_MS, 120 * SEC_MS, n)
        t_retry = t_first + _uniform(rng, MIN_MS, 30 * MIN_MS, n)
        paid = ~no_payment & (~fail_first | retry_ok)
        t_auth = np.where(fail_first, t_retry, t_first)
        t_capture = t_auth + _uniform(rng, SEC_MS, 300 * SEC_MS, n)
        cancel_paid = paid & (rng.random(n) < 0.02)
        shipped = paid & ~cancel_paid
        t_cancel = np.where(
            no_payment,
            ts0 + _uniform(rng, 30 * MIN_MS, 48 * HOUR_MS, n),
            np.where(
                cancel_paid,
                t_capture + _uniform(rng, HOUR_MS, 20 * HOUR_MS, n),
                t_retry + _uniform(rng, HOUR_MS, 24 * HOUR_MS, n),
            ),
        )
        cancelled = no_payment | cancel_paid | (fail_first & ~retry_ok)
        t_ship = t_capture + _uniform(rng, 4 * HOUR_MS, 36 * HOUR_MS, n)
        t_deliver = t_ship + _uniform(rng, 12 * HOUR_MS, 72 * HOUR_MS, n)
        returned = shipped & (rng.random(n) < 0.08)
        t_return = t_deliver + _uniform(rng, 6 * HOUR_MS, 120 * HOUR_MS, n)
        t_refund = t_return + _uniform(rng, MIN_MS, 2 * HOUR_MS, n)

        t_delete, delete_flag = self._deletes(day, ts0)
        deleted = t_delete >= 0

        def before_delete(t: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return ~deleted[idx] | (t < t_delete[idx])

        # Order events.
        parts: list[Cols] = []

        def add(mask: np.ndarray, ts: np.ndarray, op: int, to: int, frm: np.ndarray | int) -> None:
            idx = np.flatnonzero(mask)
            frm_arr = np.broadcast_to(np.asarray(frm, np.int8), (n,))[idx]
            parts.append(
                {
                    "ts": ts[idx],
                    "g": g[idx],
                    "op": np.full(len(idx), op, np.int8),
                    "to": np.full(len(idx), to, np.int8),
                    "frm": frm_arr.astype(np.int8),
                    "flag": np.zeros(len(idx), np.int8),
                }
            )

        everyone = np.ones(n, bool)
        add(everyone, ts0, OP_C, PLACED, -1)
        add(paid, t_capture, OP_U, PAID, PLACED)
        add(cancelled, t_cancel, OP_U, CANCELLED, np.where(cancel_paid, PAID, PLACED))
        add(shipped, t_ship, OP_U, SHIPPED, PAID)
        add(shipped, t_deliver, OP_U, DELIVERED, SHIPPED)
        add(returned, t_return, OP_U, RETURNED, DELIVERED)
        events = concat(parts, ORDER_EVENT_TEMPLATE)
        local = events["g"] - day * n
        events = take(events, before_delete(events["ts"], local))
        # The delete's `before` is the row as it stood: its status just before the delete.
        status = np.full(n, PLACED, np.int8)
        for mask, t, st in (
            (paid, t_capture, PAID),
            (cancelled, t_cancel, CANCELLED),
            (shipped, t_ship, SHIPPED),
            (shipped, t_deliver, DELIVERED),
            (returned, t_return, RETURNED),
        ):
            status = np.where(mask & (t < t_delete), st, status).astype(np.int8)
        d_idx = np.flatnonzero(deleted)
        deletes = {
            "ts": t_delete[d_idx],
            "g": g[d_idx],
            "op": np.full(len(d_idx), OP_D, np.int8),
            "to": np.full(len(d_idx), -1, np.int8),
            "frm": status[d_idx],
            "flag": delete_flag[d_idx],
        }
        self.order_events.add(concat([events, deletes], ORDER_EVENT_TEMPLATE), "ts", self.start_ms)

        # Item events: created with the order; deleted with it unless those deletes are lost.
        items = {
            "ts": ts0[item_order],
            "g": g[item_order],
            "line": line_no.astype(np.int64),
            "prod": prod.astype(np.int64),
            "qty": qty.astype(np.int64),
            "unit": unit,
            "disc": disc.astype(np.int64),
            "op": np.full(len(item_order), OP_C, np.int8),
            "flag": np.zeros(len(item_order), np.int8),
        }
        gone = deleted[item_order] & ((delete_flag[item_order] & DELETE_ITEMS_MISSING) == 0)
        item_deletes = take(items, gone)
        item_deletes["ts"] = t_delete[item_order[gone]]
        item_deletes["op"][:] = OP_D
        item_deletes["flag"] = delete_flag[item_order[gone]] & DELETE_KEY_ONLY
        self.item_events.add(
            concat([items, item_deletes], ITEM_EVENT_TEMPLATE), "ts", self.start_ms
        )

        # Payment events: a failed attempt may come first; refunds only for returned orders.
        attempt0, attempt1 = 2 * g, 2 * g + 1
        good_attempt = np.where(fail_first, attempt1, attempt0)
        good_method = np.where(fail_first, method1, method0)
        pay_parts: list[Cols] = []

        def pay(
            mask: np.ndarray, ts: np.ndarray, kind: int, att: np.ndarray, meth: np.ndarray
        ) -> None:
            idx = np.flatnonzero(mask)
            pay_parts.append(
                {
                    "ts": ts[idx],
                    "g": g[idx],
                    "type": np.full(len(idx), kind, np.int8),
                    "attempt": att[idx],
                    "amount": amount[idx],
                    "method": meth[idx].astype(np.int8),
                }
            )

        pay(fail_first, t_first, FAILED, attempt0, method0)
        pay(fail_first & ~retry_ok, t_retry, FAILED, attempt1, method1)
        pay(paid, t_auth, AUTHORIZED, good_attempt, good_method)
        pay(paid, t_capture, CAPTURED, good_attempt, good_method)
        pay(returned, t_refund, REFUNDED, good_attempt, good_method)
        payments = concat(pay_parts, PAYMENT_EVENT_TEMPLATE)
        payments = take(payments, before_delete(payments["ts"], payments["g"] - day * n))
        self.payment_events.add(payments, "ts", self.start_ms)
        return OrdersToday(g=g, ts=ts0, cust=cust, item_order=item_order, item_prod=prod)

    def _deletes(self, day: int, ts0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """When (or -1) each of the day's orders is deleted, and its delete flags."""
        n = len(ts0)
        t_delete = np.full(n, -1, np.int64)
        flags = np.zeros(n, np.int8)
        rate = self.spec.defects.deletes
        if rate <= 0:
            return t_delete, flags
        rng = rng_for(self.spec.seed, TAG_DELETES, day)
        chosen = rng.random(n) < rate
        t_delete = np.where(chosen, ts0 + _uniform(rng, 10 * MIN_MS, 36 * HOUR_MS, n), -1)
        key_only = rng.random(n) < 0.5
        missing = rng.random(n) < 0.5
        flags = np.where(key_only, DELETE_KEY_ONLY, 0) | np.where(missing, DELETE_ITEMS_MISSING, 0)
        flags = np.where(chosen, flags, 0).astype(np.int8)
        if day == 0:
            # Make sure both kinds of order delete exist: with and without their item deletes.
            early = ts0 < self.end_ms - 2 * HOUR_MS
            for want in (DELETE_ITEMS_MISSING, 0):
                has = chosen & (t_delete < self.end_ms) & ((flags & DELETE_ITEMS_MISSING) == want)
                candidates = np.flatnonzero(early & ~chosen)
                if not has.any() and len(candidates):
                    i = int(candidates[rng.integers(0, len(candidates))])
                    chosen[i] = True
                    t_delete[i] = ts0[i] + int(rng.integers(10 * MIN_MS, HOUR_MS))
                    flags[i] = want | (DELETE_KEY_ONLY if want else 0)
        return t_delete, flags

    # -- CDC of one day ----------------------------------------------------------------------

    def cdc(self, day: int) -> tuple[Cols, Cols, Cols]:
        """The customers, orders and order_items events committed on `day`, each sorted by commit
        order and given its `lsn` from the one database-wide counter."""
        cust = self.customer_events.pop(day)
        orders = self.order_events.pop(day)
        items = self.item_events.pop(day)
        ts = np.concatenate([cust["ts"], orders["ts"], items["ts"]])
        rank = np.concatenate(
            [
                np.zeros(len(cust["ts"]), np.int64),
                np.ones(len(orders["ts"]) + len(items["ts"]), np.int64),
            ]
        )
        entity = np.concatenate([cust["cust"], orders["g"], items["g"]])
        sub = np.concatenate([cust["ver"], np.zeros(len(orders["ts"]), np.int64), items["line"]])
        order = np.lexsort((sub, entity, rank, ts))
        lsn = np.empty(len(ts), np.int64)
        lsn[order] = self.next_lsn + np.arange(len(ts), dtype=np.int64)
        self.next_lsn += len(ts)
        out = []
        offset = 0
        for cols in (cust, orders, items):
            k = len(cols["ts"])
            cols["lsn"] = lsn[offset : offset + k]
            offset += k
            out.append(take(cols, np.argsort(cols["lsn"], kind="stable")))
        return out[0], out[1], out[2]

    def payments(self, day: int) -> Cols:
        """The payment events of `day` in time order, each with its `event` number."""
        cols = self.payment_events.pop(day)
        order = np.lexsort((cols["type"], cols["attempt"], cols["ts"]))
        cols = take(cols, order)
        cols["event"] = self.next_payment_event + np.arange(len(order), dtype=np.int64)
        self.next_payment_event += len(order)
        return cols

    # -- clickstream -----------------------------------------------------------------------

    def clickstream(self, day: int, today: OrdersToday) -> tuple[Cols, Cols]:
        """The day's web events in time order, and the sessions they belong to.

        Every order comes from a session that views its products (and, on average,
        `funnel.extra_views` others per line, not bought), adds them, checks out and buys; the
        other sessions browse and leave at a step of the funnel (`GeneratorSpec.funnel`). A
        session still going at midnight goes on the next day: its later events are that day's
        (the last day's are never delivered).
        """
        funnel = self.spec.funnel
        rng = rng_for(self.spec.seed, TAG_CLICKS, day)
        day_start = self.start_ms + day * DAY_MS
        day_end = day_start + DAY_MS
        n_orders = len(today.g)
        lines = np.bincount(today.item_order, minlength=n_orders)
        n_browse = int(rng.poisson(funnel.browsing_per_order * n_orders)) if n_orders else 0
        available = self.catalog.available(day)

        # Sessions: buying sessions first, then browsing ones.
        n_sessions = n_orders + n_browse
        known_browse = rng.random(n_browse) >= funnel.anonymous
        late = rng.random(n_browse) < funnel.late_night
        browse_start = day_start + np.where(
            late,
            _uniform(rng, DAY_MS - 5 * 60 * SEC_MS, DAY_MS, n_browse),
            _uniform(rng, 0, DAY_MS, n_browse),
        )
        browse_cust = np.where(
            known_browse, self._pick_customers(rng, np.maximum(browse_start, day_start + 1)), -1
        )
        sessions = {
            "sid": self.next_session + np.arange(n_sessions, dtype=np.int64),
            "cust": np.concatenate([today.cust, browse_cust]).astype(np.int64),
            "ip": rng.integers(0x0B000000, 0xDF000000, n_sessions, dtype=np.int64),
            "ua": rng.integers(0, len(vocab.USER_AGENTS), n_sessions).astype(np.int8),
        }
        self.next_session += n_sessions

        # Buying sessions: page_view, product views not bought, (product_view, add_to_cart) per
        # line, checkout, purchase.
        extra = rng.poisson(funnel.extra_views * lines) if n_orders else lines
        p_count = 3 + extra + 2 * lines
        p_total = int(p_count.sum())
        p_sess = np.repeat(np.arange(n_orders), p_count)
        p_first = np.cumsum(p_count) - p_count
        p_pos = np.arange(p_total) - p_first[p_sess]
        p_lines, p_extra = lines[p_sess], extra[p_sess]
        in_extra = (p_pos >= 1) & (p_pos <= p_extra)
        step = p_pos - p_extra  # 1 .. 2 * lines: the lines' pairs; then checkout, purchase
        p_type = np.where(
            p_pos == 0,
            PAGE_VIEW,
            np.where(
                in_extra | ((step <= 2 * p_lines) & (step % 2 == 1)),
                PRODUCT_VIEW,
                np.where(
                    step <= 2 * p_lines,
                    ADD_TO_CART,
                    np.where(step == 2 * p_lines + 1, CHECKOUT, PURCHASE),
                ),
            ),
        )
        item_first = np.cumsum(lines) - lines
        in_lines = (p_pos > p_extra) & (step <= 2 * p_lines)
        item_idx = item_first[p_sess] + np.maximum(step - 1, 0) // 2
        browsed = available[rng.integers(0, len(available), p_total)]
        p_prod = np.where(
            in_lines,
            today.item_prod[np.minimum(item_idx, len(today.item_prod) - 1)],
            np.where(in_extra, browsed, -1),
        )
        p_order = np.where(p_type == PURCHASE, today.g[p_sess], -1)
        gaps = _uniform(rng, 5 * SEC_MS, 90 * SEC_MS, p_total)
        csum = np.cumsum(gaps)
        last = p_first + p_count - 1
        back = csum[last[p_sess]] - csum
        purchase_ts = today.ts + _uniform(rng, 100, 900, n_orders)
        p_ts = np.maximum(purchase_ts[p_sess] - back, day_start)
        p_ts = np.minimum(p_ts, day_end - 1)

        # Browsing sessions: one or more page views, then each funnel step reached.
        reach_view = rng.random(n_browse) < funnel.view
        reach_cart = reach_view & (rng.random(n_browse) < funnel.cart)
        reach_checkout = reach_cart & (rng.random(n_browse) < funnel.checkout)
        pages = rng.geometric(0.6, n_browse)
        views = np.where(reach_view, rng.integers(1, 4, n_browse), 0)
        b_count = pages + views + reach_cart + reach_checkout
        b_total = int(b_count.sum())
        b_sess = np.repeat(np.arange(n_browse), b_count)
        b_first = np.cumsum(b_count) - b_count
        b_pos = np.arange(b_total) - b_first[b_sess]
        b_pages, b_views = pages[b_sess], views[b_sess]
        b_type = np.where(
            b_pos < b_pages,
            PAGE_VIEW,
            np.where(
                b_pos < b_pages + b_views,
                PRODUCT_VIEW,
                np.where(b_pos == b_pages + b_views, ADD_TO_CART, CHECKOUT),
            ),
        )
        b_prod = np.where(
            b_type == PRODUCT_VIEW, available[rng.integers(0, len(available), b_total)], -1
        )
        carts = np.flatnonzero(b_type == ADD_TO_CART)
        b_prod[carts] = b_prod[carts - 1]  # the product viewed last
        b_gaps = _uniform(rng, 3 * SEC_MS, 120 * SEC_MS, b_total)
        b_csum = np.cumsum(b_gaps)
        b_ts = browse_start[b_sess] + (b_csum - b_csum[b_first[b_sess]])

        events = {
            "ts": np.concatenate([p_ts, b_ts]).astype(np.int64),
            "sess": np.concatenate([p_sess, b_sess + n_orders]).astype(np.int64),
            "pos": np.concatenate([p_pos, b_pos]).astype(np.int64),
            "type": np.concatenate([p_type, b_type]).astype(np.int8),
            "prod": np.concatenate([p_prod, b_prod]).astype(np.int64),
            "order": np.concatenate([p_order, np.full(b_total, -1)]).astype(np.int64),
        }
        order = np.lexsort((events["pos"], events["sess"], events["ts"]))
        events = take(events, order)
        events["event"] = self.next_click_event + np.arange(len(order), dtype=np.int64)
        self.next_click_event += len(order)

        # Yesterday's sessions that went on past midnight, then today's that do.
        if self.click_carry is not None:
            carried, carried_sessions = self.click_carry
            carried = {**carried, "sess": carried["sess"] + n_sessions}
            sessions = concat([sessions, carried_sessions], SESSION_TEMPLATE)
            events = concat([events, carried], CLICK_TEMPLATE)
            events = take(events, np.lexsort((events["pos"], events["sess"], events["ts"])))
        later = events["ts"] >= day_end
        self.click_carry = _sessions_of(take(events, later), sessions) if later.any() else None
        return take(events, ~later), sessions
