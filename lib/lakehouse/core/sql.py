"""Spark SQL text built from Python values, for the predicates the engines write by hand (a gold
`replaceWhere`, a quality check's `IN` list)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any


def sql_literal(value: Any) -> str:
    """`value` as a Spark SQL literal: `NULL`, `true`/`false`, a number as written,
    `DATE'2024-01-31'`, `TIMESTAMP'2024-01-31 10:00:00'`, anything else a quoted string with
    backslashes and quotes escaped."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise ValueError(f"no SQL literal for the non-finite number {value!r}")
        # Decimal's `f` format never uses an exponent, which Spark would read as a double.
        return repr(value) if isinstance(value, float) else format(value, "f")
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"
