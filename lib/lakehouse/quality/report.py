"""The quality report of a run (docs/REPORTS.md): one self-contained HTML page and its JSON twin,
from `quality.results`, the suites, the metrics history, the run ledger and the quarantine.

What a reader needs first comes first: the verdict (published or blocked, by which checks), a
summary per table, then each failed check in words with its measured value against what it
requires, a few failing rows (personal data masked, `core.pii.mask_record`) and the metric's
history as a small chart with the band an anomaly check allows. Passed checks are folded. Then
the run's conservation ledger and its quarantine by source and reason, with masked samples.

`build_report` gathers the document (Spark reads, then plain data); `render_report` is pure.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core import pii
from lakehouse.core.context import Lakehouse
from lakehouse.core.pages import render, script_json
from lakehouse.quality.runner import RESULTS_TABLE
from lakehouse.quality.suites import (
    AllowedSpec,
    AnomalySpec,
    CheckSpec,
    CompletenessSpec,
    DayAnomalySpec,
    EqualsAggregateSpec,
    ExistsInSpec,
    NonNegativeSpec,
    RangeSpec,
    ReconcilesSpec,
    SizeSpec,
    SqlSpec,
    Suite,
    UniquenessSpec,
    load_suite,
    suite_path,
)
from lakehouse.state import reports
from lakehouse.state.ledger import LEDGER_TABLE, OUTCOMES
from lakehouse.state.quarantine import QUARANTINE_TABLE

TREND_RUNS = 10
SEVERITIES = ("error", "warning")
LAYER_ORDER = ("bronze", "silver", "gold")
# Quarantine: samples shown per source and reason, and characters of each.
QUARANTINE_SAMPLES = 3
SAMPLE_CHARS = 300


def write_report(
    spark: SparkSession, lh: Lakehouse, run_id: str, latest: bool = True, gated: bool = True
) -> tuple[str, str]:
    """Write the report of run `run_id` under the reports root, local or S3
    (`lakehouse.state.reports`: `runs/<run_id>/quality.html` and `quality.json`, and the same in
    `latest/` unless `latest` is false). `gated`: the run's error checks hold publishing back
    (a `lakehouse maintain` scan's do not). Returns the run's (html, json) locations."""
    doc = build_report(spark, lh, run_id, gated)
    json_location = reports.publish(
        lh.config,
        run_id,
        "quality.json",
        # Strict JSON (no NaN or Infinity), which every reader parses.
        json.dumps(doc, indent=2, default=str, allow_nan=False),
        latest,
    )
    return reports.publish(
        lh.config, run_id, "quality.html", render_report(doc), latest
    ), json_location


def build_report(
    spark: SparkSession, lh: Lakehouse, run_id: str, gated: bool = True
) -> dict[str, Any]:
    """The report's document: what the page shows, as plain data (the JSON twin). A
    maintenance scan (`maintain-...`) is never gated, whatever `gated` says."""
    from lakehouse.ops.time_travel import MAINTENANCE_PREFIX

    gated = gated and not run_id.startswith(MAINTENANCE_PREFIX)
    path = lh.path(RESULTS_TABLE)
    results = spark.read.format("delta").load(path)
    current = [r.asDict() for r in results.where(F.col("run_id") == run_id).collect()]
    if not current:
        raise ValueError(f"no quality results for run {run_id!r} in {path}")
    run_ts = max(r["run_ts"] for r in current)
    trends = _trends(results, run_ts)
    specs = _specs(lh, {f"{r['layer']}.{r['table']}" for r in current})
    fields = pii.personal_fields(lh.tables)
    checks = [
        _check(r, specs.get(f"{r['layer']}.{r['table']}/{r['check']}"), fields, trends)
        for r in sorted(current, key=_order)
    ]
    return {
        "run_id": run_id,
        "run_ts": run_ts.isoformat(),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "verdict": _verdict(checks, gated),
        "summary": {
            sev: {
                status: sum(1 for c in checks if c["severity"] == sev and c["status"] == status)
                for status in ("passed", "failed")
            }
            for sev in SEVERITIES
        },
        "tables": _tables(checks),
        "checks": checks,
        "trends": trends,
        "ledger": _ledger(spark, lh, run_id),
        "quarantine": _quarantine(spark, lh, run_id, fields),
    }


def _order(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        r["status"] != "failed",
        SEVERITIES.index(r["severity"]),
        LAYER_ORDER.index(r["layer"]) if r["layer"] in LAYER_ORDER else 9,
        r["table"],
        r["check"],
    )


def _trends(results: Any, run_ts: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    """Each check's metric over the last `TREND_RUNS` runs up to this one, oldest first."""
    recent = (
        results.where(F.col("run_ts") <= F.lit(run_ts))
        .groupBy("run_id")
        .agg(F.max("run_ts").alias("run_ts"))
        .orderBy(F.col("run_ts").desc())
        .limit(TREND_RUNS)
    )
    history = (
        results.join(recent.select("run_id"), "run_id")
        .select("run_id", "run_ts", "layer", "table", "check", "metric", "value")
        .orderBy("run_ts")
        .collect()
    )
    trends: dict[str, list[dict[str, Any]]] = {}
    for h in history:
        trends.setdefault(f"{h['layer']}.{h['table']}/{h['check']}", []).append(
            {"run_id": h["run_id"], "run_ts": h["run_ts"].isoformat(), "value": _finite(h["value"])}
        )
    return trends


def _specs(lh: Lakehouse, tables: set[str]) -> dict[str, CheckSpec]:
    """The checks of the suites as configured now, by `layer.table/check` (a suite file gone
    since the run leaves its checks described by their results alone)."""
    out: dict[str, CheckSpec] = {}
    for name in tables:
        path = suite_path(name, lh.config.conf_dir)
        if not path.is_file():
            continue
        suite: Suite = load_suite(path, lh.tables)
        for check in suite.checks:
            out[f"{name}/{check.name}"] = check
    return out


def _check(
    r: Mapping[str, Any],
    spec: CheckSpec | None,
    fields: frozenset[str],
    trends: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    table = f"{r['layer']}.{r['table']}"
    key = f"{table}/{r['check']}"
    details = json.loads(r["details"]) if r.get("details") else None
    return {
        "id": key,
        "table": table,
        "layer": r["layer"],
        "check": r["check"],
        "kind": r["kind"],
        "severity": r["severity"],
        "status": r["status"],
        "meaning": meaning(spec) if spec is not None else None,
        "requires": requires(spec) if spec is not None else None,
        "measured": _measured(r["kind"], r["value"]),
        "message": pii.mask_text(r["message"]) if r["message"] else None,
        "metric": r["metric"],
        "value": _finite(r["value"]),
        "examples": [
            pii.mask_value("example", json.loads(e), fields) for e in (r["examples"] or [])
        ],
        # A day check's groups are values of its `group_by` column: shown through the mask too.
        "days": None if details is None else [pii.mask_record(d, fields) for d in details],
        "band": _band(spec, trends.get(key, [])),
    }


def meaning(check: CheckSpec) -> str:
    """What a check asks of the data, in words (its `description` when the suite gives one)."""
    if check.description:
        return check.description
    s = check.spec
    if isinstance(s, SizeSpec):
        bounds = [
            f"at least {s.min}" if s.min is not None else "",
            f"at most {s.max}" if s.max is not None else "",
        ]
        return f"The table holds {' and '.join(b for b in bounds if b)} rows."
    if isinstance(s, CompletenessSpec):
        return (
            f"Column {s.column} is filled in every row."
            if s.threshold >= 1
            else (f"Column {s.column} is filled in most rows.")
        )
    if isinstance(s, UniquenessSpec):
        return f"No two rows share the same {', '.join(s.columns)}."
    if isinstance(s, AllowedSpec):
        return f"Column {s.column} holds only {', '.join(s.values or ())} (or nothing)."
    if isinstance(s, RangeSpec):
        lo = "" if s.min is None else f"at least {s.min:g}"
        hi = "" if s.max is None else f"at most {s.max:g}"
        return f"Column {s.column} is {' and '.join(b for b in (lo, hi) if b)}."
    if isinstance(s, NonNegativeSpec):
        return f"Column {s.column} is never negative."
    if isinstance(s, SqlSpec):
        return f"Every row satisfies {s.expression}."
    if isinstance(s, AnomalySpec):
        what = "The row count" if s.metric == "size" else f"The completeness of {s.column}"
        rates = _rates(s.max_rate_decrease, s.max_rate_increase)
        return f"{what} moves within {rates} of the previous run's."
    if isinstance(s, ExistsInSpec):
        return f"Every {s.column} exists in {s.table}."
    if isinstance(s, ReconcilesSpec):
        right = s.right.table or "this table"
        return (
            f"Per {s.key}, the sum of {s.left.value} equals the sum of {s.right.value} in "
            f"{right} within {s.tolerance:g}."
        )
    if isinstance(s, EqualsAggregateSpec):
        source = s.source.table or "this table"
        where = f" where {s.source.where}" if s.source.where else ""
        return (
            f"Per {s.key}, {s.column} equals the sum of {s.source.value} in {source}{where}, "
            f"rounded half-up to {s.decimals} decimals."
        )
    if isinstance(s, DayAnomalySpec):
        per = f" per {s.group_by}" if s.group_by else ""
        return (
            f"Each day's {s.value}{per} stays within "
            f"{_rates(s.max_decrease, s.max_increase)} of the median of the {s.history_days} "
            f"days before it{f' (± {s.slack:g})' if s.slack else ''}."
        )
    return check.kind


def requires(check: CheckSpec) -> str:
    """The constraint's bound on the check's metric, as the page shows it."""
    s = check.spec
    if isinstance(s, SizeSpec):
        return "rows " + " and ".join(
            b
            for b in (
                f"≥ {s.min}" if s.min is not None else "",
                f"≤ {s.max}" if s.max is not None else "",
            )
            if b
        )
    if isinstance(s, AnomalySpec):
        return f"change within {_rates(s.max_rate_decrease, s.max_rate_increase)}"
    if isinstance(s, DayAnomalySpec):
        return "every judged day within its band"
    threshold = getattr(s, "threshold", 1.0)
    return (
        f"≥ {_percent(threshold)} of rows"
        if check.kind not in ("reconciles", "equals_aggregate")
        else (f"≥ {_percent(threshold)} of keys")
    )


def _rates(decrease: float | None, increase: float | None) -> str:
    parts = []
    if decrease is not None:
        parts.append(f"-{_percent(decrease)}")
    if increase is not None:
        parts.append(f"+{_percent(increase)}")
    return " / ".join(parts)


def _percent(x: float) -> str:
    return f"{x * 100:.4g}%"


def _measured(kind: str, value: float | None) -> str | None:
    if value is None:
        return None
    if kind in ("size", "anomaly"):
        return f"{value:,.6g}"
    return _percent(value)


def _band(spec: CheckSpec | None, points: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """For a Deequ rate-of-change anomaly check: the range each run's metric was allowed, from
    the run before it (what the check compared against)."""
    if spec is None or not isinstance(spec.spec, AnomalySpec):
        return None
    s = spec.spec
    band = []
    for before, point in itertools.pairwise(points):
        if before["value"] is None:
            continue
        v = before["value"]
        band.append(
            {
                "run_id": point["run_id"],
                "low": None if s.max_rate_decrease is None else v * (1 - s.max_rate_decrease),
                "high": None if s.max_rate_increase is None else v * (1 + s.max_rate_increase),
            }
        )
    return band


def _verdict(checks: list[dict[str, Any]], gated: bool) -> dict[str, Any]:
    errors = [c["id"] for c in checks if c["status"] == "failed" and c["severity"] == "error"]
    warnings = [c["id"] for c in checks if c["status"] == "failed" and c["severity"] == "warning"]
    layers = {c["layer"] for c in checks}
    if errors and gated:
        status = "blocked"
        line = f"Blocked: {len(errors)} error check(s) failed, nothing of this run was published"
    elif errors:
        status = "errors"
        line = f"{len(errors)} error check(s) failed (a full scan: nothing is held back by it)"
    elif not gated:
        status = "passed"
        line = "Full scan: every error check passed"
    elif "gold" in layers:
        status = "published"
        line = "Published: every error check passed"
    else:
        status = "passed"
        line = "Passed: every error check passed (gold is checked by its own step)"
    if warnings:
        line += f"; {len(warnings)} warning(s)"
    return {"status": status, "line": line, "blocked_by": errors, "warnings": warnings}


def _tables(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for c in checks:
        t = by.setdefault(
            c["table"],
            {
                "table": c["table"],
                "layer": c["layer"],
                "checks": 0,
                "passed": 0,
                "errors": 0,
                "warnings": 0,
            },
        )
        t["checks"] += 1
        if c["status"] == "passed":
            t["passed"] += 1
        else:
            t["errors" if c["severity"] == "error" else "warnings"] += 1
    return sorted(
        by.values(),
        key=lambda t: (
            -t["errors"],
            -t["warnings"],
            LAYER_ORDER.index(t["layer"]) if t["layer"] in LAYER_ORDER else 9,
            t["table"],
        ),
    )


def _ledger(spark: SparkSession, lh: Lakehouse, run_id: str) -> list[dict[str, Any]]:
    """The run's ledger rows: per step and table, read = the sum of its outcomes."""
    path = lh.path(LEDGER_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return []
    rows = spark.read.format("delta").load(path).where(F.col("run_id") == run_id).collect()
    out = []
    for r in sorted(
        rows,
        key=lambda r: (
            LAYER_ORDER.index(r["layer"]) if r["layer"] in LAYER_ORDER else 9,
            r["table_name"],
        ),
    ):
        outcomes = {name: r[name] for name in OUTCOMES if r[name] is not None}
        out.append(
            {
                "layer": r["layer"],
                "table": r["table_name"],
                "read": r["records_read"],
                "outcomes": outcomes,
                "balanced": r["records_read"] == sum(outcomes.values()),
            }
        )
    return out


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def reason_kind(reason: str) -> str:
    """A quarantine reason with its particulars (quoted values, numbers) left out, so records
    quarantined for the same rule group together."""
    return _NUMBER.sub("N", re.sub(r"'[^']*'", "'…'", reason))


def _quarantine(
    spark: SparkSession, lh: Lakehouse, run_id: str, fields: frozenset[str]
) -> list[dict[str, Any]]:
    """The run's quarantined records by layer, source and reason, with a few masked samples."""
    path = lh.path(QUARANTINE_TABLE)
    if not DeltaTable.isDeltaTable(spark, path):
        return []
    rows = (
        spark.read.format("delta")
        .load(path)
        .where(F.col("run_id") == run_id)
        .select("layer", "source", "column_name", "reason", "file", "line", "raw")
        .collect()
    )
    personal = set(pii.personal_sources(lh.tables))
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (r["layer"], r["source"], r["file"] or "", r["line"] or 0)):
        source_personal = r["source"] in personal
        kind = pii.mask_text(reason_kind(r["reason"]), quoted=source_personal)
        g = groups.setdefault(
            (r["layer"], r["source"], kind),
            {"layer": r["layer"], "source": r["source"], "reason": kind, "count": 0, "samples": []},
        )
        g["count"] += 1
        if len(g["samples"]) < QUARANTINE_SAMPLES:
            raw = pii.mask_raw(r["raw"], fields, source_personal)
            g["samples"].append(
                {
                    "file": r["file"],
                    "line": r["line"],
                    "reason": pii.mask_text(r["reason"], quoted=source_personal),
                    "record": None if raw is None else raw[:SAMPLE_CHARS],
                }
            )
    return sorted(
        groups.values(), key=lambda g: (-g["count"], g["layer"], g["source"], g["reason"])
    )


# --- the page ---------------------------------------------------------------------------------


def render_report(doc: Mapping[str, Any]) -> str:
    """The HTML page of a report document (`build_report`)."""
    charts = {}
    for c in doc["checks"]:
        figure = _figure(c, doc["trends"].get(c["id"], []))
        if figure is not None:
            charts[c["id"]] = figure
    failing = [c for c in doc["checks"] if c["status"] == "failed"]
    passed: dict[str, list[dict[str, Any]]] = {}
    for c in doc["checks"]:
        if c["status"] == "passed":
            passed.setdefault(c["table"], []).append(c)
    return render(
        "quality.html.j2",
        doc=doc,
        failing=failing,
        passed=passed,
        charts=set(charts),
        charts_json=script_json(charts),
        example_columns=_example_columns,
        number=_plain,
    )


# Bookkeeping columns of silver rows a failing row is shown without (the JSON twin keeps them).
_SHOWN_BOOKKEEPING = ("_source_file",)


def _example_columns(examples: list[Any]) -> list[str]:
    columns: list[str] = []
    for e in examples:
        if isinstance(e, dict):
            columns.extend(
                k
                for k in e
                if k not in columns and (not k.startswith("_") or k in _SHOWN_BOOKKEEPING)
            )
    return columns


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_LINE = "#4f46e5"
_BAND = "rgba(79,70,229,.15)"
_BAD = "#dc2626"


def _figure(check: Mapping[str, Any], trend: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A small plotly figure: a day check's days with their band, or the metric over runs."""
    if check["days"]:
        return _days_figure(check["days"])
    points = [p for p in trend if p["value"] is not None]
    if not points:
        return None
    x = [p["run_ts"][:16].replace("T", " ") for p in points]
    data: list[dict[str, Any]] = []
    band = {b["run_id"]: b for b in (check["band"] or [])}
    if band:
        lows = [band.get(p["run_id"], {}).get("low") for p in points]
        highs = [band.get(p["run_id"], {}).get("high") for p in points]
        data += _band_traces(x, lows, highs)
    data.append(
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": x,
            "y": [p["value"] for p in points],
            "name": check["metric"] or "value",
            "line": {"color": _LINE},
            "hovertemplate": "%{x}: %{y:.6g}<extra></extra>",
        }
    )
    values = [p["value"] for p in points]
    return {
        "data": data,
        "layout": _layout("run", values, check["kind"] not in ("size", "anomaly")),
    }


def _days_figure(days: list[dict[str, Any]]) -> dict[str, Any]:
    groups = sorted({d["group"] for d in days})
    data: list[dict[str, Any]] = []
    for group in groups:
        series = [d for d in days if d["group"] == group]
        x = [d["day"] for d in series]
        if len(groups) == 1:
            data += _band_traces(x, [d["low"] for d in series], [d["high"] for d in series])
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": x,
                "y": [d["value"] for d in series],
                "name": group or "value",
                "hovertemplate": "%{x}: %{y:,.6g}<extra>" + (group or "") + "</extra>",
                **({"line": {"color": _LINE}} if len(groups) == 1 else {}),
            }
        )
    flagged = [
        d
        for d in days
        if d["checked"]
        and d["median"] is not None
        and d["value"] is not None
        and not (_lo(d["low"]) <= d["value"] <= _hi(d["high"]))  # open sides are None
    ]
    if flagged:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "flagged",
                "x": [d["day"] for d in flagged],
                "y": [d["value"] for d in flagged],
                "marker": {"color": _BAD, "size": 11, "symbol": "x"},
                "hovertemplate": "%{x}: %{y:,.6g} flagged<extra></extra>",
            }
        )
    return {"data": data, "layout": _layout("day", [d["value"] for d in days], False)}


