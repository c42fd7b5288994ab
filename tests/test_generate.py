"""The landing-zone generator writes what the landing contract describes, the same spec gives the
same bytes, and its summary lists exactly the defects it injected. Pure Python, no Spark."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from lakehouse_dev.generate import (
    DEFECT_KINDS,
    FILE_DEFECT_KINDS,
    SOURCES,
    DefectSwitches,
    FunnelRates,
    GenerationSummary,
    GeneratorSpec,
    generate_landing,
)

SMALL = GeneratorSpec()  # the default: 200 customers, 5 days, 100 orders a day, defects on
TINY = GeneratorSpec(customers=60, days=3, orders_per_day=30)

HEADERS = {
    "products": "product_id,name,category,brand,list_price,currency,active,updated_at",
    "payments": "event_id,payment_id,order_id,event_ts,event_type,amount,currency,method,"
    "provider_ref",
    "fx_rates": "rate_date,currency,rate_to_usd",
}
CDC = ("customers", "orders", "order_items")
STATUSES = {"placed", "paid", "shipped", "delivered", "cancelled", "returned"}
NEXT_STATUS = {
    "placed": {"paid", "cancelled"},
    "paid": {"shipped", "cancelled"},
    "shipped": {"delivered"},
    "delivered": {"returned"},
    "cancelled": set(),
    "returned": set(),
}
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
MONEY = re.compile(r"^\d+\.\d{2}$")


# --------------------------------------------------------------------------------------------
# Reading what was written


@dataclass
class Landed:
    source: str
    ingest_date: str
    rel: str
    raw: bytes
    header: str | None
    lines: list[str]  # data lines, in file order

    def line_no(self, k: int) -> int:
        """Physical line number of data line k (0-based): a CSV header is line 1."""
        return k + (2 if self.header is not None else 1)


def read_landing(root: Path) -> list[Landed]:
    """Every file, in delivery order: ingest date, then file name (sources interleaved)."""
    out = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        source, folder, _name = rel.split("/")
        raw = path.read_bytes()
        data = gzip.decompress(raw) if rel.endswith(".gz") else raw
        text = data.decode("utf-8").removeprefix("\ufeff")
        assert text == "" or text.endswith("\n"), rel
        lines = text.split("\n")[:-1]
        header = lines.pop(0) if source in HEADERS and lines else None
        out.append(Landed(source, folder.removeprefix("ingest_date="), rel, raw, header, lines))
    return sorted(out, key=lambda f: (f.ingest_date, f.rel.split("/")[-1]))


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not TS.match(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def problems(source: str, row: dict[str, Any]) -> list[str]:
    """What is wrong with a row by the landing contract: wrong types, sets, ranges, timestamps."""
    bad = []

    def need(ok: bool, name: str) -> None:
        if not ok:
            bad.append(name)

    def text(name: str) -> bool:
        return isinstance(row.get(name), str) and row[name] != ""

    if source == "customers":
        for name in ("customer_id", "email", "first_name", "last_name", "city"):
            need(text(name), name)
        need(row.get("phone") is None or text("phone"), "phone")
        need(re.fullmatch(r"[A-Z]{2}", str(row.get("country"))) is not None, "country")
        need(parse_ts(row.get("signup_ts")) is not None, "signup_ts")
        need(isinstance(row.get("marketing_opt_in"), bool), "marketing_opt_in")
    elif source == "orders":
        for name in ("order_id", "customer_id"):
            need(text(name), name)
        need(parse_ts(row.get("order_ts")) is not None, "order_ts")
        need(row.get("status") in STATUSES, "status")
        need(row.get("currency") in {"USD", "EUR", "GBP"}, "currency")
        need(
            re.fullmatch(r"[A-Z]{2}", str(row.get("shipping_country"))) is not None,
            "shipping_country",
        )
    elif source == "order_items":
        need(text("order_id"), "order_id")
        need(text("product_id"), "product_id")
        for name in ("line_no", "quantity"):
            value = row.get(name)
            need(type(value) is int and value >= 1, name)
        need(MONEY.match(str(row.get("unit_price"))) is not None, "unit_price")
        need(re.fullmatch(r"0\.\d{2}", str(row.get("discount"))) is not None, "discount")
    elif source == "payments":
        need(parse_ts(row.get("event_ts")) is not None, "event_ts")
        need(
            row.get("event_type") in {"authorized", "captured", "failed", "refunded"}, "event_type"
        )
        amount = str(row.get("amount"))
        need(MONEY.match(amount) is not None and Decimal(amount) > 0, "amount")
        need(row.get("method") in {"card", "paypal", "bank_transfer", "gift_card"}, "method")
        need(row.get("currency") in {"USD", "EUR", "GBP"}, "currency")
    elif source == "clickstream":
        need(parse_ts(row.get("event_ts")) is not None, "event_ts")
        kind = row.get("event_type")
        need(
            kind in {"page_view", "product_view", "add_to_cart", "checkout", "purchase"},
            "event_type",
        )
        product_event = kind in {"product_view", "add_to_cart"}
        need((row.get("product_id") is not None) == product_event, "product_id")
        need((row.get("order_id") is not None) == (kind == "purchase"), "order_id")
    elif source == "products":
        need(MONEY.match(row["list_price"]) is not None, "list_price")
        need(row["active"] in {"true", "false"}, "active")
        need(parse_ts(row["updated_at"]) is not None, "updated_at")
    elif source == "fx_rates":
        need(Decimal(row["rate_to_usd"]) > 0, "rate_to_usd")
    return bad


@dataclass
class Parsed:
    """One data line read the way ingestion would read it."""

    file: Landed
    k: int
    malformed: bool
    obj: dict[str, Any] | None  # the JSON object or CSV header -> value
    row: dict[str, Any] | None  # the CDC `after` (or `before` for a delete), else `obj`

    @property
    def line(self) -> int:
        return self.file.line_no(self.k)


def parse_lines(files: list[Landed]) -> list[Parsed]:
    out = []
    for f in files:
        names = next(csv.reader([f.header])) if f.header is not None else None
        for k, line in enumerate(f.lines):
            if names is not None:
                values = next(csv.reader([line]))
                if len(values) != len(names):
                    out.append(Parsed(f, k, True, None, None))
                    continue
                obj = dict(zip(names, values, strict=True))
                out.append(Parsed(f, k, False, obj, obj))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                out.append(Parsed(f, k, True, None, None))
                continue
            row = (obj["after"] or obj["before"]) if f.source in CDC else obj
            out.append(Parsed(f, k, False, obj, row))
    return out


def event_key(p: Parsed) -> Any:
    assert p.obj is not None
    if p.file.source in CDC:
        return p.obj["lsn"]
    return p.obj.get("event_id")


def row_key(p: Parsed) -> tuple[Any, ...]:
    assert p.row is not None
    if p.file.source == "customers":
        return (p.row.get("customer_id"),)
    if p.file.source == "orders":
        return (p.row.get("order_id"),)
    return (p.row.get("order_id"), p.row.get("line_no"))


def event_day(p: Parsed) -> str | None:
    assert p.obj is not None
    if p.file.source in CDC:
        return datetime.fromtimestamp(p.obj["ts_ms"] / 1000, UTC).strftime("%Y-%m-%d")
    ts = parse_ts(p.obj.get("event_ts"))
    return ts.strftime("%Y-%m-%d") if ts else None


def file_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# Fixtures: one landing zone with the default defects, one clean


@pytest.fixture(scope="module")
def defective(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("defective") / "landing"
    return root, generate_landing(root, SMALL)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    root = tmp_path_factory.mktemp("clean") / "landing"
    return root, generate_landing(root, replace(SMALL, defects=DefectSwitches.none()))


@pytest.fixture(scope="module")
def clean_lines(clean: tuple[Path, GenerationSummary]) -> list[Parsed]:
    return parse_lines(read_landing(clean[0]))


# --------------------------------------------------------------------------------------------
# Determinism


def test_same_spec_writes_byte_identical_files(
    tmp_path: Path, defective: tuple[Path, GenerationSummary]
) -> None:
    root, summary = defective
    again = generate_landing(tmp_path / "again", SMALL)
    assert file_digests(tmp_path / "again") == file_digests(root)
    assert again.defects == summary.defects
    assert again.records == summary.records


def test_different_seed_writes_different_files(
    tmp_path: Path, defective: tuple[Path, GenerationSummary]
) -> None:
    other = generate_landing(tmp_path / "other", replace(SMALL, seed=SMALL.seed + 1))
    ours, theirs = file_digests(defective[0]), file_digests(tmp_path / "other")
    empty = hashlib.sha256(b"").hexdigest()
    assert not [rel for rel in ours if ours[rel] == theirs.get(rel) and ours[rel] != empty]
    assert other.defects != defective[1].defects


def test_gzip_files_carry_no_name_and_no_time(defective: tuple[Path, GenerationSummary]) -> None:
    root, summary = defective
    for d in summary.defects_of("gzip"):
        raw = (root / d.file).read_bytes()
        assert raw[:2] == b"\x1f\x8b"
        flags, mtime = raw[3], int.from_bytes(raw[4:8], "little")
        assert flags & 0x08 == 0, "no file name in the gzip header"
        assert mtime == 0


# --------------------------------------------------------------------------------------------
# Layout, headers, counts


def test_files_are_laid_out_by_source_and_ingest_date(
    defective: tuple[Path, GenerationSummary],
) -> None:
    root, _ = defective
    pattern = re.compile(
        r"^(?P<src>[a-z_]+)/ingest_date=(?P<day>\d{4}-\d{2}-\d{2})/"
        r"(?P=src)-(?P<compact>\d{8})-\d{4}\.(jsonl|csv)(\.gz)?$"
    )
    seen = set()
    for f in read_landing(root):
        match = pattern.match(f.rel)
        assert match, f.rel
        assert match["compact"] == match["day"].replace("-", "")
        assert f.rel.split(".")[1] == ("csv" if f.source in HEADERS else "jsonl")
        seen.add(f.source)
    assert seen == set(SOURCES)
    days = {f.ingest_date for f in read_landing(root)}
    assert days == {f"2024-01-0{d}" for d in range(1, 6)}


def test_csv_headers_are_exactly_the_contract_unless_a_defect_says_otherwise(
    defective: tuple[Path, GenerationSummary],
) -> None:
    root, summary = defective
    drift = {d.file for d in summary.defects_of("schema_drift")}
    missing = {d.file for d in summary.defects_of("missing_column")}
    for f in read_landing(root):
        if f.source not in HEADERS or f.header is None:
            continue
        if f.rel in drift:
            assert f.header == HEADERS[f.source] + ",fee"
        elif f.rel in missing:
            assert f.header == "rate_date,rate_to_usd"
        else:
            assert f.header == HEADERS[f.source], f.rel


def test_summary_counts_every_file_and_data_line(defective: tuple[Path, GenerationSummary]) -> None:
    root, summary = defective
    files: Counter[str] = Counter()
    records: Counter[str] = Counter()
    for f in read_landing(root):
        files[f.source] += 1
        records[f.source] += len(f.lines)
    assert summary.files == {s: files[s] for s in SOURCES}
    assert summary.records == {s: records[s] for s in SOURCES}


def test_a_day_is_split_into_files_of_at_most_max_lines(tmp_path: Path) -> None:
    summary = generate_landing(tmp_path, TINY, max_lines_per_file=40)
    files = read_landing(tmp_path)
    assert all(len(f.lines) <= 40 for f in files)
    assert sum(1 for f in files if f.source == "clickstream") > TINY.days
    assert summary.records["clickstream"] == sum(
        len(f.lines) for f in files if f.source == "clickstream"
    )


def test_a_non_empty_landing_root_is_refused_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "stray.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_landing(tmp_path, TINY)
    assert (tmp_path / "stray.txt").exists()
    generate_landing(tmp_path, TINY, overwrite=True)
    assert not (tmp_path / "stray.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SOURCES)


def test_a_spec_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="orders_per_day"):
        generate_landing(tmp_path, replace(TINY, orders_per_day=0))
    with pytest.raises(ValueError, match="late_events"):
        generate_landing(tmp_path, replace(TINY, defects=DefectSwitches(late_events=1.5)))


# --------------------------------------------------------------------------------------------
# Defects: every kind present, really in its file, and the list exact


def test_every_defect_kind_appears_at_the_default_small_scale(
    defective: tuple[Path, GenerationSummary],
) -> None:
    _, summary = defective
    kinds = Counter(d.kind for d in summary.defects)
    assert set(kinds) == set(DEFECT_KINDS)
    for d in summary.defects:
        assert (d.line is None) == (d.kind in FILE_DEFECT_KINDS), d


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_defect_kind_appears_whatever_the_seed(tmp_path: Path, seed: int) -> None:
    summary = generate_landing(tmp_path, replace(SMALL, seed=seed))
    assert {d.kind for d in summary.defects} == set(DEFECT_KINDS)
    details = {d.detail for d in summary.defects_of("malformed_line")}
    assert details == {"truncated JSON", "wrong number of CSV fields"}


def test_file_defects_are_really_in_their_files(defective: tuple[Path, GenerationSummary]) -> None:
    root, summary = defective
    for d in summary.defects_of("bom"):
        assert d.source in HEADERS
        raw = (root / d.file).read_bytes()
        data = gzip.decompress(raw) if d.file.endswith(".gz") else raw
        assert data.startswith("\ufeff".encode())
    for d in summary.defects_of("gzip"):
        assert d.file.endswith(".gz")
        assert gzip.decompress((root / d.file).read_bytes())
    for d in summary.defects_of("empty_file"):
        assert (root / d.file).stat().st_size == 0
        assert d.source != "products", "an empty snapshot would read as every product dropped"
    for d in summary.defects_of("missing_column"):
        header = (root / d.file).read_text(encoding="utf-8").split("\n")[0]
        assert "currency" not in header.split(",")
        assert "'currency'" in d.detail
    for d in summary.defects_of("schema_drift"):
        assert d.source == "payments"
        assert "'fee'" in d.detail
    gz_files = {p.relative_to(root).as_posix() for p in root.rglob("*.gz")}
    assert gz_files == {d.file for d in summary.defects_of("gzip")}
    empty = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    empty = {rel for rel in empty if (root / rel).stat().st_size == 0}
    assert empty == {d.file for d in summary.defects_of("empty_file")}


def test_line_defects_are_really_on_their_lines(defective: tuple[Path, GenerationSummary]) -> None:
    root, summary = defective
    for d in summary.defects_of("malformed_line"):
        text = d.read_line(root)
        if d.detail == "truncated JSON":
            with pytest.raises(json.JSONDecodeError):
                json.loads(text)
        else:
            assert d.detail == "wrong number of CSV fields"
            header = next(f for f in read_landing(root) if f.rel == d.file).header
            assert header is not None
            assert len(next(csv.reader([text]))) != len(header.split(","))
    for d in summary.defects_of("bad_value"):
        field = re.match(r"^(\w+)[= ]", d.detail)
        assert field, d.detail
        text = d.read_line(root)
        if d.source in CDC:
            row = json.loads(text)["after"]
        elif d.source == "clickstream":
            row = json.loads(text)
        else:
            row = dict(zip(HEADERS["payments"].split(","), next(csv.reader([text])), strict=False))
        assert field[1] in problems(d.source, row), d.detail
    for d in summary.defects_of("delete"):
        obj = json.loads(d.read_line(root))
        assert obj["op"] == "d" and obj["after"] is None
        assert obj["before"]["order_id"]
    deletes = summary.defects_of("delete")
    assert any("item deletes NOT delivered" in d.detail for d in deletes)
    assert any("item deletes delivered" in d.detail for d in deletes)
    assert any(d.source == "order_items" for d in deletes)


def test_an_older_order_version_arrives_after_its_delete(
    defective: tuple[Path, GenerationSummary],
) -> None:
    root, summary = defective
    deleted_lsn = {
        json.loads(d.read_line(root))["lsn"]
        for d in summary.defects_of("delete")
        if d.source == "orders"
    }
    newer = [
        int(d.detail.rsplit("lsn=", 1)[1])
        for d in summary.defects_of("out_of_order_event")
        if d.source == "orders"
    ]
    assert set(newer) & deleted_lsn


def test_summary_lists_exactly_the_defects_found_in_the_files(
    defective: tuple[Path, GenerationSummary],
) -> None:
    """Reading every line as ingestion would and classifying it by the contract finds exactly the
    listed line defects, and nothing unlisted is malformed, bad, repeated, late or out of order."""
    root, summary = defective
    listed = {(d.file, d.line): d for d in summary.defects if d.line is not None}
    assert len(listed) == sum(1 for d in summary.defects if d.line is not None), "one per line"
    redelivered = {d.file: d for d in summary.defects_of("redelivered_file")}
    files = read_landing(root)
    by_rel = {f.rel: f for f in files}
    seen: set[tuple[str, Any]] = set()
    newest: dict[tuple[str, tuple[Any, ...]], int] = {}
    last_in_file: dict[str, int] = {}
    for p in parse_lines(files):
        src, rel = p.file.source, p.file.rel
        d = listed.get((rel, p.line))
        kind = d.kind if d else None
        if rel in redelivered:
            assert kind is None
            original = redelivered[rel].detail.split(" ")[2].rstrip(":")
            assert p.file.lines[p.k] in by_rel[original].lines
            if src not in ("products", "fx_rates"):
                assert (src, event_key(p)) in seen, "a re-delivery holds records already delivered"
            continue
        assert p.malformed == (kind == "malformed_line"), (rel, p.line)
        if p.malformed:
            continue
        assert p.row is not None and p.obj is not None
        is_delete = src in CDC and p.obj["op"] == "d"
        assert is_delete == (kind == "delete"), (rel, p.line)
        if is_delete:
            assert p.obj["after"] is None and all(row_key(p)), (rel, p.line)
        else:
            assert bool(problems(src, p.row)) == (kind == "bad_value"), (rel, p.line, kind)
        if kind == "bad_value" or src in ("products", "fx_rates"):
            continue
        key = (src, event_key(p))
        assert (key in seen) == (kind == "duplicate_event"), (rel, p.line)
        seen.add(key)
        if kind == "duplicate_event":
            continue
        late = event_day(p) != p.file.ingest_date
        assert late == (kind in ("late_event", "out_of_order_event") and late), (rel, p.line)
        if kind == "late_event":
            assert (event_day(p) or "") < p.file.ingest_date
        if src in CDC:
            lsn, rk = p.obj["lsn"], (src, row_key(p))
            older = lsn < newest.get(rk, -1)
            assert older == (kind == "out_of_order_event") or (older and kind == "late_event")
            newest[rk] = max(lsn, newest.get(rk, -1))
            if kind is None or kind == "delete":
                assert lsn > last_in_file.get(rel, -1), "clean lines are in commit order"
                last_in_file[rel] = lsn


def test_snapshot_re_deliveries_stay_on_their_ingest_day(
    defective: tuple[Path, GenerationSummary],
) -> None:
    _, summary = defective
    for d in summary.defects_of("redelivered_file"):
        original = d.detail.split(" ")[2].rstrip(":")
        assert original != d.file
        assert original.split("/")[1] <= d.file.split("/")[1]
        if d.source in ("products", "fx_rates"):
            assert original.split("/")[1] == d.file.split("/")[1]


@pytest.mark.parametrize(
    ("switch", "kinds"),
    [
        ("redelivered_files", {"redelivered_file"}),
        ("duplicate_events", {"duplicate_event"}),
        ("out_of_order_events", {"out_of_order_event"}),
        ("late_events", {"late_event"}),
        ("deletes", {"delete"}),
        ("malformed_lines", {"malformed_line"}),
        ("bad_values", {"bad_value"}),
        ("schema_drift", {"schema_drift"}),
        ("bom", {"bom"}),
        ("empty_file", {"empty_file"}),
        ("gzip", {"gzip"}),
        ("missing_column", {"missing_column"}),
    ],
)
def test_each_switch_turns_off_only_its_defect(
    tmp_path: Path, switch: str, kinds: set[str]
) -> None:
    off: Any = 0.0 if isinstance(getattr(DefectSwitches(), switch), float) else False
    switches = replace(DefectSwitches(), **{switch: off})
    summary = generate_landing(tmp_path, replace(SMALL, defects=switches))
    assert {d.kind for d in summary.defects} == set(DEFECT_KINDS) - kinds


# --------------------------------------------------------------------------------------------
# Clean data


def test_clean_switches_inject_nothing(
    clean: tuple[Path, GenerationSummary], clean_lines: list[Parsed]
) -> None:
    root, summary = clean
    assert summary.defects == ()
    assert not list(root.rglob("*.gz"))
    for p in clean_lines:
        assert not p.malformed, (p.file.rel, p.line)
        assert p.row is not None
        assert problems(p.file.source, p.row) == [], (p.file.rel, p.line)
        assert not p.file.raw.startswith("\ufeff".encode())
        if p.file.source in CDC:
            assert p.obj is not None and p.obj["op"] in {"c", "u", "r"}
    for f in read_landing(root):
        assert f.lines, f.rel
        if f.header is not None:
            assert f.header == HEADERS[f.source]


def test_clean_events_land_on_the_day_they_happen(clean_lines: list[Parsed]) -> None:
    for p in clean_lines:
        if p.file.source in ("products", "fx_rates"):
            continue
        assert event_day(p) == p.file.ingest_date, (p.file.rel, p.line)


def test_lsn_rises_with_commit_order_and_is_unique_across_the_database(
    clean_lines: list[Parsed],
) -> None:
    by_file: dict[str, list[tuple[int, int]]] = defaultdict(list)
    all_lsn = []
    for p in clean_lines:
        if p.file.source in CDC:
            assert p.obj is not None
            by_file[p.file.rel].append((p.obj["lsn"], p.obj["ts_ms"]))
            all_lsn.append(p.obj["lsn"])
    for rel, pairs in by_file.items():
        assert all(a[0] < b[0] and a[1] <= b[1] for a, b in pairwise(pairs)), rel
    assert len(all_lsn) == len(set(all_lsn))
    # ... and commit order holds across the three tables: sorting by lsn sorts by ts_ms.
    ordered = sorted(
        (p.obj["lsn"], p.obj["ts_ms"]) for p in clean_lines if p.file.source in CDC and p.obj
    )
    assert all(a[1] <= b[1] for a, b in pairwise(ordered))


def cdc_history(lines: list[Parsed], source: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    history: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for p in lines:
        if p.file.source == source and p.obj is not None:
            history[row_key(p)].append(p.obj)
    return {k: sorted(v, key=lambda e: e["lsn"]) for k, v in history.items()}


def test_orders_move_through_valid_status_transitions(clean_lines: list[Parsed]) -> None:
    history = cdc_history(clean_lines, "orders")
    finals: Counter[str] = Counter()
    for key, events in history.items():
        assert events[0]["op"] == "c" and events[0]["after"]["status"] == "placed", key
        for prev, event in pairwise(events):
            assert event["op"] == "u"
            assert event["before"] == prev["after"]
            assert event["after"]["status"] in NEXT_STATUS[prev["after"]["status"]], key
            assert event["ts_ms"] > prev["ts_ms"]
        finals[events[-1]["after"]["status"]] += 1
    assert set(finals) == STATUSES, finals


def test_orders_and_items_share_the_commit_time(clean_lines: list[Parsed]) -> None:
    created = {k[0]: e[0]["ts_ms"] for k, e in cdc_history(clean_lines, "orders").items()}
    items = cdc_history(clean_lines, "order_items")
    assert {k[0] for k in items} == set(created)
    for (order_id, line_no), events in items.items():
        assert events[0]["ts_ms"] == created[order_id]
        assert 1 <= line_no <= 5
    lines_per_order = Counter(k[0] for k in items)
    assert set(lines_per_order.values()) == {1, 2, 3, 4, 5}


def payments(lines: list[Parsed]) -> list[dict[str, Any]]:
    return [p.obj for p in lines if p.file.source == "payments" and p.obj is not None]


def test_a_refund_is_only_for_a_returned_order(clean_lines: list[Parsed]) -> None:
    final = {k[0]: e[-1]["after"]["status"] for k, e in cdc_history(clean_lines, "orders").items()}
    refunds = [p for p in payments(clean_lines) if p["event_type"] == "refunded"]
    assert refunds
    assert all(final[p["order_id"]] == "returned" for p in refunds)


def test_payments_follow_the_order_and_its_amount(clean_lines: list[Parsed]) -> None:
    history = cdc_history(clean_lines, "orders")
    orders = {k[0]: e[0]["after"] for k, e in history.items()}
    statuses = {k[0]: {e["after"]["status"] for e in v} for k, v in history.items()}
    amount: dict[str, Decimal] = defaultdict(Decimal)
    for (order_id, _), events in cdc_history(clean_lines, "order_items").items():
        row = events[0]["after"]
        line = row["quantity"] * Decimal(row["unit_price"]) * (1 - Decimal(row["discount"]))
        amount[order_id] += line
    by_payment: dict[str, list[str]] = defaultdict(list)
    for p in payments(clean_lines):
        order_id = p["order_id"]
        expected = amount[order_id].quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert Decimal(p["amount"]) == expected, p
        assert p["currency"] == orders[order_id]["currency"]
        by_payment[p["payment_id"]].append(p["event_type"])
        if p["event_type"] == "captured":
            assert "paid" in statuses[order_id]
    kinds = Counter(tuple(v) for v in by_payment.values())
    assert set(kinds) <= {
        ("authorized",),
        ("authorized", "captured"),
        ("authorized", "captured", "refunded"),
        ("failed",),
    }
    assert kinds[("failed",)] and kinds[("authorized", "captured", "refunded")]
    for order_id, states in statuses.items():
        if "paid" in states:
            captured = [p for p in payments(clean_lines) if p["order_id"] == order_id]
            assert any(p["event_type"] == "captured" for p in captured), order_id


def test_order_items_use_products_of_that_days_snapshot(clean_lines: list[Parsed]) -> None:
    snapshot: dict[str, dict[str, str]] = defaultdict(dict)
    for p in clean_lines:
        if p.file.source == "products" and p.obj is not None:
            snapshot[p.file.ingest_date][p.obj["product_id"]] = p.obj["active"]
    for p in clean_lines:
        if p.file.source == "order_items" and p.obj is not None and p.obj["op"] == "c":
            assert snapshot[p.file.ingest_date].get(p.obj["after"]["product_id"]) == "true"
    days = sorted(snapshot)
    dropped = [set(snapshot[a]) - set(snapshot[b]) for a, b in pairwise(days)]
    added = [set(snapshot[b]) - set(snapshot[a]) for a, b in pairwise(days)]
    assert any(dropped) and any(added)
    ever_dropped = set().union(*dropped)
    assert ever_dropped & set().union(*added), "some dropped products come back"


def test_customers_sign_up_change_and_come_back(clean_lines: list[Parsed]) -> None:
    history = cdc_history(clean_lines, "customers")
    ops = Counter(e["op"] for events in history.values() for e in events)
    assert ops["r"] and ops["c"] and ops["u"]
    changes: Counter[str] = Counter()
    for events in history.values():
        for e in events[1:]:
            changed = {k for k in e["after"] if e["after"][k] != e["before"][k]}
            assert len(changed) == 1 and changed <= {"city", "marketing_opt_in", "phone"}, e
            changes.update(changed)
    assert changes["city"] and changes["marketing_opt_in"]
    orders = cdc_history(clean_lines, "orders")
    per_customer = Counter(e[0]["after"]["customer_id"] for e in orders.values())
    repeat = [c for c, n in per_customer.items() if n > 1]
    assert len(repeat) > len(per_customer) / 4
    signup = {k[0]: e[0]["after"]["signup_ts"] for k, e in history.items()}
    for events in orders.values():
        row = events[0]["after"]
        assert signup[row["customer_id"]] < row["order_ts"]


def test_fx_rates_are_realistic_with_gaps_and_corrections(
    clean: tuple[Path, GenerationSummary], clean_lines: list[Parsed]
) -> None:
    _, summary = clean
    rows = [(p.file.ingest_date, p.obj) for p in clean_lines if p.file.source == "fx_rates"]
    first_day = SMALL.start_date.isoformat()
    on_first = {r["currency"] for day, r in rows if day == first_day and r is not None}
    assert {"EUR", "GBP"} <= on_first
    for _, r in rows:
        assert r is not None
        rate = Decimal(r["rate_to_usd"])
        bounds = {"USD": (1, 1), "EUR": (1.05, 1.10), "GBP": (1.25, 1.30)}[r["currency"]]
        assert Decimal(str(bounds[0])) <= rate <= Decimal(str(bounds[1])), r
        assert len(r["rate_to_usd"].partition(".")[2]) <= 6
    delivered = {(r["rate_date"], r["currency"]) for _, r in rows if r is not None}
    assert summary.fx_missing and summary.fx_corrections
    for note in summary.fx_missing:
        assert (note.rate_date, note.currency) not in delivered
    for note in summary.fx_corrections:
        assert note.ingest_date is not None and note.rate_date < note.ingest_date
        assert (note.ingest_date, note.rate_date, note.currency, note.rate_to_usd) in {
            (day, r["rate_date"], r["currency"], r["rate_to_usd"]) for day, r in rows if r
        }


def test_clickstream_has_sessions_with_purchases(clean_lines: list[Parsed]) -> None:
    events = [p.obj for p in clean_lines if p.file.source == "clickstream" and p.obj]
    orders = {k[0] for k in cdc_history(clean_lines, "orders")}
    purchases = [e for e in events if e["event_type"] == "purchase"]
    assert {e["order_id"] for e in purchases} == orders
    assert any(e["customer_id"] is None for e in events)
    assert all(e["customer_id"] for e in purchases)
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_session[e["session_id"]].append(e)
    for session in by_session.values():
        assert len({(e["customer_id"], e["ip"], e["user_agent"]) for e in session}) == 1
    assert len(by_session) > len(purchases)
    assert len({e["event_id"] for e in events}) == len(events)


def test_timestamps_are_iso_utc_and_dates_fall_in_range(clean_lines: list[Parsed]) -> None:
    first, last = date(2024, 1, 1), date(2024, 1, 5)
    for p in clean_lines:
        assert p.obj is not None
        if p.file.source == "orders":
            ts = parse_ts(p.obj["after"]["order_ts"])
            assert ts is not None and first <= ts.date() <= last
        elif p.file.source in ("payments", "clickstream"):
            ts = parse_ts(p.obj["event_ts"])
            assert ts is not None and first <= ts.date() <= last
    fractional = [p for p in clean_lines if p.file.source == "clickstream"]
    assert all("." in p.obj["event_ts"] for p in fractional if p.obj)


# --------------------------------------------------------------------------------------------
# Behaviour worth analysing: the funnel, products viewed and not bought, sessions past midnight


def _sessions(lines: list[Parsed]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Session id -> its (delivery day, event) in time order."""
    by: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for p in lines:
        if p.file.source == "clickstream" and p.obj is not None:
            by[p.obj["session_id"]].append((p.file.ingest_date, p.obj))
    return {s: sorted(es, key=lambda e: e[1]["event_ts"]) for s, es in by.items()}


