"""Bad days a data engineer must be told about, end to end on generated landings: a day delivered
at half its usual volume, a source that sent nothing, and a run blocked by an error check whose
report says so first, shows failing rows that match the data, holds no raw personal data, and
reads well in a real browser."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core.config import PROJECT_ROOT
from lakehouse.core.context import Lakehouse
from lakehouse.core.pages import plotly_js
from lakehouse.pipeline import run_pipeline
from lakehouse.quality import QualityGateError
from lakehouse_dev.browser import inspect_page
from lakehouse_dev.generate import generate_landing
from lakehouses import local_lakehouse

CHECK = "records_per_source_per_day"


@dataclass(frozen=True)
class Story:
    lh: Lakehouse
    days: list[str]
    half: dict[str, object]  # run 2's landing check: day 9 of orders at half volume
    silent: dict[str, object]  # run 3's: payments sent nothing on day 10
    blocked: QualityGateError
    reports: Path


def _files(landing: Path, source: str, day: str) -> list[Path]:
    return sorted((landing / source / f"ingest_date={day}").iterdir())


def _halve(path: Path) -> None:
    """Keep the first half of a landed JSON-lines file's records (as the sender would have)."""
    packed = path.suffix == ".gz"
    text = (gzip.decompress(path.read_bytes()) if packed else path.read_bytes()).decode()
    lines = text.splitlines(keepends=True)
    kept = "".join(lines[: len(lines) // 2]).encode()
    path.write_bytes(gzip.compress(kept, mtime=0) if packed else kept)


def _landing_result(spark: SparkSession, lh: Lakehouse, run_id: str) -> dict[str, object]:
    row = (
        spark.read.format("delta")
        .load(lh.path("quality.results"))
        .where(f"run_id = '{run_id}' AND `table` = 'landing' AND `check` = '{CHECK}'")
        .first()
    )
    assert row is not None
    return row.asDict()


def _strict_conf(base: Path) -> Path:
    """The shipped configuration plus an error check on silver.customers that some rows break:
    customers with a phone on file."""
    conf = base / "conf-strict"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    suite_file = conf / "quality" / "silver.customers.yaml"
    suite = yaml.safe_load(suite_file.read_text(encoding="utf-8"))
    suite["checks"].append(
        {
            "name": "no_phone_on_file",
            "severity": "error",
            "sql": {"expression": "phone_hash IS NULL"},
        }
    )
    suite_file.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return conf


@pytest.fixture(scope="module")
def story(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Story:
    base = tmp_path_factory.mktemp("stories")
    lh = local_lakehouse(base)
    spec = replace(lh.config.generator, customers=40, days=10, orders_per_day=30)
    generate_landing(lh.config.storage.landing_root, spec)
    landing = Path(lh.config.storage.landing_root)
    days = sorted(p.name.split("=")[1] for p in (landing / "orders").iterdir())
    assert len(days) == 10
    for path in _files(landing, "orders", days[8]):
        _halve(path)
    shutil.rmtree(landing / "payments" / f"ingest_date={days[9]}")

    run_pipeline(spark, lh, "run-1", dates=days[:8])
    run_pipeline(spark, lh, "run-2", dates=[days[8]])
    # Day 10 as EMR runs it: each step a job with a run id of its own, given the date.
    run_pipeline(spark, lh, "run-3-load", steps=("bronze", "silver"), dates=[days[9]])
    strict = local_lakehouse(base, _strict_conf(base))
    with pytest.raises(QualityGateError) as blocked:
        run_pipeline(spark, strict, "run-3", steps=("quality", "gold"), dates=[days[9]])
    return Story(
        lh,
        days,
        _landing_result(spark, lh, "run-2"),
        _landing_result(spark, lh, "run-3"),
        blocked.value,
        Path(lh.config.storage.reports_root),
    )


def _bronze_counts(spark: SparkSession, lh: Lakehouse, source: str) -> dict[str, int]:
    rows = (
        spark.read.format("delta")
        .load(lh.path(f"bronze.{source}"))
        .groupBy(F.col("ingest_date").cast("string").alias("d"))
        .count()
        .collect()
    )
    return {r["d"]: int(r["count"]) for r in rows}


def _expected_message(counts: dict[str, int], days: list[str], i: int, source: str) -> str:
    """The check's message, computed from bronze (numbers under 1,000: four significant
    digits)."""
    median = statistics.median(counts.get(d, 0) for d in days[:i])
    value = counts.get(days[i], 0)
    assert median * 2.5 < 1000
    return (
        f"sum(records) for {source} on {days[i]}: {value:,}, expected "
        f"{median * 0.6:,.4g} to {median * 2.5:,.4g} (median {median:,.4g} of the {i} days before)"
    )


def test_a_day_at_half_volume_is_flagged_with_its_metric_and_expected_range(
    spark: SparkSession, story: Story
) -> None:
    counts = _bronze_counts(spark, story.lh, "orders")
    before = [counts[d] for d in story.days[:8]]
    assert counts[story.days[8]] < 0.6 * statistics.median(before)  # the landing is really short
    result = story.half
    assert (result["status"], result["severity"], result["metric"]) == (
        "failed",
        "warning",
        "day_anomaly(sum(records))",
    )
    # Only orders is flagged: every other source came in full.
    assert result["message"] == _expected_message(counts, story.days, 8, "orders")
    (flagged,) = [json.loads(e) for e in result["examples"]]
    assert (flagged["day"], flagged["group"], flagged["value"]) == (
        story.days[8],
        "orders",
        counts[story.days[8]],
    )


def test_a_source_that_sent_nothing_is_flagged_by_the_quality_job_of_that_date(
    spark: SparkSession, story: Story
) -> None:
    """Run 3's quality step landed nothing itself (another job did): the date it was given is
    the day judged."""
    counts = _bronze_counts(spark, story.lh, "payments")
    assert story.days[9] not in counts
    result = story.silent
    assert result["status"] == "failed"
    assert result["message"] == _expected_message(counts, story.days, 9, "payments")


def test_the_blocked_run_says_so_first_naming_the_check(story: Story) -> None:
    assert "silver.customers/no_phone_on_file" in str(story.blocked)
    page = (story.reports / "runs" / "run-3" / "quality.html").read_text(encoding="utf-8")
    body = page.split("<body>", 1)[1].lstrip()
    first = re.match(r'<p id="verdict" class="blocked">(.*?)</p>', body, re.S)
    assert first is not None
    assert first.group(1).startswith("Blocked: 1 error check(s) failed")
    assert first.group(1).endswith("blocked by: silver.customers/no_phone_on_file</span>")
    doc = json.loads((story.reports / "runs" / "run-3" / "quality.json").read_text("utf-8"))
    assert f"bronze.landing/{CHECK}" in doc["verdict"]["warnings"]


def test_the_failing_rows_shown_are_the_rows_that_break_the_check(
    spark: SparkSession, story: Story
) -> None:
    doc = json.loads((story.reports / "runs" / "run-3" / "quality.json").read_text("utf-8"))
    (check,) = [c for c in doc["checks"] if c["id"] == "silver.customers/no_phone_on_file"]
    breaking = {
        r["customer_id"]: r
        for r in spark.read.format("delta")
        .load(story.lh.path("silver.customers"))
        # The rows day 10's load changed: what run 3's gate checked.
        .where("NOT _is_deleted AND phone_hash IS NOT NULL AND _run_id = 'run-3-load'")
        .collect()
    }
    assert 0 < len(check["examples"]) == min(5, len(breaking))
    for shown in check["examples"]:
        row = breaking[shown["customer_id"]]
        assert shown["phone_hash"] == row["phone_hash"][:8] + "…"
        assert shown["email_hash"] in (None, row["email_hash"][:8] + "…")
        assert shown["country"] == row["country"]


def _personal_values(landing: Path) -> set[str]:
    """Every raw personal value the generated landing holds: emails, phones, names, IPs."""
    values: set[str] = set()
    for source, fields in (
        ("customers", ("email", "phone", "first_name", "last_name")),
        ("clickstream", ("ip",)),
    ):
        for path in (landing / source).rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                row = record.get("after") or record.get("before") or record
                values |= {str(row[f]) for f in fields if isinstance(row, dict) and row.get(f)}
    return values


def test_no_raw_personal_data_anywhere_in_the_reports(story: Story) -> None:
    values = _personal_values(Path(story.lh.config.storage.landing_root))
    assert len(values) > 100
    pages = sorted((story.reports / "runs").rglob("quality.*"))
    assert len(pages) >= 6  # html and json of three runs
    for path in pages:
        text = path.read_text(encoding="utf-8")
        # plotly.js itself is a library's text (with its calendars' month names), not the
        # report's.
        text = text.replace(plotly_js(), "")
        words = set(re.findall(r"[\w.+@-]+", text))
        leaked = sorted(
            v for v in values if (v in words if re.fullmatch(r"[A-Za-z]+", v) else v in text)
        )
        assert leaked == [], f"{path}: raw personal data {leaked[:5]}"
    # The quarantine of run 1 holds customer records: shown, masked.
    doc = json.loads((story.reports / "runs" / "run-1" / "quality.json").read_text("utf-8"))
    customers = [g for g in doc["quarantine"] if g["source"] == "customers"]
    assert customers and all(g["samples"] for g in customers)


def test_the_blocked_runs_report_reads_well_in_a_browser(story: Story, chromium) -> None:
    page = story.reports / "runs" / "run-3" / "quality.html"
    check = inspect_page(chromium, page, texts=["#verdict", "#failures"])
    assert check.problems == []
    assert check.texts["#verdict"].startswith("Blocked: 1 error check(s) failed")
    assert "silver.customers/no_phone_on_file" in check.texts["#failures"]
    assert "bronze.landing/records_per_source_per_day" in check.texts["#failures"]
    # Every chart drew: the failed checks' and the folded passed ones'.
    assert check.charts and all(c["marks"] for c in check.charts.values())
    assert Path(check.screenshot).stat().st_size > 10_000
