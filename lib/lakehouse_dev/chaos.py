"""The crash suite: runs killed half-way, then run again, must leave the lakehouse exactly as an
uninterrupted run does (issue #22, docs/RELIABILITY.md).

A small landing zone of two days (every defect on) is generated once. The reference is built
by uninterrupted runs: day 1, then day 2. Each trial copies the day-1 lakehouse and kills a run
of day 2 in its own process, either at a named crash point (`lakehouse.core.crash`: the process
ends with `os._exit`, as `kill -9` would) or from outside with SIGKILL at a random moment of the
run (seeded, so a trial is reproducible). Then it checks:

- nothing was published half: gold as readers see it (`gold.published.read_gold`) is still day
  1's, table by table;
- the rerun of day 2 completes (status 0);
- every bronze, silver, gold and quarantine table equals the reference's by key and value
  (`lakehouse_dev.fingerprint`);
- the ledger counts each bronze record once: per source, the records written over all runs
  equal the rows of the bronze table, and the records quarantined its rows in the quarantine
  (`miscounted` otherwise).

The maintenance and erasure points (`OPS_POINTS`) are trialled the same way on a copy of the
finished day-2 lakehouse: `lakehouse maintain` or `lakehouse erase` killed at the point, then run
again, must leave every table equal to the same command run uninterrupted (maintenance changes no
row; erasure has its own reference), with readers' gold unchanged while it was stopped.

    python -m lakehouse_dev.chaos --trials 20 --seed 7         # `make chaos`: 20 crash trials
                                                                # and the 2 concurrent ones
    python -m lakehouse_dev.chaos --points gold.table_published#1

Every run is a separate process (`python -m lakehouse_dev.chaos run ...`), like a scheduler's
retry. The checks run in this process's own Spark session.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lakehouse.core.context import Lakehouse
from lakehouse.core.crash import CRASH_ENV, CRASH_STATUS

DAYS = ("2024-01-01", "2024-01-02")
# The crash points a day-2 run passes, with the pass to crash on (`#n`).
RUN_POINTS = (
    "bronze.written",
    "bronze.counted",
    "silver.table_merged#1",
    "silver.table_merged#4",
    "gold.staged",
    "gold.table_published#1",
    "gold.table_published#3",
    "gold.tables_published",
)
# The crash points of `lakehouse maintain` and `lakehouse erase`, run on the finished day 2.
OPS_POINTS = (
    "maintain.table#1",
    "maintain.table#6",
    "erase.bronze",
)


@dataclass
class Trial:
    name: str  # a crash point, or `kill@<seconds>`
    crashed_status: int | None = None
    rerun_status: int | None = None
    reached: bool = True  # a crash point the run passed (a kill: the run had not finished)
    half_published: list[str] = field(default_factory=list)
    # Gold tables the killed run had written past their published version (what readers must
    # not see).
    unpublished: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    # Bronze sources whose ledger rows, summed over every run, do not count each bronze record
    # once as written and each quarantined one once as quarantined (`_miscounted`).
    miscounted: list[str] = field(default_factory=list)
    # Bronze and silver tables whose version after the rerun differs from the uninterrupted
    # run's: a commit of the stopped run that the rerun repeated instead of skipping it by its
    # transaction identifier (an empty MERGE, say).
    extra_commits: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.reached
            and self.rerun_status == 0
            and not self.half_published
            and not self.different
            and not self.miscounted
            and not self.extra_commits
        )

    def describe(self) -> str:
        if self.ok:
            return f"{self.name}: identical after the rerun ({self.seconds:.0f} s)"
        problems = [
            ""
            if self.reached
            else "not exactly one run waited for the other's lock"
            if self.name.startswith("concurrent.")
            else f"not reached (the run ended with {self.crashed_status})",
            f"rerun status {self.rerun_status}" if self.rerun_status != 0 else "",
            f"half published: {', '.join(self.half_published)}" if self.half_published else "",
            f"differs: {', '.join(self.different)}" if self.different else "",
            f"ledger != bronze rows or quarantine: {', '.join(self.miscounted)}"
            if self.miscounted
            else "",
            f"versions differ (commits repeated): {', '.join(self.extra_commits)}"
            if self.extra_commits
            else "",
        ]
        return f"{self.name}: FAILED ({'; '.join(p for p in problems if p)})"


def _lakehouse(work: Path, lake: str) -> Lakehouse:
    storage = {
        "landing_root": str(work / "landing"),
        "lakehouse_root": str(work / lake),
        "reports_root": str(work / lake / "_reports"),
    }
    return Lakehouse.load("local", None, {"storage": storage})


# ---------------------------------------------------------------------------------------------
# One run, in its own process


def run_once(
    work: Path, lake: str, what: str, run_id: str, steps: Sequence[str] | None = None
) -> int:
    """`what`: a day (the daily pipeline of that day, or only its `steps`), `maintain`, or
    `erase:<customer id>`."""
    from lakehouse.core import progress
    from lakehouse.core.spark import get_spark, stop_spark
    from lakehouse.ops.erasure import erase
    from lakehouse.ops.maintenance import maintain
    from lakehouse.pipeline import STEPS, run_pipeline

    progress.enable()  # the run's progress lines (and any wait for the lock) in its log
    lh = _lakehouse(work, lake)
    spark = get_spark(lh.config.spark, app_name=f"chaos-{run_id}")
    try:
        if what == "maintain":
            maintain(spark, lh, run_id=run_id)
        elif what.startswith("erase:"):
            erase(spark, lh, what.partition(":")[2], request_id=run_id)
        else:
            run_pipeline(spark, lh, run_id, steps=steps or STEPS, dates=[what])
    finally:
        stop_spark(spark)
    return 0


def _start(
    work: Path,
    lake: str,
    what: str,
    run_id: str,
    crash: str | None = None,
    steps: Sequence[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `what` (see `run_once`) on `lake` in a new process (and process group), its output
    in `<work>/<lake>-<run_id>.log`; with `crash`, it ends at that crash point."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash:
        env[CRASH_ENV] = crash
    env.setdefault("LAKEHOUSE_PII_HMAC_KEY", "chaos-only-key-not-a-secret")
    command = [sys.executable, "-m", "lakehouse_dev.chaos", "run", str(work), lake, what, run_id]
    if steps:
        command += ["--steps", ",".join(steps)]
    with (work / f"{lake}-{run_id}.log").open("w") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)


def _run(
    work: Path,
    lake: str,
    what: str,
    run_id: str,
    crash: str | None = None,
    kill_after: float = 0,
    steps: Sequence[str] | None = None,
) -> tuple[int, float]:
    """Run `what` (see `run_once`) on `lake` in a new process: (its status, seconds); with
    `crash`, ended at that crash point; with `kill_after`, killed (SIGKILL, the whole process
    group) after that many seconds unless it finished first."""
    started = time.perf_counter()
    process = _start(work, lake, what, run_id, crash, steps)
    try:
        status = process.wait(timeout=kill_after or None)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        status = process.wait()
    return status, time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Checks


def _bronze_counted(spark: Any, lh: Lakehouse) -> dict[str, tuple[int, int]]:
    """Per source, the records bronze's ledger rows count written and quarantined over every
    run."""
    from pyspark.sql import functions as F

    from lakehouse.state.ledger import read_ledger

    rows = (
        read_ledger(spark, lh)
        .where(F.col("layer") == "bronze")
        .groupBy("table_name")
        .agg(F.sum("records_written").alias("written"), F.sum("quarantined").alias("quarantined"))
        .collect()
    )
    return {r["table_name"]: (int(r["written"] or 0), int(r["quarantined"] or 0)) for r in rows}


def _bronze_held(spark: Any, lh: Lakehouse) -> dict[str, tuple[int, int]]:
    """Per source, the rows of its bronze table and its bronze rows in the quarantine."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    quarantined: dict[str, int] = {}
    if DeltaTable.isDeltaTable(spark, lh.path("quarantine.records")):
        records = spark.read.format("delta").load(lh.path("quarantine.records"))
        for r in records.where(F.col("layer") == "bronze").groupBy("source").count().collect():
            quarantined[r["source"]] = int(r["count"])
    out = {}
    for source in lh.sources:
        path = lh.path(f"bronze.{source}")
        if DeltaTable.isDeltaTable(spark, path):
            rows = spark.read.format("delta").load(path).count()
            out[source] = (rows, quarantined.get(source, 0))
    return out


