"""The index of runs (`<reports_root>/index.html`): what each run is listed with, computed from
the ledger, the failed checks and the published sets; then the page in a browser. The index a
real blocked run leaves is read in tests/test_quality_gate.py, a published one's in
tests/test_pipeline.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

import moto_server
from lakehouse import pipeline
from lakehouse.core import progress
from lakehouse.core.config import AwsConfig
from lakehouse.pipeline import run_pipeline
from lakehouse.state import reports, run_index
from lakehouse.state.lock import run_lock
from lakehouse.state.run_index import (
    RunRecord,
    RunSummary,
    read_records,
    record_run,
    render_index,
    summarise_runs,
)
from lakehouse_dev.browser import inspect_page
from lakehouses import local_lakehouse
from moto_server import REGION

moto_url = moto_server.moto_url
moto = moto_server.moto

T0 = dt.datetime(2024, 1, 2, 2, 0, 0)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def ledger_row(
    run: str, layer: str, start: float, end: float, read: int, quar: int = 0
) -> dict[str, Any]:
    return {
        "run_id": run,
        "layer": layer,
        "status": "ok",
        "records_read": read,
        "quarantined": quar,
        "started_at": at(start),
        "finished_at": at(end),
    }


LEDGER = [
    ledger_row("r1", "bronze", 0, 1, 100, quar=2),
    ledger_row("r1", "bronze", 0.5, 1.5, 50),
    ledger_row("r1", "silver", 2, 3, 148, quar=1),
    ledger_row("r1", "gold", 3, 4.25, 7),
    ledger_row("r2", "bronze", 1440, 1441, 30),
    ledger_row("r2", "silver", 1441, 1442, 30),
    ledger_row("r3", "bronze", 2880, 2881, 0),
    # A rollback's own row is not a run of the pipeline.
    {**ledger_row("rb", "silver", 3000, 3001, 0), "status": "rollback"},
]
# What `lakehouse rollback` of r2 adds: r2's rows marked, at the rollback's time.
ROLLED_BACK = [{**ledger_row("r2", "bronze", 3000, 3000, 0), "status": "rolled_back"}]
FAILED = [
    {"run_id": "r2", "severity": "error", "layer": "gold", "table": "daily_kpis", "check": "b"},
    # The same check failed again when r2 was retried under its id: listed once.
    {"run_id": "r2", "severity": "error", "layer": "gold", "table": "daily_kpis", "check": "b"},
    {"run_id": "r2", "severity": "error", "layer": "silver", "table": "orders", "check": "a"},
    {"run_id": "r2", "severity": "warning", "layer": "silver", "table": "orders", "check": "w"},
    {"run_id": "r1", "severity": "warning", "layer": "silver", "table": "orders", "check": "w"},
]
REPORTS = {"r1": {"dashboard.html", "quality.html", "dashboard.png"}, "r2": {"quality.html"}}


def test_each_run_is_summed_from_its_ledger_rows_checks_and_published_sets() -> None:
    runs = summarise_runs(LEDGER, FAILED, ["r1"], REPORTS)

    assert runs == [
        RunSummary("r3", at(2880), at(2881), 0, 0, (), (), False, ()),
        RunSummary(
            "r2",
            at(1440),
            at(1442),
            30,
            0,
            ("gold.daily_kpis/b", "silver.orders/a"),
            ("silver.orders/w",),
            False,
            ("quality.html",),
        ),
        RunSummary(
            "r1",
            at(0),
            at(4.25),
            150,  # bronze's records read, not silver's or gold's
            3,  # quarantined in every layer
            (),
            ("silver.orders/w",),
            True,
            ("dashboard.html", "quality.html"),  # the reports, not a screenshot
        ),
    ]
    assert [r.verdict for r in runs] == ["nothing new", "blocked", "published"]
    assert runs[2].seconds == 255.0


def test_a_rolled_back_run_says_so_and_keeps_its_own_times() -> None:
    runs = summarise_runs(LEDGER + ROLLED_BACK, FAILED, ["r1"], REPORTS)
    r2 = next(r for r in runs if r.run_id == "r2")
    assert (r2.verdict, r2.started_at, r2.finished_at, r2.records) == (
        "rolled back",
        at(1440),
        at(1442),
        30,
    )


def test_a_run_record_gives_the_whole_runs_times_steps_and_outcome() -> None:
    records = [
        # r1 as run_pipeline recorded it: from before bronze to after gold.
        RunRecord("r1", ("bronze", "silver", "quality", "gold"), at(-1), at(6), "succeeded"),
        # A gold job of its own (an Airflow run's gold step): no ledger row at all.
        RunRecord("g1", ("gold",), at(10), at(12), "succeeded"),
        # A run that stopped on an error that is not a failed check.
        RunRecord("f1", ("bronze",), at(20), at(20.5), "failed", "OSError: landing unreachable"),
    ]

    runs = {r.run_id: r for r in summarise_runs(LEDGER, FAILED, ["r1", "g1"], REPORTS, records)}

    assert (runs["r1"].started_at, runs["r1"].finished_at, runs["r1"].records) == (
        at(-1),
        at(6),
        150,
    )
    assert runs["r1"].steps == ("bronze", "silver", "quality", "gold")
    assert (runs["g1"].verdict, runs["g1"].steps, runs["g1"].records) == ("published", ("gold",), 0)
    assert (runs["f1"].verdict, runs["f1"].failure) == ("failed", "OSError: landing unreachable")
    assert runs["r2"].steps == ()  # a run from before runs.json: the ledger's times


def test_run_records_are_kept_in_the_reports_root_a_retry_replacing_its_first_try(
    tmp_path: Path,
) -> None:
    lh = local_lakehouse(tmp_path)
    first = RunRecord("r1", ("bronze",), at(0), at(1), "failed", "OSError: x")
    record_run(lh, first)
    record_run(lh, RunRecord("r2", ("gold",), at(2), at(3), "succeeded"))
    retry = RunRecord("r1", ("bronze",), at(4), at(5), "succeeded")

    kept = record_run(lh, retry)

    assert (
        kept == read_records(lh) == [RunRecord("r2", ("gold",), at(2), at(3), "succeeded"), retry]
    )
    kept_at = tmp_path / "reports" / "runs.json"
    # Cut short by a killed writer: started afresh by the next run, not stuck.
    kept_at.write_text(kept_at.read_text()[:40])
    assert read_records(lh) == []
    assert record_run(lh, first) == [first] == read_records(lh)


def test_run_records_and_the_report_listing_on_s3(moto: str, tmp_path: Path) -> None:
    s3 = moto_server.client(moto, "s3")
    s3.create_bucket(Bucket="lake", CreateBucketConfiguration={"LocationConstraint": REGION})
    local = local_lakehouse(tmp_path)
    storage = dataclasses.replace(local.config.storage, reports_root="s3://lake/reports")
    aws = AwsConfig(REGION, "s3://unused/a", "s3://unused/l", endpoint_url=moto)
    lh = local.with_config(storage=storage, aws=aws)
    s3.put_object(Bucket="lake", Key="reports/runs/r1/quality.html", Body=b"x")
    s3.put_object(Bucket="lake", Key="reports/runs/r1/dashboard.png", Body=b"x")
    s3.put_object(Bucket="lake", Key="reports/latest/quality.html", Body=b"x")

    assert read_records(lh) == []  # nothing kept yet (NoSuchKey)
    record = RunRecord("r1", ("bronze", "gold"), at(0), at(1), "succeeded")
    assert record_run(lh, record) == [record] == read_records(lh)
    assert reports.list_reports(lh.config) == {"r1": {"quality.html", "dashboard.png"}}
    assert reports.list_reports(lh.config, folder="latest") == {"": {"quality.html"}}


def test_a_blocked_run_is_blocked_even_if_it_recorded_a_published_set() -> None:
    (run,) = summarise_runs(LEDGER[4:6], FAILED[:1], ["r2"], {})
    assert run.verdict == "blocked"


def test_the_index_page_lists_the_runs_with_links_that_resolve(
    chromium: Any, tmp_path: Path
) -> None:
    runs = summarise_runs(LEDGER, FAILED, ["r1"], REPORTS)
    for run, names in REPORTS.items():
        (tmp_path / "runs" / run).mkdir(parents=True)
        for name in names:
            (tmp_path / "runs" / run / name).write_text("<!doctype html><title>x</title>")
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "dashboard.html").write_text("<!doctype html><title>x</title>")
    page = tmp_path / "index.html"
    page.write_text(render_index(runs, {"dashboard.html"}), encoding="utf-8")

    check = inspect_page(chromium, page, texts=["header", "#runs"])

    assert check.problems == []
    html = page.read_text(encoding="utf-8")
    assert re.findall(r'<tr data-run="([^"]+)" data-verdict="([^"]+)"', html) == [
        ("r3", "nothing new"),
        ("r2", "blocked"),
        ("r1", "published"),
    ]
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert hrefs == [
        "latest/dashboard.html",
        "runs/r2/quality.html",
        "runs/r1/dashboard.html",
        "runs/r1/quality.html",
    ]
    assert all((tmp_path / h).is_file() for h in hrefs)
    assert "3 runs: 1 published, 1 blocked" in check.texts["header"]
    assert "blocked by gold.daily_kpis/b, silver.orders/a" in check.texts["#runs"]
    assert "r1\t2024-01-02 02:00\t\tpublished\t0\t1\t150\t3\t4 min 15 s\t" in check.texts["#runs"]


def test_an_empty_lakehouse_has_an_index_that_says_so() -> None:
    page = render_index([], set())
    assert "No runs yet." in page and "0 runs: 0 published, 0 blocked" in page


def test_writing_the_index_never_fails_a_run_or_hides_its_error(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lh = local_lakehouse(tmp_path)

    def broken(*args: object) -> None:
        raise OSError("reports root unreachable")

    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    monkeypatch.setattr(run_index, "write_index", broken)
    keep = Keep()
    progress.LOG.addHandler(keep)
    try:
        run_pipeline(spark, lh, "r-ok", steps=(), register=False)  # no step: only the index
    finally:
        progress.LOG.removeHandler(keep)
    assert "index of runs not written: OSError: reports root unreachable" in said

    def failing_steps(*args: object) -> None:
        raise ValueError("the run's own error")

    monkeypatch.setattr(pipeline, "_run_steps", failing_steps)
    with pytest.raises(ValueError, match="the run's own error"):
        run_pipeline(spark, lh, "r-failing", steps=(), register=False)
    with run_lock(lh, "r-next", "after"):  # the failed run let go of the lock
        pass