def _steps(events: list[tuple[str, dict[str, Any]]]) -> set[str]:
    return {e["event_type"] for _, e in events}


def test_browsing_sessions_leave_at_each_funnel_step_at_the_configured_rates(
    tmp_path: Path,
) -> None:
    funnel = FunnelRates(view=0.6, cart=0.5, checkout=0.25)
    spec = GeneratorSpec(
        customers=2000, days=1, orders_per_day=4000, defects=DefectSwitches.none(), funnel=funnel
    )
    generate_landing(tmp_path, spec)
    browsing = [
        _steps(es)
        for es in _sessions(parse_lines(read_landing(tmp_path))).values()
        if "purchase" not in _steps(es)
    ]
    viewed = [s for s in browsing if "product_view" in s]
    carted = [s for s in viewed if "add_to_cart" in s]
    checked_out = [s for s in carted if "checkout" in s]
    # about 0.8 browsing sessions an order, each step reached at its rate (binomial, 5 sigma)
    assert abs(len(browsing) - 0.8 * 4000) < 5 * (0.8 * 4000) ** 0.5
    for part, whole, rate in (
        (viewed, browsing, 0.6),
        (carted, viewed, 0.5),
        (checked_out, carted, 0.25),
    ):
        sigma = (rate * (1 - rate) / len(whole)) ** 0.5
        assert abs(len(part) / len(whole) - rate) < 5 * sigma
    # a step is only reached through the one before it
    assert all("product_view" in s for s in browsing if "add_to_cart" in s)
    assert all("add_to_cart" in s for s in browsing if "checkout" in s)