def _miscounted(spark: Any, lh: Lakehouse) -> list[str]:
    """Sources whose bronze ledger rows, summed over every run, do not count each record bronze
    holds once as written and each record it quarantined once as quarantined."""
    held, counted = _bronze_held(spark, lh), _bronze_counted(spark, lh)
    return sorted(s for s in held if counted.get(s, (0, 0)) != held[s])


def _published_gold(spark: Any, lh: Lakehouse) -> dict[str, dict[str, Any]]:
    from lakehouse.gold.published import published_versions, read_gold
    from lakehouse_dev.fingerprint import frame_fingerprint

    published = published_versions(spark, lh)
    return {t: frame_fingerprint(read_gold(spark, lh, t, published)) for t in lh.gold}


def _versions(spark: Any, root: Path) -> dict[str, int]:
    """`layer.table` -> version, for every bronze and silver Delta table under `root`."""
    from lakehouse.core.delta_io import current_version

    return {
        f"{layer}.{table.name}": current_version(spark, str(table))
        for layer in ("bronze", "silver")
        if (root / layer).is_dir()
        for table in sorted((root / layer).iterdir())
        if (table / "_delta_log").is_dir()
    }


@dataclass
class Reference:
    day1_gold: dict[str, dict[str, Any]]
    final: dict[str, dict[str, Any]]
    day2_seconds: float
    versions: dict[str, int] = field(default_factory=dict)
    # For the maintenance and erasure trials: gold as readers see it after day 2, the customer
    # erased, and every table after that erasure run uninterrupted.
    day2_gold: dict[str, dict[str, Any]] = field(default_factory=dict)
    customer: str = ""
    erased: dict[str, dict[str, Any]] = field(default_factory=dict)


