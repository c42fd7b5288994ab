"""Which columns hold personal data, derived from the table specs (`pii` in conf/tables/*.yaml).

One answer for every writer and operation that must know: Delta keeps no per-file statistics of
these columns (the transaction log would keep their min/max values after an erasure and VACUUM),
maintenance refuses to Z-order by them, erasure rewrites them.

- Every table: the hash of each hashed personal field of any source (`email` -> `email_hash`),
  wherever silver or gold carries it.
- bronze: the landed record as delivered (`raw`, and `fields` of a CSV record), which holds the
  personal fields before they are hashed or dropped.
- quarantine: the record text and the reason, which may quote a personal value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lakehouse.core.specs import TableSpec

# The record columns of a layer that hold a record as delivered, personal fields included.
RECORD_COLUMNS: dict[str, tuple[str, ...]] = {
    "bronze": ("raw", "fields"),
    "quarantine": ("raw", "reason"),
}


def hashed_column(field: str) -> str:
    """The column silver (and gold after it) holds a hashed personal field in: `<field>_hash`."""
    return f"{field}_hash"


@dataclass(frozen=True)
class HashedIdentity:
    """A hashed personal field as silver and gold carry it: `column` (`email_hash`) holds the hash
    of `field` (`email`) of the person named by the `subject` column (`customer_id`);
    `required` when the source promises the field."""

    column: str
    field: str
    subject: str | None
    required: bool


def hashed_identities(tables: Mapping[str, TableSpec]) -> dict[str, HashedIdentity]:
    """`<field>_hash` -> its `HashedIdentity`, over every source table spec."""
    return {
        hashed_column(f): HashedIdentity(
            hashed_column(f), f, spec.pii.subject, spec.column(f).required
        )
        for spec in tables.values()
        for f in spec.pii.hash
    }


def personal_sources(tables: Mapping[str, TableSpec]) -> dict[str, TableSpec]:
    """The source tables whose records hold personal fields (hashed or dropped), by name."""
    return {name: spec for name, spec in tables.items() if spec.pii.fields}


def personal_columns(tables: Mapping[str, TableSpec], layer: str) -> frozenset[str]:
    """Columns a table of `layer` (`bronze`, `silver`, `gold`, `quarantine`, ...) may hold personal
    data in: the layer's record columns (`RECORD_COLUMNS`) and the hash of every hashed personal
    field of `tables`. A name the table lacks is harmless (`stats_columns_property` ignores it)."""
    return frozenset({*RECORD_COLUMNS.get(layer, ()), *hashed_identities(tables)})