def test_funnel_rates_of_0_and_1_give_sessions_that_stop_at_a_step_or_go_through(
    tmp_path: Path,
) -> None:
    base = GeneratorSpec(customers=100, days=2, orders_per_day=50, defects=DefectSwitches.none())
    # No session left open at the end of the last day (its later events are never delivered).
    whole = replace(FunnelRates(), late_night=0.0)
    for funnel, expected in (
        (replace(whole, view=0.0), {"page_view"}),
        (replace(whole, view=1.0, cart=1.0, checkout=1.0), {"page_view", "product_view",
                                                             "add_to_cart", "checkout"}),
        (replace(whole, view=1.0, cart=0.0), {"page_view", "product_view"}),
    ):  # fmt: skip
        root = tmp_path / f"landing-{funnel.view}-{funnel.cart}-{funnel.checkout}"
        generate_landing(root, replace(base, funnel=funnel))
        browsing = [
            _steps(es)
            for es in _sessions(parse_lines(read_landing(root))).values()
            if "purchase" not in _steps(es)
        ]
        assert browsing and all(s == expected for s in browsing), funnel


def test_buying_sessions_view_products_they_do_not_buy(clean_lines: list[Parsed]) -> None:
    bought = {
        (p.row["order_id"], p.row["product_id"])
        for p in clean_lines
        if p.file.source == "order_items" and p.row
    }
    buying = [es for es in _sessions(clean_lines).values() if "purchase" in _steps(es)]
    not_bought = 0
    for es in buying:
        (order,) = {e["order_id"] for _, e in es if e["event_type"] == "purchase"}
        carted = {e["product_id"] for _, e in es if e["event_type"] == "add_to_cart"}
        viewed = {e["product_id"] for _, e in es if e["event_type"] == "product_view"}
        assert carted == {product for o, product in bought if o == order}
        assert carted <= viewed
        not_bought += len(viewed - carted) > 0
    # extra_views 0.5 a line: a session of one line views nothing else with e^-0.5 = 61 %
    assert 0.25 * len(buying) < not_bought < 0.75 * len(buying)