def _generate(work: Path, lh: Lakehouse) -> None:
    """The trials' landing zone: two small days, every defect on."""
    from lakehouse_dev.generate import generate_landing

    spec = replace(lh.config.generator, customers=30, days=len(DAYS), orders_per_day=15)
    generate_landing(str(work / "landing"), spec, overwrite=True)


def build_reference(spark: Any, work: Path) -> Reference:
    from lakehouse_dev.fingerprint import lakehouse_fingerprints

    lh = _lakehouse(work, "day1")
    _generate(work, lh)
    status, _ = _run(work, "day1", DAYS[0], "run-1")
    if status != 0:
        raise RuntimeError(f"the reference run of {DAYS[0]} failed: see {work}/day1-run-1.log")
    day1_gold = _published_gold(spark, lh)
    shutil.copytree(work / "day1", work / "reference")
    status, seconds = _run(work, "reference", DAYS[1], "run-2")
    if status != 0:
        raise RuntimeError(f"the reference run of {DAYS[1]} failed: see {work}/reference-run-2.log")
    final = lakehouse_fingerprints(spark, str(work / "reference"))
    return Reference(day1_gold, final, seconds, _versions(spark, work / "reference"))


def build_ops_reference(spark: Any, work: Path, ref: Reference) -> None:
    """Complete `ref` for the maintenance and erasure trials: day 2's published gold, a
    customer with orders, and the lakehouse after erasing them uninterrupted."""
    from lakehouse_dev.fingerprint import lakehouse_fingerprints

    lh = _lakehouse(work, "reference")
    ref.day2_gold = _published_gold(spark, lh)
    first = spark.read.format("delta").load(lh.path("silver.orders")).orderBy("order_id").first()
    ref.customer = first["customer_id"]
    shutil.rmtree(work / "erased", ignore_errors=True)
    shutil.copytree(work / "reference", work / "erased")
    status, _ = _run(work, "erased", f"erase:{ref.customer}", "erase-1")
    if status != 0:
        raise RuntimeError(f"the reference erasure failed: see {work}/erased-erase-1.log")
    ref.erased = lakehouse_fingerprints(spark, str(work / "erased"))


