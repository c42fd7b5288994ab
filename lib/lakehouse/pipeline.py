"""The daily pipeline's steps (bronze, silver, gold) and their orchestration.

The `lakehouse` command, the `jobs/*.py` spark-submit entry points and the EMR steps all call
these functions, so a step runs the same way locally and on EMR. Each step records its ledger
rows only after its own conservation checks passed; a failed step raises and leaves the run
unpublished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession

from lakehouse.core import progress
from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import crash_point
from lakehouse.state.ledger import LedgerEntry, record, utcnow

STEPS = ("bronze", "silver", "quality", "gold")


@dataclass
class RunReport:
    run_id: str
    bronze: list[LedgerEntry] = field(default_factory=list)
    silver: list[LedgerEntry] = field(default_factory=list)
    gold: object | None = None
    quality: list[object] = field(default_factory=list)
    dashboard: str | None = None


@dataclass
class DeferredReport:
    """A run's quality report, written once after its last gate: each gate wrote the whole
    report (every result of the run) again, twice a run with a silver and a gold gate. A gate
    given one marks it `due` instead of writing; `flush` writes it if due, also when a gate
    stopped the run or a later step failed (then a failed write is only logged: the run's own
    error is what the caller sees)."""

    spark: SparkSession
    lh: Lakehouse
    run_id: str
    gated: bool = True
    due: bool = False

    def flush(self, failing: bool = False) -> None:
        if not self.due:
            return
        from lakehouse.quality import write_report

        self.due = False
        if not failing:
            with progress.step("quality report"):
                write_report(self.spark, self.lh, self.run_id, gated=self.gated)
            return
        try:
            write_report(self.spark, self.lh, self.run_id, gated=self.gated)
        except Exception as exc:
            progress.LOG.warning("quality report not written: %s: %s", type(exc).__name__, exc)


def run_bronze(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    dates: Sequence[str] | None = None,
    reprocess: bool = False,
) -> list[LedgerEntry]:
    from lakehouse.bronze.ingestion import ingest

    # The ledger rows are written before the files are marked ingested (`ingest`).
    return ingest(
        spark,
        lh,
        run_id,
        ingest_dates=set(dates) if dates else None,
        reprocess=reprocess,
        record_counts=lambda entries: record(spark, lh, entries),
    )


def run_silver(spark: SparkSession, lh: Lakehouse, run_id: str) -> list[LedgerEntry]:
    from lakehouse.silver.engine import apply

    entries = apply(spark, lh, run_id)
    record(spark, lh, entries)
    return entries


def run_gold(spark: SparkSession, lh: Lakehouse, run_id: str, mode: str = "incremental") -> object:
    from lakehouse.gold.build import build_gold

    return build_gold(spark, lh, run_id, mode=mode)  # type: ignore[arg-type]


def write_reports(spark: SparkSession, lh: Lakehouse, run_id: str) -> str:
    """The static HTML dashboard of the published gold, as the run's report under the reports
    root (local or S3, `lakehouse.state.reports`); returns its location."""
    from lakehouse.gold.dashboard import write_dashboard

    return write_dashboard(spark, lh, run_id)


def run_gold_gated(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    mode: str = "incremental",
    deferred: DeferredReport | None = None,
) -> tuple[object, object]:
    """Stage gold, check the staged tables with the gold suites, publish only if no error check
    failed. On a failure the staging is discarded, gold and its consumed versions stay as they
    were (dashboards keep reading the previous gold) and `QualityGateError` is raised. Its
    day-level checks judge the days of the staged rows (gold has no ingest days). `deferred`:
    the run writes its report later (see `run_quality_gate`)."""
    from lakehouse.gold.build import discard_staged, publish_gold, stage_gold
    from lakehouse.quality import QualityOutcome

    staged = stage_gold(spark, lh, run_id, mode)  # type: ignore[arg-type]
    crash_point("gold.staged")
    if not staged.has_changes:
        # Silver has no version gold has not consumed: gold stays as the run that published it
        # left it (checked then), and there is nothing to check or publish.
        progress.report("  gold: nothing new in silver, nothing to check or publish")
        return publish_gold(staged), QualityOutcome(run_id)
    try:
        outcome = run_quality_gate(
            spark,
            lh,
            run_id,
            lh.suites("gold"),
            True,
            frames=staged.candidates(),
            # A full build overwrites every table: its rows are every row.
            scopes=None if staged.mode == "full" else staged.scopes(),
            deferred=deferred,
        )
    except BaseException:
        discard_staged(staged)
        raise
    return publish_gold(staged), outcome


def run_quality_gate(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    suites: Sequence[str],
    gate_errors: bool,
    frames: Mapping[str, DataFrame] | None = None,
    scopes: Mapping[str, DataFrame] | None = None,
    run_days: Sequence[date] | None = None,
    deferred: DeferredReport | None = None,
) -> object:
    """Run the suites (on `frames` where given, on the rows in `scopes` where given, judging
    `run_days` in day-level checks, see `run_quality`), write the run's report (under the
    reports root; with `deferred`, mark it due for the caller to write once after its last
    gate), then stop the run with `QualityGateError` if an error-severity check failed and
    `gate_errors` is set."""
    from lakehouse.quality import gate, run_quality, write_report

    outcome = run_quality(
        spark, lh, run_id, list(suites), frames=frames, scopes=scopes, run_days=run_days
    )
    if deferred is None:
        write_report(spark, lh, run_id, gated=gate_errors)
    else:
        deferred.due = True
    if gate_errors:
        gate(outcome)
    return outcome


def run_pipeline(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    steps: Sequence[str] = STEPS,
    dates: Sequence[str] | None = None,
    checks: bool = True,
    gold_mode: str = "incremental",
    reprocess: bool = False,
    register: bool = True,
) -> RunReport:
    """Run the given steps in order. The `quality` step checks silver; the `gold` step always
    checks what it is about to publish (EMR runs the steps as separate jobs, so the gold gate
    belongs to the gold step). `checks=False` runs neither (benchmarks, debugging).

    Every Delta commit of the run carries the run id as its `userMetadata`, which is how
    `lakehouse rollback --run` finds what a run wrote. `reprocess` re-reads the landing files of
    `dates` even if ingested before (backfills); `register=False` leaves the catalog alone (a
    dry run on a scratch copy).

    The run holds the lakehouse's run lock (`lakehouse.state.lock`): another run on the same
    lakehouse waits for it, saying so, and stops naming the holder after `lock.wait_minutes`."""
    from lakehouse.core.delta_io import commit_metadata
    from lakehouse.state.catalog import register_tables
    from lakehouse.state.lock import run_lock

    with (
        progress.step(f"run {run_id}"),
        run_lock(lh, run_id, f"pipeline steps {','.join(steps)}"),
    ):
        started = utcnow()
        try:
            with commit_metadata(spark, run_id):
                report = _run_steps(spark, lh, run_id, steps, dates, checks, gold_mode, reprocess)
            if register:
                with progress.step("catalog"):
                    register_tables(spark, lh)
        except Exception as exc:
            # A blocked or failed run is listed too; its own error is what the caller sees.
            _write_index(spark, lh, run_id, steps, started, exc)
            raise
        _write_index(spark, lh, run_id, steps, started)
    return report


def _write_index(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    steps: Sequence[str],
    started: datetime,
    error: BaseException | None = None,
) -> None:
    """Record the run (`RunRecord`) and write the index of runs under the reports root
    (`lakehouse.state.run_index`). It is a report: failing to write it is printed and does not
    fail the run (whose data is written already); the next run writes it again."""
    from lakehouse.state.run_index import RunRecord, write_index

    try:
        record = RunRecord(
            run_id,
            tuple(steps),
            started,
            utcnow(),
            "succeeded" if error is None else "failed",
            None if error is None else f"{type(error).__name__}: {error}"[:500],
        )
        with progress.step("index of runs"):
            write_index(spark, lh, record)
    except Exception as exc:
        progress.LOG.warning("index of runs not written: %s: %s", type(exc).__name__, exc)


def _days_to_judge(
    spark: SparkSession, lh: Lakehouse, run_id: str, dates: Sequence[str] | None
) -> list[date]:
    """The ingest days the landing checks judge: those run `run_id` landed files of, and those
    it was run for (`dates`: on EMR each step is a job of its own, given the scheduled date)."""
    from lakehouse.quality.days import run_days

    given = {date.fromisoformat(d) for d in dates or ()}
    return sorted(given | set(run_days(spark, lh, run_id)))


def _published_after_silver_gate(spark: SparkSession, lh: Lakehouse) -> bool:
    """Whether gold has consumed every silver version already, and the run that published it
    checked silver and passed (a `gold`-only or `--no-checks` publish did not check it)."""
    from lakehouse.gold.build import current_publisher
    from lakehouse.quality import passed_gate

    publisher = current_publisher(spark, lh)
    return publisher is not None and passed_gate(spark, lh, publisher, "silver")


def unpublished_silver(
    spark: SparkSession, lh: Lakehouse, tables: Sequence[str]
) -> dict[str, DataFrame]:
    """What the silver gate checks: `silver.<table>` -> its live rows changed since the version
    consumed by the newest gold publish whose run passed the silver gate (one per key,
    `quality.scope.unpublished_rows`): a publish that did not check silver (`lakehouse gold`,
    `--no-checks`) does not count, so its rows are checked again. A table no gold table reads
    (clickstream; products, whose history gold reads) has its rows changed since the version
    the newest passed silver gate checked (`quality.checked_versions`). A table with neither,
    or consumed or checked at a version newer than the table has (it was recreated), has no
    entry: its suite checks every row (docs/QUALITY.md, "What the gate checks")."""
    from lakehouse.core.delta_io import current_version
    from lakehouse.gold.build import consumed_versions
    from lakehouse.quality import gated_runs
    from lakehouse.quality.scope import checked_versions, unpublished_rows

    consumed = consumed_versions(spark, lh, runs=gated_runs(spark, lh, "silver"))
    unread = not_read_by_gold(lh)
    checked = checked_versions(spark, lh) if unread else {}
    out: dict[str, DataFrame] = {}
    for name in tables:
        layer, _, table = name.partition(".")
        if layer != "silver" or table not in lh.tables:
            continue
        since = checked.get(table) if table in unread else consumed.get(table)
        if since is not None and current_version(spark, lh.path(name)) >= since:
            out[name] = unpublished_rows(spark, lh.path(name), lh.tables[table].keys, since)
    return out


def not_read_by_gold(lh: Lakehouse) -> set[str]:
    """The silver tables no gold table reads: no gold publish records a version of them."""
    read = {name for spec in lh.gold.values() for name in spec.inputs}
    return {name for name in lh.tables if name not in read}


def _unchecked_silver(spark: SparkSession, lh: Lakehouse) -> list[str]:
    """The silver tables gold does not read that changed since a passed silver gate checked
    them (or that no gate checked yet)."""
    from lakehouse.core.delta_io import current_version
    from lakehouse.quality.scope import checked_versions

    unread = [t for t in sorted(not_read_by_gold(lh)) if lh.tables[t].quality]
    checked = checked_versions(spark, lh) if unread else {}
    return [
        t
        for t in unread
        if t not in checked or current_version(spark, lh.path(f"silver.{t}")) > checked[t]
    ]


def _run_steps(
    spark: SparkSession,
    lh: Lakehouse,
    run_id: str,
    steps: Sequence[str],
    dates: Sequence[str] | None,
    checks: bool,
    gold_mode: str,
    reprocess: bool,
) -> RunReport:
    report = RunReport(run_id)
    if "bronze" in steps:
        with progress.step("bronze"):
            report.bronze = run_bronze(spark, lh, run_id, dates, reprocess)
    if "silver" in steps:
        with progress.step("silver"):
            report.silver = run_silver(spark, lh, run_id)
    # The run's quality report is written once, after its last gate (`DeferredReport`).
    deferred = DeferredReport(spark, lh, run_id)
    try:
        if "quality" in steps and checks:
            # Silver is checked before gold reads it: an error stops the run here and gold keeps
            # the version dashboards read (see docs/QUALITY.md). When gold has consumed every
            # silver version already, published by a run that passed this gate, there is nothing
            # to hold back, and the suites would check the rows they checked then; what landed is
            # still judged (a day on which nothing came is what those checks are for).
            days = _days_to_judge(spark, lh, run_id, dates)
            if (
                gold_mode == "incremental"
                and _published_after_silver_gate(spark, lh)
                and not _unchecked_silver(spark, lh)
            ):
                progress.report("quality (silver suites): skipped, gold has consumed every version")
                if days and lh.suites("bronze"):
                    with progress.step("quality (landing)"):
                        report.quality.append(
                            run_quality_gate(
                                spark,
                                lh,
                                run_id,
                                lh.suites("bronze"),
                                True,
                                run_days=days,
                                deferred=deferred,
                            )
                        )
            else:
                with progress.step("quality (silver suites)"):
                    from lakehouse.core.delta_io import current_version
                    from lakehouse.quality.scope import record_checked

                    # What landed per source and day, then silver.
                    suites = (*lh.suites("bronze"), *lh.suites("silver"))
                    # The rows gold has not published yet; a full gold build checks every row.
                    scopes = (
                        unpublished_silver(spark, lh, suites) if gold_mode == "incremental" else {}
                    )
                    unread = [
                        f"silver.{t}"
                        for t in sorted(not_read_by_gold(lh))
                        if f"silver.{t}" in suites
                    ]
                    versions = {name: current_version(spark, lh.path(name)) for name in unread}
                    outcome = run_quality_gate(
                        spark,
                        lh,
                        run_id,
                        suites,
                        True,
                        scopes=scopes,
                        run_days=days,
                        deferred=deferred,
                    )
                    # Passed: what gold does not read is checked up to these versions.
                    record_checked(spark, lh, run_id, versions)
                report.quality.append(outcome)
        if "gold" in steps:
            with progress.step("gold"):
                if checks:
                    # Gold is staged, checked, and published only if no error check failed.
                    report.gold, gold_outcome = run_gold_gated(
                        spark, lh, run_id, gold_mode, deferred=deferred
                    )
                    report.quality.append(gold_outcome)
                else:
                    report.gold = run_gold(spark, lh, run_id, gold_mode)
    except BaseException:
        deferred.flush(failing=True)
        raise
    deferred.flush()
    if "gold" in steps:
        with progress.step("reports"):
            report.dashboard = write_reports(spark, lh, run_id)
    return report