def test_a_session_past_midnight_goes_on_in_the_next_days_delivery(
    clean_lines: list[Parsed],
) -> None:
    crossing = {
        s: es for s, es in _sessions(clean_lines).items() if len({day for day, _ in es}) > 1
    }
    assert len(crossing) >= 3
    funnel = re.compile(r"(page_view )+(product_view ){0,3}(add_to_cart )?(checkout )?")
    for events in crossing.values():
        days = sorted({day for day, _ in events})
        first = date.fromisoformat(days[0])
        assert [date.fromisoformat(d) for d in days] == [first, first + timedelta(days=1)]
        for day, event in events:
            assert event["event_ts"].startswith(day)  # each event delivered on its own day
        # one visitor throughout, and the whole of a browsing session: none lost at midnight
        assert len({(e["customer_id"], e["ip"], e["user_agent"]) for _, e in events}) == 1
        assert funnel.fullmatch("".join(e["event_type"] + " " for _, e in events))


def test_funnel_rates_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"funnel\.view must be within \[0, 1\], got 1.5"):
        generate_landing(tmp_path, replace(TINY, funnel=FunnelRates(view=1.5)))
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=r"funnel\.browsing_per_order must be a finite"):
            generate_landing(tmp_path, replace(TINY, funnel=FunnelRates(browsing_per_order=bad)))
