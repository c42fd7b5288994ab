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

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


# What a page people read may show of a record (the quality report's failing rows and
# quarantine samples): never a personal value, a hash only by its first characters.
MASK = "•••"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")
_PHONE = re.compile(r"\+\d[\d ()./-]{6,}\d")
# A quoted value runs to the last quote before a separator or the end ('O'Brien' included).
_QUOTED = re.compile(r"'.*?'(?=[\s,;:.)\]}]|$)")


def personal_fields(tables: Mapping[str, TableSpec]) -> frozenset[str]:
    """Every personal field a source delivers (hashed or dropped): `email`, `phone`, `ip`..."""
    return frozenset(f for spec in tables.values() for f in spec.pii.fields)


def mask_text(text: str, quoted: bool = False) -> str:
    """`text` with anything shaped like an email address, a phone number or an IPv4 address
    masked, and with `quoted`, every '...' quoted value too (a reason quoting a bad value of a
    source with personal fields)."""
    text = _EMAIL.sub(MASK, text)
    text = _IPV4.sub(MASK, text)
    text = _PHONE.sub(MASK, text)
    return _QUOTED.sub(f"'{MASK}'", text) if quoted else text


def mask_value(key: str, value: Any, fields: frozenset[str]) -> Any:
    """One field of a record as a page may show it: a personal field masked whatever its type,
    a hash shortened to 8 characters, record text (`raw`, `fields`) and any other string scanned
    by `mask_text`; nested objects and lists field by field. Keys match case-insensitively."""
    if value is None:
        return None
    if key.lower() in fields:
        return MASK
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v, fields) for v in value]
    text = str(value)
    if key.lower().endswith("_hash") and len(text) > 8:
        return text[:8] + "…"
    return mask_text(text)


def mask_record(record: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """`mask_value` of every field of `record`."""
    return {str(k): mask_value(str(k), v, fields) for k, v in record.items()}


def mask_raw(raw: str | None, fields: frozenset[str], personal_source: bool) -> str | None:
    """A landed record's text as a page may show it. JSON is masked field by field; text that
    does not parse from a source with personal fields is not shown (a name cannot be told from
    other words); other text is shown scanned by `mask_text`."""
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return json.dumps(mask_record(parsed, fields), ensure_ascii=False)
    if personal_source:
        return f"[{len(raw)} characters not shown: a record of a source with personal data]"
    return mask_text(raw)