def run_trial(spark: Any, work: Path, ref: Reference, name: str, kill_after: float = 0) -> Trial:

    trial = Trial(name)
    lake = "trial-" + name.replace("#", "-").replace("@", "-").replace(".", "_")
    shutil.rmtree(work / lake, ignore_errors=True)
    shutil.copytree(work / "day1", work / lake)
    started = time.perf_counter()
    crash = None if kill_after else name
    trial.crashed_status, _ = _run(work, lake, DAYS[1], "run-2", crash=crash, kill_after=kill_after)
    lh = _lakehouse(work, lake)
    expected = -signal.SIGKILL if kill_after else CRASH_STATUS
    trial.reached = trial.crashed_status == expected
    if trial.crashed_status != 0:
        from lakehouse.gold.published import latest_versions, published_versions

        seen = _published_gold(spark, lh)
        trial.half_published = sorted(t for t in seen if seen[t] != ref.day1_gold[t])
        published, latest = published_versions(spark, lh), latest_versions(spark, lh)
        trial.unpublished = sorted(t for t in latest if latest[t] != published.get(t))
    trial.rerun_status, _ = _run(work, lake, DAYS[1], "run-2-again")
    if trial.rerun_status == 0:
        _compare(spark, work, lake, ref, trial)
    trial.seconds = time.perf_counter() - started
    return trial


def _compare(spark: Any, work: Path, lake: str, ref: Reference, trial: Trial) -> None:
    """After the rerun: the tables against the reference's, the ledger against bronze, the
    bronze and silver versions against the reference's (`Trial` says what each means)."""
    from lakehouse_dev.fingerprint import lakehouse_fingerprints

    found = lakehouse_fingerprints(spark, str(work / lake))
    trial.different = sorted(
        t for t in set(found) | set(ref.final) if found.get(t) != ref.final.get(t)
    )
    trial.miscounted = _miscounted(spark, _lakehouse(work, lake))
    found_versions = _versions(spark, work / lake)
    trial.extra_commits = sorted(
        t for t in ref.versions if found_versions.get(t) != ref.versions[t]
    )


# ---------------------------------------------------------------------------------------------
# The quick trials of `make test`: bronze alone, the reference and reruns in the caller's session

BRONZE_POINTS = ("bronze.written", "bronze.counted")


def build_bronze_reference(spark: Any, work: Path) -> Reference:
    """The reference of the bronze-only trials: day 1's bronze step, then day 2's, run in
    `spark` (no process of their own: a warm session runs them in seconds)."""
    from lakehouse.pipeline import run_pipeline
    from lakehouse_dev.fingerprint import lakehouse_fingerprints

    day1 = _lakehouse(work, "day1")
    _generate(work, day1)
    run_pipeline(spark, day1, "run-1", steps=["bronze"], dates=[DAYS[0]], register=False)
    shutil.copytree(work / "day1", work / "reference")
    started = time.perf_counter()
    reference = _lakehouse(work, "reference")
    run_pipeline(spark, reference, "run-2", steps=["bronze"], dates=[DAYS[1]], register=False)
    seconds = time.perf_counter() - started
    final = lakehouse_fingerprints(spark, str(work / "reference"))
    return Reference({}, final, seconds, _versions(spark, work / "reference"))


