"""A readable report per quality run: one self-contained HTML page (no external JS/CSS, no
network) and a JSON twin, from the Delta table `quality.results`."""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core.context import Lakehouse
from lakehouse.quality.runner import RESULTS_TABLE
from lakehouse.state import reports

TREND_RUNS = 10
SEVERITIES = ("error", "warning")


def write_report(
    spark: SparkSession, lh: Lakehouse, run_id: str, latest: bool = True
) -> tuple[str, str]:
    """Write the report of run `run_id` under the reports root, local or S3
    (`lakehouse.state.reports`: `runs/<run_id>/quality.html` and `quality.json`, and the same in
    `latest/` unless `latest` is false): every check's status by severity, failing examples, and
    each check's metric over the last `TREND_RUNS` runs. Returns the run's (html, json)
    locations."""
    path = lh.path(RESULTS_TABLE)
    results = spark.read.format("delta").load(path)
    current = [r.asDict() for r in results.where(F.col("run_id") == run_id).collect()]
    if not current:
        raise ValueError(f"no quality results for run {run_id!r} in {path}")
    run_ts = max(r["run_ts"] for r in current)
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
            {"run_id": h["run_id"], "run_ts": h["run_ts"].isoformat(), "value": h["value"]}
        )
    checks = sorted(
        current,
        key=lambda r: (
            SEVERITIES.index(r["severity"]),
            r["status"] != "failed",
            r["layer"],
            r["table"],
            r["check"],
        ),
    )
    doc = {
        "run_id": run_id,
        "run_ts": run_ts.isoformat(),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "summary": {
            sev: {
                "passed": sum(
                    1 for r in current if r["severity"] == sev and r["status"] == "passed"
                ),
                "failed": sum(
                    1 for r in current if r["severity"] == sev and r["status"] == "failed"
                ),
            }
            for sev in SEVERITIES
        },
        "checks": [
            {
                "table": f"{r['layer']}.{r['table']}",
                "check": r["check"],
                "kind": r["kind"],
                "severity": r["severity"],
                "status": r["status"],
                "message": r["message"],
                "metric": r["metric"],
                "value": r["value"],
                "examples": [json.loads(e) for e in (r["examples"] or [])],
            }
            for r in checks
        ],
        "trends": trends,
    }
    json_location = reports.publish(
        lh.config, run_id, "quality.json", json.dumps(doc, indent=2, default=str), latest
    )
    return reports.publish(lh.config, run_id, "quality.html", _html(doc), latest), json_location


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _sparkline(points: list[dict[str, Any]], width: int = 220, height: int = 48) -> str:
    values = [p["value"] for p in points if p["value"] is not None]
    if not values:
        return "<span class='muted'>no metric</span>"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    pad = 6
    n = len(points)
    coords = []
    for i, p in enumerate(points):
        if p["value"] is None:
            continue
        x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
        level = (p["value"] - lo) / span if hi > lo else 0.5
        y = height - pad - (height - 2 * pad) * level
        coords.append((x, y, p))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
    dots = "".join(
        f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.5'><title>{_e(p['run_id'])}: "
        f"{_value(p['value'])}</title></circle>"
        for x, y, p in coords
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='trend'><polyline fill='none' stroke='#3366cc' "
        f"stroke-width='1.5' points='{line}'/>{dots}</svg>"
        f"<div class='muted'>min {_value(lo)} · max {_value(hi)} · {len(values)} run(s)</div>"
    )


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
th{background:#f3f3f3}
tr.failed td.status{background:#fdd;font-weight:bold}
tr.passed td.status{background:#dfd}
pre{margin:0;font-size:12px;white-space:pre-wrap;max-width:40em}
.muted{color:#777;font-size:12px}
circle{fill:#3366cc}
"""


def _html(doc: dict[str, Any]) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Quality report {_e(doc['run_id'])}</title><style>{CSS}</style></head><body>",
        f"<h1>Quality report — run {_e(doc['run_id'])}</h1>",
        f"<p class='muted'>run at {_e(doc['run_ts'])} UTC · "
        f"generated {_e(doc['generated_at'])}</p>",
    ]
    for sev in SEVERITIES:
        rows = [c for c in doc["checks"] if c["severity"] == sev]
        s = doc["summary"][sev]
        parts.append(
            f"<h2>{sev.capitalize()} checks: {s['failed']} failed, {s['passed']} passed</h2>"
        )
        if not rows:
            parts.append("<p class='muted'>none</p>")
            continue
        parts.append(
            "<table><thead><tr><th>table</th><th>check</th><th>kind</th><th>status</th>"
            "<th>metric</th><th>value</th><th>message</th><th>failing examples</th><th>trend</th>"
            "</tr></thead><tbody>"
        )
        for c in rows:
            examples = "".join(
                f"<pre>{_e(json.dumps(x, default=str))}</pre>" for x in c["examples"]
            )
            trend = _sparkline(doc["trends"].get(f"{c['table']}/{c['check']}", []))
            parts.append(
                f"<tr class='{_e(c['status'])}' id='{_e(c['table'])}/{_e(c['check'])}'>"
                f"<td>{_e(c['table'])}</td><td>{_e(c['check'])}</td><td>{_e(c['kind'])}</td>"
                f"<td class='status'>{_e(c['status'])}</td><td>{_e(c['metric'])}</td>"
                f"<td>{_value(c['value'])}</td><td>{_e(c['message'])}</td>"
                f"<td>{examples}</td><td>{trend}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)
