"""The whole-pipeline figures: first run of a day, its replay, the run without the Deequ
suites, and the floor (one plain pass over the day's landing files written once as Parquet).

Every run starts from a fresh copy of `p0/` (the lakehouse after day 1) and runs day 2 through
`lakehouse.pipeline.run_pipeline`, the function the CLI, the jobs and EMR call; at a scale with
`pipeline_first_day` (the quick check) from an empty lakehouse and runs day 1, the first run
leaving `p0/` for the merge template.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from pyspark.sql import SparkSession

from lakehouse.core import progress
from lakehouse.core.context import Lakehouse
from lakehouse.pipeline import run_pipeline
from lakehouse_dev.bench.floor import run_floor
from lakehouse_dev.bench.measure import data_files, log, timed, work_counted
from lakehouse_dev.bench.scales import ALL_STEPS, DAY1, DAY2, Scale
from lakehouse_dev.bench.steps import StepRecorder


class PipelineBench(Protocol):
    """What the whole-pipeline figures need of the run (`lakehouse_dev.bench.runner.Bench`):
    its session, scale and folder, fresh lakehouse copies, run ids, the day 1 template `p0/`,
    and where the figures and details go."""

    spark: SparkSession | None
    scale: Scale
    reps: int
    root: Path
    figures: dict[str, Any]
    details: list[str]

    def generate(self, folder: str, orders_per_day: int) -> None: ...

    def fresh(self, template: str, work: str, landing: str = "landing") -> Lakehouse: ...

    def run_id(self, what: str) -> str: ...

    def ensure_p0(self, landing: str) -> None: ...

    def keep_p0(self, lakehouse: str | None = None) -> None: ...


def measure(bench: PipelineBench) -> None:
    """First run, replay, run without quality and the floor, alternately, `reps` times."""
    assert bench.spark is not None
    spark = bench.spark
    scale = bench.scale
    if scale.shares_landing:
        landing = "landing"
    else:
        landing = "landing-pipe"
        bench.generate(landing, scale.pipeline_orders)
    if scale.pipeline_first_day:
        template, measured = "empty", DAY1
        (bench.root / template).mkdir(exist_ok=True)
    else:
        bench.ensure_p0(landing)
        template, measured = "p0", DAY2
    day = [str(measured)]
    with_q: list[float] = []
    without_q: list[float] = []
    replay: list[float] = []
    floor: list[float] = []
    fair: list[float] = []
    fair_rows: dict[str, Any] = {}
    fair_error: str | None = None
    added: list[int] = []
    bookkeeping: list[int] = []
    work: dict[str, dict[str, int]] = {}
    # Per step and table of the last repetition's first run and replay (`steps.py`).
    steps: dict[str, list[dict[str, Any]]] = {}
    reps = bench.scale.pipeline_reps or bench.reps
    for rep in range(reps):
        order = tuple(r for r in ("with", "without", "floor", "fair") if r in scale.pipeline_runs)
        if rep % 2:
            order = order[::-1]
        for what in order:
            log(f"pipeline rep {rep + 1}/{reps}: {what}")
            if what == "with":
                lh = bench.fresh(template, "work-pipe", landing)
                lake = bench.root / "work-pipe"
                recorder = StepRecorder(spark, lake)
                counted = work_counted(spark, lake, f"first-{rep}")
                run_id = bench.run_id("first")
                with progress.listening(recorder), counted as work["first run"], timed() as t:
                    run_pipeline(spark, lh, run_id, ALL_STEPS, day)
                steps["first run"] = [r.as_dict() for r in recorder.rows(run_id)]
                with_q.append(t[0])
                log(f"  first run {t[0]:.1f} s")
                if scale.pipeline_first_day and scale.shares_landing and rep == 0:
                    bench.keep_p0("work-pipe")  # day 1 through the pipeline: the merge template's
                before = data_files(lake)
                books_before = data_files(lake, ("ledger", "quality"))
                recorder = StepRecorder(spark, lake)
                counted = work_counted(spark, lake, f"replay-{rep}")
                run_id = bench.run_id("replay")
                with progress.listening(recorder), counted as work["replay"], timed() as t:
                    run_pipeline(spark, lh, run_id, ALL_STEPS, day)
                steps["replay"] = [r.as_dict() for r in recorder.rows(run_id)]
                replay.append(t[0])
                added.append(len(data_files(lake) - before))
                bookkeeping.append(len(data_files(lake, ("ledger", "quality")) - books_before))
                log(f"  replay {t[0]:.1f} s, {added[-1]} data files added")
            elif what == "without":
                lh = bench.fresh(template, "work-pipe", landing)
                lake = bench.root / "work-pipe"
                counted = work_counted(spark, lake, f"noq-{rep}")
                # Recorded as the first run is, so that both carry the recorder's own cost.
                recorder = StepRecorder(spark, lake)
                run_id = bench.run_id("noq")
                with progress.listening(recorder), counted as work["without quality"], timed() as t:
                    # Neither silver's suites nor gold's gate: the same steps, no Deequ at all.
                    run_pipeline(spark, lh, run_id, ALL_STEPS, day, checks=False)
                steps["without quality"] = [r.as_dict() for r in recorder.rows(run_id)]
                without_q.append(t[0])
                log(f"  {t[0]:.1f} s")
            elif what == "fair":
                if scale.pipeline_first_day:
                    # Into an empty lakehouse there is no silver to MERGE into.
                    fair_error = "not measured: the scale runs day 1 into an empty lakehouse"
                    continue
                lh = bench.fresh(template, "work-fair", landing)
                lake = bench.root / "work-fair"
                try:
                    counted = work_counted(spark, lake, f"fair-{rep}")
                    with counted as work["fair floor"], timed() as t:
                        fair_rows = run_floor(spark, lh, bench.root / landing, str(measured))
                except Exception as exc:  # the floor's failure is reported, the rest kept
                    fair_error = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    log(f"  fair floor {fair_error}")
                    continue
                fair.append(t[0])
                log(f"  {t[0]:.1f} s")
            else:
                out = bench.root / "floor"
                shutil.rmtree(out, ignore_errors=True)
                files = [
                    str(p)
                    for p in (bench.root / landing).glob(f"*/ingest_date={measured}/*")
                    if p.is_file()
                ]
                with work_counted(spark, out.parent, f"floor-{rep}") as work["floor"], timed() as t:
                    spark.read.text(files).write.parquet(str(out))
                floor.append(t[0])
                log(f"  {t[0]:.1f} s")
    bench.figures["pipeline"] = {
        "with_quality": with_q,
        "without_quality": without_q,
        "floor": floor,
        "fair_floor": fair,
        "fair_floor_rows": fair_rows,
    }
    if fair_error and not fair:
        bench.figures["pipeline"]["fair_floor_error"] = fair_error
    bench.figures["replay"] = {
        "first": with_q,
        "replay": replay,
        "files_added": added,
        "bookkeeping_files_added": bookkeeping,
    }
    bench.figures["pipeline"]["work"] = work
    bench.figures["pipeline"]["steps"] = steps
    bench.details.append(
        "Spark jobs and Delta commits per run (last repetition): "
        + "; ".join(
            f"{what}: {w['spark_jobs']} jobs, {w['delta_commits']} commits"
            for what, w in work.items()
        )
    )
    bench.details.append(
        "the replay adds only bookkeeping files (the run's ledger rows and quality results): "
        f"{bookkeeping} per repetition"
    )