def run_bronze_trial(spark: Any, work: Path, ref: Reference, point: str) -> Trial:
    """Day 2's bronze step killed at `point` (one of `BRONZE_POINTS`, around its ledger rows) in
    a process of its own, then run again in `spark`: bronze, the quarantine and the ledger must
    be as the uninterrupted step left them (`build_bronze_reference`)."""
    from lakehouse.pipeline import run_pipeline

    trial = Trial(f"bronze:{point}")
    lake = "bronze-" + point.replace(".", "_")
    shutil.rmtree(work / lake, ignore_errors=True)
    shutil.copytree(work / "day1", work / lake)
    started = time.perf_counter()
    trial.crashed_status, _ = _run(work, lake, DAYS[1], "run-2", crash=point, steps=["bronze"])
    trial.reached = trial.crashed_status == CRASH_STATUS
    lh = _lakehouse(work, lake)
    run_pipeline(spark, lh, "run-2-again", steps=["bronze"], dates=[DAYS[1]], register=False)
    trial.rerun_status = 0
    _compare(spark, work, lake, ref, trial)
    trial.seconds = time.perf_counter() - started
    return trial


def run_ops_trial(spark: Any, work: Path, ref: Reference, point: str) -> Trial:
    """`lakehouse maintain` or `lakehouse erase` on the finished day 2, killed at `point`
    (`maintain.*` or `erase.*`), then run again: readers' gold must not have moved while it
    was stopped, and the tables must equal the command's uninterrupted result."""
    from lakehouse_dev.fingerprint import lakehouse_fingerprints

    trial = Trial(point)
    lake = "trial-" + point.replace("#", "-").replace(".", "_")
    shutil.rmtree(work / lake, ignore_errors=True)
    shutil.copytree(work / "reference", work / lake)
    what = "maintain" if point.startswith("maintain.") else f"erase:{ref.customer}"
    expected = ref.final if what == "maintain" else ref.erased
    started = time.perf_counter()
    trial.crashed_status, _ = _run(work, lake, what, "op-1", crash=point)
    trial.reached = trial.crashed_status == CRASH_STATUS
    lh = _lakehouse(work, lake)
    seen = _published_gold(spark, lh)
    trial.half_published = sorted(t for t in seen if seen[t] != ref.day2_gold[t])
    trial.rerun_status, _ = _run(work, lake, what, "op-2")
    if trial.rerun_status == 0:
        found = lakehouse_fingerprints(spark, str(work / lake))
        trial.different = sorted(
            t for t in set(found) | set(expected) if found.get(t) != expected.get(t)
        )
    trial.seconds = time.perf_counter() - started
    return trial


def run_concurrent_trial(spark: Any, work: Path, ref: Reference, name: str) -> Trial:
    """Two pipelines started at once on one lakehouse, each in its own process:
    `concurrent.same-day` runs day 2 twice on the day-1 lakehouse, `concurrent.two-days` runs
    day 1 and day 2 on an empty one. Both must finish (one waits for the other's run lock and
    says so in its log) and leave every table as the uninterrupted runs did, the ledger counting
    each bronze record once. `rerun_status` is the worse of the two statuses."""
    from lakehouse_dev.fingerprint import lakehouse_fingerprints

    trial = Trial(name)
    lake = "trial-" + name.replace(".", "_").replace("-", "_")
    shutil.rmtree(work / lake, ignore_errors=True)
    if name == "concurrent.same-day":
        shutil.copytree(work / "day1", work / lake)
        runs = [(DAYS[1], "run-a"), (DAYS[1], "run-b")]
    elif name == "concurrent.two-days":
        runs = [(DAYS[0], "run-a"), (DAYS[1], "run-b")]
    else:
        raise ValueError(f"unknown concurrent trial {name!r}")
    started = time.perf_counter()
    processes = [_start(work, lake, day, run_id) for day, run_id in runs]
    statuses = [p.wait() for p in processes]
    trial.crashed_status = None
    trial.rerun_status = max(statuses, key=abs)
    logs = [(work / f"{lake}-{run_id}.log").read_text() for _, run_id in runs]
    # Exactly one of them found the other holding the lock.
    trial.reached = sum("waiting for the lakehouse lock" in log for log in logs) == 1
    if trial.rerun_status == 0:
        lh = _lakehouse(work, lake)
        found = lakehouse_fingerprints(spark, str(work / lake))
        trial.different = sorted(
            t for t in set(found) | set(ref.final) if found.get(t) != ref.final.get(t)
        )
        trial.miscounted = _miscounted(spark, lh)
    trial.seconds = time.perf_counter() - started
    return trial


