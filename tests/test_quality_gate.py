"""The gold publish gate, through the `lakehouse run` command: an error check on the gold a run
would publish stops the publish (gold keeps its Delta versions, the command exits 1 naming the
check, the failure is recorded); a warning is recorded and does not block."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.cli import main
from lakehouse.core.config import DEFAULT_CONF_DIR
from lakehouse.core.context import Lakehouse
from lakehouse.core.generator_spec import DefectSwitches
from lakehouse.gold.build import CONSUMED_TABLE, gold_tables
from lakehouse.pipeline import run_pipeline
from lakehouse.quality import RESULTS_TABLE, passed_gate
from lakehouse.state.catalog import LAYERS
from lakehouse_dev.browser import inspect_page
from lakehouse_dev.generate import generate_landing

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


@dataclass
class Gated:
    lh: Lakehouse
    gold_before: dict[str, int]
    silver_before: dict[str, int]
    refused_code: int
    refused_err: str
    gold_after_refusal: dict[str, int]
    silver_after_refusal: dict[str, int]
    kpi_dates_after_refusal: list[str]
    warned_code: int
    warned_err: str
    gold_after_warning: dict[str, int]
    kpi_dates_after_warning: list[str]
    replay_code: int
    replay_err: str
    results_before_replay: int
    results_after_replay: int
    gold_after_replay: dict[str, int]


def _versions(spark: SparkSession, lh: Lakehouse, names: tuple[str, ...]) -> dict[str, int]:
    """The current Delta version of each table `layer.name`."""
    return {
        n: int(DeltaTable.forPath(spark, lh.path(n)).history(1).first()["version"]) for n in names
    }


def _gold_and_state(lh: Lakehouse) -> tuple[str, ...]:
    return (*(f"gold.{t}" for t in gold_tables(lh)), CONSUMED_TABLE)


def _conf_with(base: Path, folder: Path, extra_checks: list[dict]) -> Path:
    """A copy of the shipped conf whose local overlay points at `base` and whose
    gold.daily_kpis suite has `extra_checks` appended."""
    shutil.copytree(DEFAULT_CONF_DIR, folder)
    (folder / "local.yaml").write_text(
        yaml.safe_dump(
            {
                "spark": {"mode": "local", "shuffle_partitions": 2},
                "storage": {
                    "landing_root": str(base / "landing"),
                    "lakehouse_root": str(base / "lake"),
                    "reports_root": str(base / "reports"),
                },
            }
        )
    )
    suite_file = folder / "quality" / "gold.daily_kpis.yaml"
    suite = yaml.safe_load(suite_file.read_text())
    suite["checks"].extend(extra_checks)
    suite_file.write_text(yaml.safe_dump(suite))
    return folder


def _kpi_dates(spark: SparkSession, lh: Lakehouse) -> list[str]:
    rows = spark.read.format("delta").load(lh.path("gold.daily_kpis")).select("order_date")
    return sorted(str(r[0]) for r in rows.collect())


@pytest.fixture(scope="module")
def gated(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Gated:
    base = tmp_path_factory.mktemp("gate")
    strict = _conf_with(
        base,
        base / "conf-strict",
        [{"name": "at_most_two_days", "severity": "error", "size": {"max": 2}}],
    )
    warn = _conf_with(
        base,
        base / "conf-warn",
        [{"name": "no_rows_at_all", "severity": "warning", "size": {"max": 0}}],
    )
    lh = Lakehouse.load("local", strict)
    spec = replace(
        lh.config.generator, customers=30, days=3, orders_per_day=20, defects=DefectSwitches.none()
    )
    generate_landing(lh.config.storage.landing_root, spec)
    gold_names = _gold_and_state(lh)
    silver_names = ("silver.orders", "silver.order_items", "silver.payments")

    # Day 1 and 2 with the shipped suites: published.
    run_pipeline(spark, Lakehouse.load("local", warn), "run-1", dates=DAYS[:2])
    gold_before = _versions(spark, lh, gold_names)
    silver_before = _versions(spark, lh, silver_names)

    refused: list[str] = []
    capsys_err = _capture_stderr(
        lambda: refused.append(
            str(main(["--conf-dir", str(strict), "run", "--no-generate", "--date", DAYS[2]]))
        )
    )
    gold_after_refusal = _versions(spark, lh, gold_names)
    silver_after_refusal = _versions(spark, lh, silver_names)
    dates_after_refusal = _kpi_dates(spark, lh)

    warned_codes: list[int] = []
    warned_err = _capture_stderr(
        lambda: warned_codes.append(
            main(["--conf-dir", str(warn), "run", "--no-generate", "--date", DAYS[2]])
        )
    )
    gold_after_warning = _versions(spark, lh, gold_names)
    kpi_dates_after_warning = _kpi_dates(spark, lh)

    # The same run again: nothing new anywhere, and gold has consumed every silver version.
    def results() -> int:
        return spark.read.format("delta").load(lh.path(RESULTS_TABLE)).count()

    results_before_replay = results()
    replay_codes: list[int] = []
    replay_err = _capture_stderr(
        lambda: replay_codes.append(
            main(["--conf-dir", str(warn), "run", "--no-generate", "--date", DAYS[2]])
        )
    )
    # The `run` commands registered this lakehouse's tables in the session's catalog, where later
    # tests' lakehouses would find the names taken (registration only adds missing names).
    for database in LAYERS:
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
    return Gated(
        lh,
        gold_before,
        silver_before,
        int(refused[0]),
        capsys_err,
        gold_after_refusal,
        silver_after_refusal,
        dates_after_refusal,
        warned_codes[0],
        warned_err,
        gold_after_warning,
        kpi_dates_after_warning,
        replay_codes[0],
        replay_err,
        results_before_replay,
        results(),
        _versions(spark, lh, gold_names),
    )


def _capture_stderr(call) -> str:  # type: ignore[no-untyped-def]
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        call()
    return buffer.getvalue()


def test_an_error_check_on_the_staged_gold_stops_the_run_with_a_message(gated: Gated) -> None:
    assert gated.refused_code == 1
    assert "quality gate failed" in gated.refused_err
    assert "gold.daily_kpis/at_most_two_days" in gated.refused_err


def test_a_refused_publish_leaves_every_gold_table_and_its_state_at_the_same_version(
    gated: Gated,
) -> None:
    assert gated.gold_after_refusal == gated.gold_before
    # Gold still shows the two published days, not the refused third.
    assert gated.kpi_dates_after_refusal == list(DAYS[:2])


def test_silver_is_published_when_only_gold_fails(gated: Gated) -> None:
    assert all(gated.silver_after_refusal[t] > gated.silver_before[t] for t in gated.silver_before)


def test_the_refusal_is_recorded_in_quality_results_and_nothing_stays_staged(
    spark: SparkSession, gated: Gated
) -> None:
    root = gated.lh.root
    failed = (
        spark.read.format("delta")
        .load(gated.lh.path(RESULTS_TABLE))
        .where((F.col("table") == "daily_kpis") & (F.col("check") == "at_most_two_days"))
        .select("status", "severity", "value")
        .collect()
    )
    assert [(r["status"], r["severity"], r["value"]) for r in failed] == [("failed", "error", 3.0)]
    assert not list((Path(root) / "_staging").glob("*/gold/*"))


def test_a_warning_is_recorded_and_the_next_run_publishes_the_held_back_day(
    spark: SparkSession, gated: Gated
) -> None:
    assert gated.warned_code == 0, gated.warned_err
    assert gated.kpi_dates_after_warning == list(DAYS)
    assert gated.gold_after_warning["gold.daily_kpis"] > gated.gold_before["gold.daily_kpis"]
    assert gated.gold_after_warning[CONSUMED_TABLE] == gated.gold_before[CONSUMED_TABLE] + 1
    warned = (
        spark.read.format("delta")
        .load(gated.lh.path(RESULTS_TABLE))
        .where(F.col("check") == "no_rows_at_all")
        .select("status", "severity", "value")
        .collect()
    )
    # Run 1 and the last run published with the warning failing; the refused run checked
    # with the strict suite, which does not have it.
    assert sorted((r["status"], r["severity"], r["value"]) for r in warned) == [
        ("failed", "warning", 2.0),
        ("failed", "warning", 3.0),
    ]


def test_the_index_of_runs_lists_the_refused_run_as_blocked_by_its_check(
    gated: Gated, chromium: Any
) -> None:
    root = Path(gated.lh.config.storage.reports_root)
    page = root / "index.html"

    check = inspect_page(chromium, page, texts=["#runs"])

    assert check.problems == []
    html = page.read_text(encoding="utf-8")
    rows = re.findall(r'<tr data-run="([^"]+)" data-verdict="([^"]+)"', html)
    # Newest first: the replay, the warned run, the refused one, run-1.
    assert [verdict for _, verdict in rows] == ["nothing new", "published", "blocked", "published"]
    assert rows[-1][0] == "run-1"
    assert "blocked by gold.daily_kpis/at_most_two_days" in check.texts["#runs"]
    refused = rows[2][0]
    # A blocked run has its quality report and no dashboard; every link resolves.
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert f"runs/{refused}/quality.html" in hrefs
    assert f"runs/{refused}/dashboard.html" not in hrefs
    assert all((root / h).is_file() for h in hrefs)


def test_the_run_command_prints_a_line_per_step_and_table_as_each_finishes(gated: Gated) -> None:
    lines = gated.warned_err.splitlines()

    def timed(prefix: str) -> list[str]:
        pattern = rf"\d\d:\d\d:\d\d {re.escape(prefix)}.*"
        return [line for line in lines if re.fullmatch(pattern, line)]

    def table_of(line: str) -> str:
        return line.split(": ")[0].split()[-1]

    for step in ("bronze", "silver", "quality (silver suites)", "gold", "reports", "catalog"):
        assert len(timed(f"{step}: done in ")) == 1, step
    assert len(timed("run ")) == 2  # started, then done in ... s
    assert [table_of(line) for line in timed("  silver.")] == [
        f"silver.{t}" for t in gated.lh.tables
    ]
    assert all(
        re.search(r" records read, .* \(\d+\.\d s, \d+ Spark jobs\)$", line)
        for line in timed("  silver.")
    )
    gold = {table_of(line) for line in timed("  gold.")}
    assert "gold.daily_kpis" in gold
    assert gold <= {f"gold.{t}" for t in gated.lh.gold}


def test_after_the_first_publish_the_gates_check_only_the_changed_rows(gated: Gated) -> None:
    """The warned run checked silver's rows gold had not published (the refused day's) and the
    gold rows it staged, not every row; its size checks still counted whole tables (the test
    above: `no_rows_at_all` measured 3 days)."""
    for suite in (*gated.lh.suites("silver"), *gated.lh.suites("gold")):
        assert re.search(
            rf"  quality\.{re.escape(suite)}: \d+ checks, \d+ failed \(changed rows\)",
            gated.warned_err,
        ), suite
    assert "(every row)" not in gated.warned_err


def test_a_run_with_nothing_new_for_gold_checks_and_publishes_nothing(gated: Gated) -> None:
    """The warned run re-ran the suites although it landed nothing new (gold had not consumed the
    refused day: see the test above, whose stderr shows the silver suites done); once gold has
    consumed every silver version, there is nothing to hold back and no row to check. What
    landed on the run's date is still judged: the two landing checks, nothing else."""
    assert gated.replay_code == 0, gated.replay_err
    assert "quality (silver suites): skipped, gold has consumed every version" in gated.replay_err
    assert re.search(r"  quality\.bronze\.landing: 2 checks, \d+ failed \(the run's ingest days\)",
                     gated.replay_err)  # fmt: skip
    assert "gold: nothing new in silver, nothing to check or publish" in gated.replay_err
    assert gated.results_after_replay == gated.results_before_replay + 2
    assert gated.gold_after_replay == gated.gold_after_warning


def test_a_run_counts_as_gated_only_if_it_checked_the_layer_and_no_error_failed(
    spark: SparkSession, gated: Gated
) -> None:
    """The skip above trusts the run that published gold only if it checked silver and passed
    (`passed_gate`): a `gold`-only or `--no-checks` publish recorded no silver results."""
    refused = (
        spark.read.format("delta")
        .load(gated.lh.path(RESULTS_TABLE))
        .where((F.col("check") == "at_most_two_days") & (F.col("status") == "failed"))
        .select("run_id")
        .first()["run_id"]
    )

    assert passed_gate(spark, gated.lh, "run-1", "silver")
    assert passed_gate(spark, gated.lh, "run-1", "gold")
    assert passed_gate(spark, gated.lh, refused, "silver")
    assert not passed_gate(spark, gated.lh, refused, "gold")
    assert not passed_gate(spark, gated.lh, "a-run-that-checked-nothing", "silver")
