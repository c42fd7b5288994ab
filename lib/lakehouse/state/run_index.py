"""The index of runs: `<reports_root>/index.html`, one row per pipeline run (newest first) with
its date, verdict, failed error and warning checks, records landed and quarantined, duration, and
links to the run's reports that exist (`runs/<run>/dashboard.html`, `quality.html`) and to the
newest ones. Written after every run, published or blocked (`lakehouse.pipeline.run_pipeline`),
from the run ledger, `quality.results` and `gold._published`; docs/REPORTS.md.

The runs are those `run_pipeline` recorded in `<reports_root>/runs.json` (`RunRecord`: steps,
start, end, outcome; a run of gold alone too, such as the gold job of an Airflow run) and those
of the ledger from before that file existed. A run's verdict: `rolled back` when `lakehouse
rollback` undid it, `blocked` when an error check of the run failed (gold kept what it had),
`failed` when it stopped on another error, `published` when it published a gold set, otherwise
`nothing new` (no silver change for gold, or steps that publish nothing).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core import pages, progress
from lakehouse.core.config import join_uri
from lakehouse.core.context import Lakehouse
from lakehouse.gold.published import PUBLISHED_TABLE
from lakehouse.state import reports
from lakehouse.state.ledger import LEDGER_TABLE, STREAM_RUN_PREFIX, read_ledger

INDEX = "index.html"
RUNS = "runs.json"  # every run's RunRecord, at the top of the reports root
RESULTS_TABLE = "quality.results"  # lakehouse.quality.runner.RESULTS_TABLE (no import: no pydeequ)
REPORT_NAMES = ("dashboard.html", "quality.html")

Record = dict[str, Any]


@dataclass(frozen=True)
class RunRecord:
    """What `run_pipeline` knows of its run: which steps, when, and how it ended (`succeeded` or
    `failed`, with the error's type and message)."""

    run_id: str
    steps: tuple[str, ...]
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    error: str | None = None

    def to_json(self) -> Record:
        return {
            "run_id": self.run_id,
            "steps": list(self.steps),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "outcome": self.outcome,
            "error": self.error,
        }

    @staticmethod
    def from_json(doc: Record) -> RunRecord:
        return RunRecord(
            doc["run_id"],
            tuple(doc["steps"]),
            dt.datetime.fromisoformat(doc["started_at"]),
            dt.datetime.fromisoformat(doc["finished_at"]),
            doc["outcome"],
            doc.get("error"),
        )


@dataclass(frozen=True)
class RunSummary:
    """One run of the index."""

    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    records: int  # read by bronze (the landed records the run took in)
    quarantined: int  # over every layer
    errors: tuple[str, ...]  # failed error checks, `layer.table/check`
    warnings: tuple[str, ...]  # failed warning checks
    published: bool
    reports: tuple[str, ...] = field(default=())  # the run's reports that exist
    rolled_back: bool = False
    steps: tuple[str, ...] = ()  # empty when the run has no RunRecord (older runs)
    failure: str | None = None  # the error a failed run stopped on

    @property
    def verdict(self) -> str:
        if self.rolled_back:
            return "rolled back"
        if self.errors:
            return "blocked"
        if self.failure is not None:
            return "failed"
        return "published" if self.published else "nothing new"

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def summarise_runs(
    ledger: Iterable[Record],
    checks: Iterable[Record],
    published_runs: Iterable[str],
    reports_of: Mapping[str, Iterable[str]],
    records: Iterable[RunRecord] = (),
) -> list[RunSummary]:
    """The runs of `records` and of the ledger, newest first; a run's record gives its times,
    steps and outcome (the ledger's rows, only bronze's and silver's, give them for a run without
    one). `ledger`: its rows (`run_id`, `layer`, `status`,
    `records_read`, `quarantined`, `started_at`, `finished_at`); `checks`: failed quality
    results (`run_id`, `severity`, `layer`, `table`, `check`); `reports_of`: run -> the names
    of its reports that exist. A rollback's own ledger rows are not runs of the pipeline; the
    rows that mark a run rolled back (`rolled_back`, at the rollback's time) only say so."""
    runs: dict[str, Record] = {}
    rolled_back = set()
    for row in ledger:
        if row["status"] == "rollback":
            continue
        if row["status"] == "rolled_back":
            rolled_back.add(row["run_id"])
            continue
        run = runs.setdefault(
            row["run_id"],
            {"start": row["started_at"], "end": row["finished_at"], "records": 0, "quar": 0},
        )
        run["start"] = min(run["start"], row["started_at"])
        run["end"] = max(run["end"], row["finished_at"])
        if row["layer"] == "bronze":
            run["records"] += row["records_read"] or 0
        run["quar"] += row["quarantined"] or 0
    recorded = {r.run_id: r for r in records}
    for run_id, rec in recorded.items():
        run = runs.setdefault(run_id, {"records": 0, "quar": 0})
        run["start"], run["end"] = rec.started_at, rec.finished_at
    failed: dict[tuple[str, str], set[str]] = {}
    for c in checks:
        failed.setdefault((c["run_id"], c["severity"]), set()).add(
            f"{c['layer']}.{c['table']}/{c['check']}"
        )
    published = set(published_runs)
    out = [
        RunSummary(
            run_id,
            r["start"],
            r["end"],
            r["records"],
            r["quar"],
            tuple(sorted(failed.get((run_id, "error"), set()))),
            tuple(sorted(failed.get((run_id, "warning"), set()))),
            run_id in published,
            tuple(n for n in REPORT_NAMES if n in set(reports_of.get(run_id, ()))),
            run_id in rolled_back,
            recorded[run_id].steps if run_id in recorded else (),
            _failure(recorded.get(run_id)),
        )
        for run_id, r in runs.items()
    ]
    return sorted(out, key=lambda s: (s.started_at, s.run_id), reverse=True)


def _failure(record: RunRecord | None) -> str | None:
    if record is None or record.outcome == "succeeded":
        return None
    return record.error or record.outcome


def read_records(lh: Lakehouse) -> list[RunRecord]:
    """The runs recorded in `<reports_root>/runs.json` (none before the first). A file that
    cannot be read as records (cut short by a killed writer) is reported and started afresh:
    the ledger still lists the runs it held."""
    text = reports.read_text_if_kept(lh.config, join_uri(lh.config.storage.reports_root, RUNS))
    if text is None:
        return []
    try:
        return [RunRecord.from_json(d) for d in json.loads(text)]
    except (ValueError, KeyError, TypeError) as exc:
        progress.LOG.warning("%s unreadable (%s): starting it afresh", RUNS, exc)
        return []


def record_run(lh: Lakehouse, record: RunRecord) -> list[RunRecord]:
    """Add (or, for a run id seen before, replace) `record` in `runs.json`; return them all.
    Under the run lock, so one writer at a time."""
    records = [r for r in read_records(lh) if r.run_id != record.run_id] + [record]
    text = json.dumps([r.to_json() for r in records], indent=1)
    reports.write_text(lh.config, join_uri(lh.config.storage.reports_root, RUNS), text)
    return records


def read_runs(
    spark: SparkSession, lh: Lakehouse, records: list[RunRecord] | None = None
) -> list[RunSummary]:
    """Every run of the lakehouse, from its tables, `records` (default: runs.json) and its
    reports root."""
    if records is None:
        records = read_records(lh)
    ledger: list[Any] = []
    if DeltaTable.isDeltaTable(spark, lh.path(LEDGER_TABLE)):  # the index never creates it
        ledger = (
            read_ledger(spark, lh)
            .where(~F.col("run_id").startswith(STREAM_RUN_PREFIX))
            .groupBy("run_id", "layer", "status")
            .agg(
                F.min("started_at").alias("started_at"),
                F.max("finished_at").alias("finished_at"),
                F.sum("records_read").alias("records_read"),
                F.sum("quarantined").alias("quarantined"),
            )
            .collect()
        )
    checks: list[Any] = []
    results = lh.path(RESULTS_TABLE)
    if DeltaTable.isDeltaTable(spark, results):
        checks = (
            spark.read.format("delta")
            .load(results)
            .where(F.col("status") == "failed")
            .select("run_id", "severity", "layer", "table", "check")
            .collect()
        )
    published: list[str] = []
    if DeltaTable.isDeltaTable(spark, lh.path(PUBLISHED_TABLE)):
        published = [
            r["run_id"]
            for r in spark.read.format("delta")
            .load(lh.path(PUBLISHED_TABLE))
            .select("run_id")
            .distinct()
            .collect()
        ]
    return summarise_runs(
        [r.asDict() for r in ledger],
        [c.asDict() for c in checks],
        published,
        reports.list_reports(lh.config),
        records,
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def render_index(runs: list[RunSummary], latest: Iterable[str]) -> str:
    """The index page; `latest`: the names of the reports in `latest/`."""
    rows = [
        {
            "run_id": s.run_id,
            "date": s.started_at.strftime("%Y-%m-%d %H:%M"),
            "verdict": s.verdict,
            "steps": ", ".join(s.steps),
            "failure": s.failure,
            "errors": s.errors,
            "warnings": s.warnings,
            "records": f"{s.records:,}",
            "quarantined": f"{s.quarantined:,}",
            "duration": _duration(s.seconds),
            "reports": [(name, f"runs/{s.run_id}/{name}") for name in s.reports],
        }
        for s in runs
    ]
    counts = {v: sum(1 for s in runs if s.verdict == v) for v in ("published", "blocked", "failed")}
    return pages.render(
        "index.html.j2",
        rows=rows,
        counts=counts,
        latest=[(name, f"{reports.LATEST}/{name}") for name in REPORT_NAMES if name in set(latest)],
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_index(spark: SparkSession, lh: Lakehouse, record: RunRecord | None = None) -> str:
    """Record `record` in runs.json (when given), then write `<reports_root>/index.html` from
    every run the lakehouse has recorded; return its location."""
    records = record_run(lh, record) if record is not None else None
    runs = read_runs(spark, lh, records)
    latest = reports.list_reports(lh.config, folder=reports.LATEST).get("", set())
    location = join_uri(lh.config.storage.reports_root, INDEX)
    reports.write_text(lh.config, location, render_index(runs, latest))
    return location