CONCURRENT = ("concurrent.same-day", "concurrent.two-days")


def _forget(spark: Any) -> None:
    """Drop what the checks left cached: Delta keeps the log of every table it has read (about
    thirty a trial), which filled the checking session's heap after a dozen trials."""
    from lakehouse.core.spark import clear_caches

    clear_caches(spark)


def run_suite(
    spark: Any, work: Path, points: Sequence[str], random_kills: int, seed: int
) -> tuple[Reference, list[Trial]]:
    """The reference, then a trial per crash point and `random_kills` kills at moments drawn
    (seeded) between 3 s and 90% of an uninterrupted day-2 run; checks in `spark`."""
    work.mkdir(parents=True, exist_ok=True)
    ref = build_reference(spark, work)
    trials = []
    ops = [p for p in points if p.startswith(("maintain.", "erase."))]
    if ops:
        build_ops_reference(spark, work, ref)
    for point in points:
        if point in CONCURRENT:
            trials.append(run_concurrent_trial(spark, work, ref, point))
        elif point in ops:
            trials.append(run_ops_trial(spark, work, ref, point))
        else:
            trials.append(run_trial(spark, work, ref, point))
        print(trials[-1].describe(), flush=True)
        _forget(spark)
    rng = random.Random(seed)
    for _ in range(random_kills):
        after = round(rng.uniform(3, 0.9 * ref.day2_seconds), 1)
        trials.append(run_trial(spark, work, ref, f"kill@{after}", kill_after=after))
        print(trials[-1].describe(), flush=True)
        _forget(spark)
    return ref, trials


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse_dev.chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("run", help="one run of one day (what each trial starts)")
    one.add_argument("work", type=Path)
    one.add_argument("lake")
    one.add_argument("what", help="a day, `maintain` or `erase:<customer id>`")
    one.add_argument("run_id")
    one.add_argument("--steps", help="only these steps of the day's run (comma-separated)")
    parser.add_argument("--work", type=Path, default=Path("bench-data/chaos"))
    parser.add_argument(
        "--points",
        nargs="*",
        default=[*OPS_POINTS, *RUN_POINTS, *CONCURRENT],
        help="crash points to trial (and the concurrent-run trials, `concurrent.*`)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=20,
        help="crash trials: the crash points given, then random kills up to this number",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the trials as JSON here")
    args = parser.parse_args(argv)
    if args.command == "run":
        steps = args.steps.split(",") if args.steps else None
        return run_once(args.work, args.lake, args.what, args.run_id, steps)
    from lakehouse.core.spark import get_spark, stop_spark

    crashes = [p for p in args.points if p not in CONCURRENT]
    kills = max(0, args.trials - len(crashes))
    # The project's local settings, with room for the checks' fingerprints (every row of every
    # table of a trial is collected; a trial at a time).
    settings = _lakehouse(args.work, "reference").config.spark
    spark = get_spark(replace(settings, driver_memory="4g"), app_name="chaos-checks")
    try:
        ref, trials = run_suite(spark, args.work, args.points, kills, args.seed)
    finally:
        stop_spark(spark)
    passed = sum(t.ok for t in trials)
    print(
        f"crash suite: {passed} of {len(trials)} trials identical after the rerun "
        f"(seed {args.seed}; an uninterrupted day-2 run took {ref.day2_seconds:.0f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps([t.__dict__ for t in trials], indent=1) + "\n")
    return 0 if passed == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