def _lo(x: float | None) -> float:
    return float("-inf") if x is None else x


def _hi(x: float | None) -> float:
    return float("inf") if x is None else x


def _finite(x: float | None) -> float | None:
    """`x`, or None for a value JSON cannot hold (NaN, an infinity: a metric of no rows)."""
    return None if x is None or not math.isfinite(x) else x


def _band_traces(x: list[Any], lows: list[Any], highs: list[Any]) -> list[dict[str, Any]]:
    lows = [_finite(v) for v in lows]
    highs = [_finite(v) for v in highs]
    if not any(v is not None for v in lows + highs):
        return []
    # An open side of the band is drawn at the series' edge: hidden under the line.
    return [
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": lows,
            "line": {"width": 0},
            "hoverinfo": "skip",
            "showlegend": False,
            "name": "low",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": highs,
            "line": {"width": 0},
            "fill": "tonexty",
            "fillcolor": _BAND,
            "hoverinfo": "skip",
            "name": "allowed",
        },
    ]


def _layout(axis: str, values: list[Any], percent: bool) -> dict[str, Any]:
    """A chart 170 px high; ticks as percentages for fractions, SI-abbreviated from 10,000
    (12k, 3.4M), plain below."""
    top = max((abs(v) for v in values if v is not None), default=0)
    tickformat = ".3~p" if percent else ("~s" if top >= 10_000 else ",.4~g")
    return {
        "height": 170,
        "margin": {"l": 56, "r": 12, "t": 8, "b": 36},
        "showlegend": False,
        "xaxis": {"type": "category" if axis == "run" else "date", "automargin": True, "nticks": 6},
        "yaxis": {"automargin": True, "tickformat": tickformat},
    }
