"""Putting one source's records of one day into landing files, with the switched-on defects.

Line-level defects (CDC sources, payments and clickstream only; the products snapshot and FX
files get file-level defects only, because a quarantined snapshot row would read as a dropped
product):

- `late_event`: the record is delivered one or two days after the day it happened.
- `duplicate_event`: a second copy of the record, later in the same file or in a later day's file
  (the copy is the defect; the first delivery is clean).
- `out_of_order_event` (CDC): an older version delivered after the next version of the same key,
  right after it in the same file or in the next day's file.
- `malformed_line`: the record's line is replaced by a truncated JSON text, or by a CSV row with
  one field too few or too many.
- `bad_value`: the record's line carries one value of the wrong type, outside its allowed set or
  range, an unparseable timestamp, or a null key.
- `delete` (orders and order_items): every `d` event is listed; deletes themselves are drawn by
  the world, because they change the truth.

Each record takes at most one of these. Records carried to a later day go to the start of that
day's first file. File-level defects: `gzip`, `bom`, `schema_drift` (payments gains a `fee`
column from a later day on), `redelivered_file` (a new file on the same or a later ingest day
holding the records of an earlier file that carry no injected defect; for the snapshot sources
products and fx_rates only on the same ingest day, where it cannot read as a newer version),
`empty_file` (0 bytes; never for the products snapshot, where it could read as "every product
dropped") and `missing_column` (an extra fx_rates file without its `currency` column, sent just
before the good file of the same day).

`InjectedDefect.detail`, exactly (`<id>` is `customer_id=c00000042 lsn=10123`,
`order_id=o000000007 lsn=10130`, `order_id=o000000007 line_no=2 lsn=10131` or
`event_id=pev_...` / `event_id=ev_...`):

    late_event          <id>: event of 2024-01-01 delivered on 2024-01-02
    duplicate_event     <id>: the same event delivered again
    out_of_order_event  <id>: older version delivered after the newer lsn=10135
    malformed_line      truncated JSON | wrong number of CSV fields
    bad_value           <field>=<new value as Python repr> <what is wrong>, see BAD_VALUES,
                        e.g. status='shipped_maybe' not in allowed set; quantity=0 is below 1;
                        or customer_id is null (record key missing)
    delete              order_id=o.. lsn=..: order deleted, its item deletes delivered
                        order_id=o.. lsn=..: order deleted, its item deletes NOT delivered
                        order_id=o.. line_no=1 lsn=..: item deleted with its order
                        (each may end in "; before holds the key only")
    redelivered_file    re-delivery of <original file>: its <n> records without injected defects
    schema_drift        extra column 'fee' not in contract version 1
    bom                 UTF-8 BOM at start of file
    empty_file          0 bytes
    gzip                gzip-compressed
    missing_column      required column 'currency' missing: every row of the file is bad input

A file can carry several file-level defects (a gzipped file with a BOM and a drifted header);
a line carries at most one line-level defect.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lakehouse.core.generator_spec import GeneratorSpec
from lakehouse_dev.generate.records import DayRecords, csv_lines
from lakehouse_dev.generate.summary import (
    CDC_SOURCES,
    CSV_SOURCES,
    SOURCES,
    FxNote,
    GenerationSummary,
    InjectedDefect,
    read_text,
)
from lakehouse_dev.generate.world import rng_for

LINE_DEFECT_SOURCES = ("customers", "orders", "order_items", "payments", "clickstream")
NONE, LATE, DUP, OOO, MALFORMED, BAD = range(6)
KIND_NAMES = {
    LATE: "late_event",
    DUP: "duplicate_event",
    OOO: "out_of_order_event",
    MALFORMED: "malformed_line",
    BAD: "bad_value",
}
ROLE_NORMAL, ROLE_COPY, ROLE_MOVED = range(3)
TAG_LINES, TAG_FILES, TAG_PLAN = 20, 21, 22

# On the first day these sources always carry at least one of these defects (when switched on),
# so that even a tiny landing zone holds every kind.
FORCED: dict[str, tuple[int, ...]] = {
    "orders": (LATE, DUP, OOO, MALFORMED, BAD),
    "payments": (MALFORMED, BAD),
}

MALFORMED_JSON = "truncated JSON"
MALFORMED_CSV = "wrong number of CSV fields"
GZIP_DETAIL = "gzip-compressed"
BOM_DETAIL = "UTF-8 BOM at start of file"
EMPTY_DETAIL = "0 bytes"
DRIFT_COLUMN = "fee"
DRIFT_DETAIL = f"extra column '{DRIFT_COLUMN}' not in contract version 1"
MISSING_COLUMN = "currency"
MISSING_DETAIL = f"required column '{MISSING_COLUMN}' missing: every row of the file is bad input"


def _const(value: Any) -> Callable[[Any], Any]:
    return lambda _old: value


def _negative(old: Any) -> str:
    return f"-{old}"


# Per source: (field, new value from the old one, what is wrong). The detail reads
# "<field>=<new value repr> <what is wrong>", or "<field> is null (record key missing)".
BAD_VALUES: dict[str, tuple[tuple[str, Callable[[Any], Any], str], ...]] = {
    "customers": (
        ("marketing_opt_in", _const("yes"), "is not a boolean"),
        ("signup_ts", _const("2024-02-30T08:00:00Z"), "does not parse as a timestamp"),
        ("customer_id", _const(None), "is null (record key missing)"),
    ),
    "orders": (
        ("status", _const("shipped_maybe"), "not in allowed set"),
        ("currency", _const("JPY"), "not in allowed set"),
        ("order_ts", _const("yesterday 14:05"), "does not parse as a timestamp"),
    ),
    "order_items": (
        ("quantity", _const(0), "is below 1"),
        ("discount", _const("1.00"), "is not below 1"),
        ("quantity", _const("three"), "is not an integer"),
        ("unit_price", _negative, "is below 0"),
    ),
    "payments": (
        ("amount", _negative, "is not above 0"),
        ("event_type", _const("chargeback"), "not in allowed set"),
        ("event_ts", _const("2024-13-01T09:00:00Z"), "does not parse as a timestamp"),
        ("method", _const("crypto"), "not in allowed set"),
    ),
    "clickstream": (
        ("event_type", _const("hover"), "not in allowed set"),
        ("event_ts", _const("not-a-timestamp"), "does not parse as a timestamp"),
    ),
}


@dataclass(frozen=True)
class Carried:
    """A line rendered on an earlier day, waiting for the day it is delivered on."""

    line: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Redelivery:
    """A file to send again (its lines without injected defects) on day `day`."""

    source: str
    day: int
    original: str
    skip: frozenset[int]


class Landing:
    """Writes files under the landing root and keeps the books: counts, defects, pending work."""

    def __init__(self, root: Path, spec: GeneratorSpec, dates: list[str], max_lines: int) -> None:
        self.root = root
        self.spec = spec
        self.dates = dates
        self.max_lines = max_lines
        self.last = spec.days - 1
        self.files = dict.fromkeys(SOURCES, 0)
        self.records = dict.fromkeys(SOURCES, 0)
        self.defects: list[InjectedDefect] = []
        self.carry: dict[str, dict[int, list[Carried]]] = {s: {} for s in SOURCES}
        self.redeliveries: list[Redelivery] = []
        self.seq: dict[tuple[str, int], int] = {}
        self.bad_counter = dict.fromkeys(SOURCES, 0)
        sw = spec.defects
        plan = rng_for(spec.seed, TAG_PLAN)
        # Not the products snapshot: an empty file there could read as "every product dropped".
        empty_candidates = [s for s in SOURCES if s != "products"]
        empty_source = empty_candidates[int(plan.integers(0, len(empty_candidates)))]
        empty_day = int(plan.integers(0, spec.days))
        missing_day = int(plan.integers(0, spec.days))
        self.empty_at = (empty_source, empty_day) if sw.empty_file else None
        self.missing_column_day = missing_day if sw.missing_column else None
        self.bom_at = ("products", min(1, self.last)) if sw.bom else None
        self.drift_from = min(self.last, max(1, spec.days // 2)) if sw.schema_drift else None

    # -- one source, one day -------------------------------------------------------------------

    def deliver(self, rec: DayRecords) -> None:
        """Write the day's files of `rec.source`: records carried in from earlier days first, then
        the day's own records in order with the defects placed; then re-deliveries due that day
        and the empty file when this is its day (a missing-column file goes first)."""
        src, day, n = rec.source, rec.day, rec.n
        rng = rng_for(self.spec.seed, TAG_LINES, SOURCES.index(src), day)
        kind = self._choose(rec, rng)
        idx_all = np.arange(n, dtype=np.int64)
        late = kind == LATE
        late_day = np.minimum(day + rng.integers(1, 3, n), self.last)
        dup = kind == DUP
        dup_day = np.minimum(day + rng.choice(3, n, p=[0.5, 0.3, 0.2]), self.last)
        dup_after = idx_all + (rng.random(n) * (n - idx_all)).astype(np.int64)
        ooo = kind == OOO
        ooo_later = ooo & (rng.random(n) < 0.5) & (day < self.last)
        ooo_same = ooo & ~ooo_later

        # The day's own entries, ordered by key: a record i sits at 2i; a record moved or copied
        # to right after record j sits at 2j + 1.
        stay = np.flatnonzero(~late & ~ooo_later)
        keys = 2 * stay
        moved = ooo_same[stay]
        if moved.any():
            assert rec.successor is not None
            keys[moved] = 2 * rec.successor[stay[moved]] + 1
        copies = np.flatnonzero(dup & (dup_day == day))
        entry_idx = np.concatenate([stay, copies])
        entry_role = np.concatenate(
            [np.where(moved, ROLE_MOVED, ROLE_NORMAL), np.full(len(copies), ROLE_COPY)]
        ).astype(np.int8)
        order = np.argsort(np.concatenate([keys, 2 * dup_after[copies] + 1]), kind="stable")
        entry_idx, entry_role = entry_idx[order], entry_role[order]

        # Records delivered on later days are rendered now, for the header of their day.
        for mask, when, k in (
            (late, late_day, LATE),
            (dup & (dup_day > day), dup_day, DUP),
            (ooo_later, np.full(n, day + 1), OOO),
        ):
            idx = np.flatnonzero(mask)
            for target in np.unique(when[idx]).tolist():
                sub = idx[when[idx] == target]
                for i, line in zip(sub.tolist(), rec.render(sub, target), strict=True):
                    self.carry[src].setdefault(target, []).append(
                        Carried(line, KIND_NAMES[k], self._detail(rec, k, i, target))
                    )

        if src == "fx_rates" and self.missing_column_day == day and rec.n:
            self._write_missing_column(rec)
        carried = self.carry[src].pop(day, [])
        self._write_entries(rec, rng, kind, carried, entry_idx, entry_role)
        self._redeliver_due(src, day)
        if self.empty_at == (src, day):
            self._write_file(src, day, None, [], [], regular=False, empty=True)

    def _choose(self, rec: DayRecords, rng: np.random.Generator) -> np.ndarray:
        """Which line-level defect (or NONE) each record gets."""
        n = rec.n
        kind = np.zeros(n, np.int8)
        sw = self.spec.defects
        if rec.source not in LINE_DEFECT_SOURCES or n == 0:
            return kind
        has_succ = rec.successor if rec.successor is not None else np.full(n, -1, np.int64)
        rates = {
            LATE: sw.late_events,
            DUP: sw.duplicate_events,
            OOO: sw.out_of_order_events if rec.successor is not None else 0.0,
            MALFORMED: sw.malformed_lines,
            BAD: sw.bad_values,
        }
        edges = np.cumsum([rates[k] for k in (LATE, DUP, OOO, MALFORMED, BAD)])
        pick = np.searchsorted(edges, rng.random(n), side="right") + 1
        pick[pick > BAD] = NONE
        free = np.ones(n, bool)
        free[list(rec.tags)] = False
        can_be_bad = rec.can_be_bad if rec.can_be_bad is not None else np.zeros(n, bool)
        eligible = {
            LATE: np.full(n, rec.day < self.last),
            DUP: np.ones(n, bool),
            OOO: has_succ >= 0,
            MALFORMED: np.ones(n, bool),
            BAD: can_be_bad,
        }
        for k, ok in eligible.items():
            kind[(pick == k) & ok & free] = k
        if rec.day == 0:
            for k in FORCED.get(rec.source, ()):
                cand = eligible[k] & free & (kind == NONE)
                if k == OOO:
                    cand &= kind[np.maximum(has_succ, 0)] == NONE
                    # An older version delivered after a delete: one such case at least.
                    after_delete = np.isin(has_succ, list(rec.tags))
                    if rates[k] > 0 and not (after_delete & (kind == OOO)).any():
                        options = np.flatnonzero(cand & after_delete)
                        if len(options):
                            kind[options[int(rng.integers(0, len(options)))]] = k
                if rates[k] <= 0 or (kind == k).any():
                    continue
                options = np.flatnonzero(cand)
                if len(options):
                    kind[options[int(rng.integers(0, len(options)))]] = k
        # An out-of-order record's newer version must itself be delivered in place.
        ooo = kind == OOO
        if ooo.any():
            succ_kind = kind[np.maximum(has_succ, 0)]
            kind[ooo & ~np.isin(succ_kind, [NONE, DUP])] = NONE
        return kind

    def _detail(self, rec: DayRecords, k: int, i: int, target: int) -> str:
        if k == LATE:
            return (
                f"{rec.ident(i)}: event of {self.dates[rec.day]} delivered on {self.dates[target]}"
            )
        if k == DUP:
            return f"{rec.ident(i)}: the same event delivered again"
        assert rec.lsn is not None and rec.successor is not None
        newer = rec.lsn[rec.successor[i]]
        return f"{rec.ident(i)}: older version delivered after the newer lsn={newer}"

    def _write_entries(
        self,
        rec: DayRecords,
        rng: np.random.Generator,
        kind: np.ndarray,
        carried: list[Carried],
        entry_idx: np.ndarray,
        entry_role: np.ndarray,
    ) -> None:
        src, day = rec.source, rec.day
        header = rec.header(day) if rec.header is not None else None
        first_line = 2 if header is not None else 1
        total = len(carried) + len(entry_idx)
        tagged = np.zeros(rec.n, bool)
        tagged[list(rec.tags)] = True
        for start in range(0, total, self.max_lines):
            stop = min(total, start + self.max_lines)
            lines: list[str] = []
            defects: list[tuple[int, str, str]] = []
            for c in carried[start:stop]:
                defects.append((len(lines) + first_line, c.kind, c.detail))
                lines.append(c.line)
            a, b = max(0, start - len(carried)), max(0, stop - len(carried))
            idx, role = entry_idx[a:b], entry_role[a:b]
            offset = len(lines)
            lines.extend(rec.render(idx, day))
            k = kind[idx]
            special = (role != ROLE_NORMAL) | (k == MALFORMED) | (k == BAD) | tagged[idx]
            for p in np.flatnonzero(special).tolist():
                i, line_no = int(idx[p]), offset + p + first_line
                if role[p] == ROLE_COPY:
                    defects.append((line_no, "duplicate_event", self._detail(rec, DUP, i, day)))
                elif role[p] == ROLE_MOVED:
                    defects.append((line_no, "out_of_order_event", self._detail(rec, OOO, i, day)))
                elif k[p] == MALFORMED:
                    lines[offset + p], detail = _malform(lines[offset + p], rng, header)
                    defects.append((line_no, "malformed_line", detail))
                elif k[p] == BAD:
                    lines[offset + p], detail = self._bad(src, lines[offset + p], header)
                    defects.append((line_no, "bad_value", detail))
                else:
                    defects.append((line_no, "delete", rec.tags[i]))
            self._write_file(src, day, header, lines, defects)

    def _bad(self, src: str, line: str, header: str | None) -> tuple[str, str]:
        variants = BAD_VALUES[src]
        name, make, problem = variants[self.bad_counter[src] % len(variants)]
        self.bad_counter[src] += 1
        if header is not None:
            fields = next(csv.reader([line]))
            pos = header.split(",").index(name)
            new = make(fields[pos])
            fields[pos] = new
            text = csv_lines([fields])[0]
        else:
            obj = json.loads(line)
            row = obj["after"] if src in CDC_SOURCES else obj
            new = make(row[name])
            row[name] = new
            text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        detail = f"{name} {problem}" if new is None else f"{name}={new!r} {problem}"
        return text, detail

    # -- files ---------------------------------------------------------------------------------

    def _write_file(
        self,
        src: str,
        day: int,
        header: str | None,
        lines: list[str],
        line_defects: list[tuple[int, str, str]],
        *,
        regular: bool = True,
        empty: bool = False,
        file_defects: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Write one file; `regular` files may be gzipped, get a BOM or be re-delivered later."""
        sw = self.spec.defects
        seq = self.seq.get((src, day), 0) + 1
        self.seq[(src, day)] = seq
        rng = rng_for(self.spec.seed, TAG_FILES, SOURCES.index(src), day, seq)
        is_csv = src in CSV_SOURCES
        gz = (
            regular
            and sw.gzip
            and (
                (src == "clickstream" and day == 0 and seq == 1)
                or (src == "payments" and day == self.last and seq == 1)
                or rng.random() < 0.1
            )
        )
        bom = (
            regular
            and is_csv
            and sw.bom
            and (
                (self.bom_at == (src, day) and seq == 1)
                or (src != "products" and rng.random() < 0.05)
            )
        )
        date = self.dates[day]
        name = f"{src}-{date.replace('-', '')}-{seq:04d}.{'csv' if is_csv else 'jsonl'}"
        name += ".gz" if gz else ""
        relative = f"{src}/ingest_date={date}/{name}"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if empty:
            data = b""
        else:
            body = [header, *lines] if header is not None else lines
            data = ("\ufeff" if bom else "").encode() + ("\n".join(body) + "\n").encode("utf-8")
        if gz:
            buf = io.BytesIO()
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6
            ) as zipped:
                zipped.write(data)
            data = buf.getvalue()
        path.write_bytes(data)
        self.files[src] += 1
        self.records[src] += len(lines)

        kinds = list(file_defects)
        if empty:
            kinds.append(("empty_file", EMPTY_DETAIL))
        if gz:
            kinds.append(("gzip", GZIP_DETAIL))
        if bom:
            kinds.append(("bom", BOM_DETAIL))
        if header is not None and DRIFT_COLUMN in header.split(","):
            kinds.append(("schema_drift", DRIFT_DETAIL))
        for kind, detail in kinds:
            self.defects.append(InjectedDefect(kind, src, relative, None, detail))
        for line_no, kind, detail in line_defects:
            self.defects.append(InjectedDefect(kind, src, relative, line_no, detail))

        if regular and lines and sw.redelivered_files > 0:
            forced = src == "orders" and day == 0 and seq == 1
            if forced or rng.random() < sw.redelivered_files:
                later = (
                    0
                    if src in ("products", "fx_rates")
                    else int(rng.choice(3, p=[0.4, 0.35, 0.25]))
                )
                skip = frozenset(line_no for line_no, _, _ in line_defects)
                self.redeliveries.append(
                    Redelivery(src, min(day + later, self.last), relative, skip)
                )
        return relative

    def _redeliver_due(self, src: str, day: int) -> None:
        due = [r for r in self.redeliveries if r.source == src and r.day == day]
        self.redeliveries = [r for r in self.redeliveries if r not in due]
        for r in due:
            text_lines = read_text(self.root / r.original).split("\n")[:-1]
            header = text_lines[0] if src in CSV_SOURCES else None
            first = 2 if header is not None else 1
            data = text_lines[first - 1 :]
            keep = [line for no, line in enumerate(data, start=first) if no not in r.skip]
            if not keep:
                continue
            detail = (
                f"re-delivery of {r.original}: its {len(keep)} records without injected defects"
            )
            self._write_file(
                src,
                day,
                header,
                keep,
                [],
                regular=False,
                file_defects=(("redelivered_file", detail),),
            )

    def _write_missing_column(self, rec: DayRecords) -> None:
        assert rec.header is not None
        header = rec.header(rec.day).split(",")
        drop = header.index(MISSING_COLUMN)
        rows = [next(csv.reader([line])) for line in rec.render(np.arange(rec.n), rec.day)]
        kept = csv_lines([[f for j, f in enumerate(row) if j != drop] for row in rows])
        self._write_file(
            rec.source,
            rec.day,
            ",".join(h for j, h in enumerate(header) if j != drop),
            kept,
            [],
            regular=False,
            file_defects=(("missing_column", MISSING_DETAIL),),
        )

    # -- the books -----------------------------------------------------------------------------

    def summary(self, fx_missing: list[FxNote], fx_corrections: list[FxNote]) -> GenerationSummary:
        """Counts and defects of everything written so far."""
        order = {s: i for i, s in enumerate(SOURCES)}
        defects = sorted(
            self.defects, key=lambda d: (order[d.source], d.file, d.line or 0, d.kind, d.detail)
        )
        return GenerationSummary(
            landing_root=str(self.root),
            files=dict(self.files),
            records=dict(self.records),
            defects=tuple(defects),
            fx_missing=tuple(fx_missing),
            fx_corrections=tuple(fx_corrections),
        )


def _malform(line: str, rng: np.random.Generator, header: str | None) -> tuple[str, str]:
    """A truncated JSON text, or the CSV row with its last field dropped or one field added."""
    if header is None:
        cut = int(rng.integers(max(1, len(line) // 4), max(2, 3 * len(line) // 4)))
        return line[:cut], MALFORMED_JSON
    fields = next(csv.reader([line]))
    fields = fields[:-1] if rng.random() < 0.5 else [*fields, "EXTRA"]
    return csv_lines([fields])[0], MALFORMED_CSV
