"""What a generation run wrote: file and record counts per source, and every injected defect."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

SOURCES: Final[tuple[str, ...]] = (
    "customers",
    "orders",
    "order_items",
    "products",
    "payments",
    "fx_rates",
    "clickstream",
)

CDC_SOURCES: Final[tuple[str, ...]] = ("customers", "orders", "order_items")
CSV_SOURCES: Final[tuple[str, ...]] = ("products", "payments", "fx_rates")

DEFECT_KINDS: Final[tuple[str, ...]] = (
    "redelivered_file",
    "duplicate_event",
    "out_of_order_event",
    "late_event",
    "delete",
    "malformed_line",
    "bad_value",
    "schema_drift",
    "bom",
    "empty_file",
    "gzip",
    "missing_column",
)

# Defects that concern a whole file: `InjectedDefect.line` is None for them.
FILE_DEFECT_KINDS: Final[tuple[str, ...]] = (
    "redelivered_file",
    "schema_drift",
    "bom",
    "empty_file",
    "gzip",
    "missing_column",
)


@dataclass(frozen=True, slots=True)
class InjectedDefect:
    """One defect the generator put into the landing zone on purpose.

    - `kind`: one of `DEFECT_KINDS`.
    - `source`: the source folder the file is in.
    - `file`: path relative to the landing root, `/`-separated, e.g.
      `orders/ingest_date=2024-01-02/orders-20240102-0001.jsonl`.
    - `line`: 1-based physical line number in the file's text after gunzip, the way a text editor
      counts: a CSV header is line 1, so a CSV file's first data row is line 2; a BOM does not
      count. None for a defect of the whole file (`FILE_DEFECT_KINDS`).
    - `detail`: what is wrong, readable by a person (see the generator's module docstring).
    """

    kind: str
    source: str
    file: str
    line: int | None
    detail: str

    def read_line(self, landing_root: str | Path) -> str:
        """The text of the defective line as written (gunzipped, BOM dropped, no line break)."""
        if self.line is None:
            raise ValueError(f"{self.kind} concerns the whole file {self.file}, not one line")
        return read_text(Path(landing_root) / self.file).split("\n")[self.line - 1]


@dataclass(frozen=True)
class FxNote:
    """A realistic FX delivery pattern (not a defect): a rate never delivered, or a correction."""

    rate_date: str
    currency: str
    ingest_date: str | None  # the delivery day of a correction; None for a rate never delivered
    rate_to_usd: str | None  # the corrected rate; None for a rate never delivered


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate_landing` wrote.

    `files[source]` and `records[source]` count every file (empty ones included) and every data
    line (CSV headers excluded; duplicates, malformed and bad lines included) of each source.
    `defects` lists every injected defect, sorted by source, file and line.
    `fx_missing` and `fx_corrections` note the FX rates that were never delivered and the
    corrections re-delivered later: contract-conforming patterns, not defects.
    """

    landing_root: str
    files: dict[str, int]
    records: dict[str, int]
    defects: tuple[InjectedDefect, ...]
    fx_missing: tuple[FxNote, ...] = field(default=())
    fx_corrections: tuple[FxNote, ...] = field(default=())

    def defects_of(self, kind: str) -> tuple[InjectedDefect, ...]:
        """The defects of one kind, in summary order."""
        if kind not in DEFECT_KINDS:
            raise ValueError(f"unknown defect kind {kind!r}; expected one of {DEFECT_KINDS}")
        return tuple(d for d in self.defects if d.kind == kind)


def read_text(path: Path) -> str:
    """A landed file's text: gunzipped when its name ends in `.gz`, UTF-8, leading BOM dropped."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    return text[1:] if text.startswith("\ufeff") else text
