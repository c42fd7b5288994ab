"""The benchmark's measurements, all in one process and one Spark session (issue #8).

Data preparation (not timed as a figure), under `<data>/<scale>/`:

1. `landing/`: two days of the real generator (`GeneratorSpec(seed=42, days=2, ...)`, default
   defects). Day 1 is "yesterday", day 2 the measured day.
2. `p0/`: the lakehouse after day 1 went through the whole pipeline (bronze, silver, quality,
   gold). Every pipeline measurement starts from a fresh copy of it.
3. `m0/`: a copy of `p0/` whose bronze also holds day 2 of orders, order_items and payments (the
   real bronze step over a landing root with only those three sources), silver not yet applied.
4. `h<small>/`, `h<large>/`: `m0/` plus synthetic silver history appended before day 1
   (`lakehouse_dev.bench.history`), so silver holds `small` and `large` days.

Copies are taken with `copy_table_dir`: data files are hard-linked (Delta never changes a data
file once written), everything else (the Delta logs, checkpoints, the Deequ metrics file) is
copied, so a measurement never changes a template.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core.config import Config, load_config
from lakehouse_dev.bench.history import append_history
from lakehouse_dev.bench.memory import PeakMemory
from lakehouse_dev.generate import GeneratorSpec, generate_landing

MERGE_TABLES = ("orders", "order_items", "payments")
ALL_STEPS = ("bronze", "silver", "quality", "gold")
DAY1 = date(2024, 1, 1)
DAY2 = DAY1 + timedelta(days=1)


@dataclass(frozen=True)
class Scale:
    """How big a benchmark run is. `history_days` are the two silver histories compared."""

    name: str
    orders_per_day: int
    customers: int
    reps: int
    history_days: tuple[int, int] = (5, 50)
    # The day the whole-pipeline figures run (None: the same as `orders_per_day`).
    pipeline_orders_per_day: int | None = None
    # Repetitions of the whole-pipeline figures (None: `reps`).
    pipeline_reps: int | None = None
    # Spark driver memory (None: the configuration's, conf/base.yaml).
    driver_memory: str | None = None
    # The whole-pipeline figures run day 1 into an empty lakehouse instead of day 2 on top of
    # day 1: the quick check needs no setup run of day 1, and its merge template starts from
    # the lakehouse the first run left (docs/BENCHMARKS.md).
    pipeline_first_day: bool = False

    @property
    def pipeline_orders(self) -> int:
        return self.pipeline_orders_per_day or self.orders_per_day

    @property
    def shares_landing(self) -> bool:
        """The whole-pipeline figures run on the history figures' landing (the same days)."""
        return self.pipeline_orders == self.orders_per_day


SCALES = {
    # A quick check of every code path: one repetition, the whole-pipeline figures on day 1 (a
    # pipeline run of even a small day costs over a minute of fixed Spark and Delta work on 2
    # cores, docs/BENCHMARKS.md; day 2 would need day 1 run first).
    "small": Scale("small", orders_per_day=2_000, customers=2_000, reps=1, pipeline_first_day=True),
    # A 4g driver: with the configured 2g, preparing the merge template (bronze of the
    # 100k-order day 2, after day 1 went through bronze and silver in the same process) ran out
    # of heap (docs/BENCHMARKS.md, Findings).
    "default": Scale(
        "default",
        orders_per_day=100_000,
        customers=100_000,
        reps=3,
        pipeline_orders_per_day=20_000,
        driver_memory="4g",
    ),
    # For working on the benchmark itself: every code path, minimal data, one repetition.
    "smoke": Scale(
        "smoke",
        orders_per_day=200,
        customers=200,
        reps=1,
        history_days=(2, 4),
        pipeline_first_day=True,
    ),
}


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def copy_table_dir(src: Path, dst: Path) -> None:
    """A copy of a lakehouse folder that shares the immutable data files (hard links) and owns
    everything else."""
    if dst.exists():
        shutil.rmtree(dst)

    def copy(s: str, d: str) -> None:
        if s.endswith(".parquet") and "_delta_log" not in s:
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy)


def data_files(root: Path, layers: tuple[str, ...] = ("bronze", "silver", "gold")) -> set[str]:
    """Data files of the Delta tables of `layers` (paths relative to `root`)."""
    found = set()
    for layer in layers:
        base = root / layer
        if not base.exists():
            continue
        for p in base.rglob("*.parquet"):
            if "_delta_log" not in p.parts:
                found.add(str(p.relative_to(root)))
    return found


def delta_commits(root: Path) -> int:
    """Commits in every Delta log under `root` (its `_delta_log/<version>.json` files)."""
    return sum(1 for _ in root.rglob("_delta_log/*.json"))


@contextmanager
def work_counted(spark: SparkSession, root: Path, label: str) -> Iterator[dict[str, int]]:
    """Counts the Spark jobs started inside (by job group, on this thread) and the Delta commits
    made under `root`: where the time of a small day goes is mostly the number of each."""
    sc = spark.sparkContext
    group = f"bench-{label}"
    commits_before = delta_commits(root)
    out: dict[str, int] = {}
    sc.setJobGroup(group, label)
    try:
        yield out
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        out["spark_jobs"] = len(sc.statusTracker().getJobIdsForGroup(group))
        out["delta_commits"] = delta_commits(root) - commits_before


@contextmanager
def timed() -> Iterator[list[float]]:
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)


class Bench:
    """One benchmark run: prepares the data, takes the measurements, returns the results dict
    that `lakehouse_dev.bench.report` renders."""

    def __init__(
        self,
        scale: Scale,
        data_root: Path,
        command: str,
        reps: int | None = None,
        *,
        driver_memory: str | None = None,
        only: tuple[str, ...] = ("history", "peer", "pipeline"),
        resume: bool = False,
    ):
        self.scale = scale
        self.reps = reps or scale.reps
        self.root = data_root.resolve() / scale.name
        self.command = command
        driver_memory = driver_memory or scale.driver_memory
        self.spark_overrides = {"driver_memory": driver_memory} if driver_memory else {}
        self.only = only
        self.resume = resume
        self.base_config = load_config("local", overrides={"spark": self.spark_overrides})
        self.figures: dict[str, Any] = {}
        self.details: list[str] = []
        self.spark: SparkSession | None = None
        self.memory = PeakMemory()
        self._seq = 0
        self._merge_prepared = False
        self._p0_ready = False

    # --- configuration and helpers -----------------------------------------------------------

    def config(self, lakehouse: str, landing: str = "landing") -> Config:
        return load_config(
            "local",
            overrides={
                "spark": self.spark_overrides,
                "storage": {
                    "landing_root": str(self.root / landing),
                    "lakehouse_root": str(self.root / lakehouse),
                    "reports_root": str(self.root / f"{lakehouse}-reports"),
                },
            },
        )

    def run_id(self, what: str) -> str:
        self._seq += 1
        return f"bench-{self._seq:03d}-{what}"

    def fresh(self, template: str, work: str, landing: str = "landing") -> Config:
        self.forget()
        copy_table_dir(self.root / template, self.root / work)
        shutil.rmtree(self.root / f"{work}-reports", ignore_errors=True)
        return self.config(work, landing)

    def forget(self) -> None:
        """Start the next measurement as a new daily job would: nothing cached from the ones
        before. Delta keeps every table's log and newest snapshot it has opened (the run opens
        some 30 tables in each of ~20 lakehouse copies); without this one process running every
        figure ran out of its 4g heap in the pipeline phase, while a fresh process did not."""
        assert self.spark is not None
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        self.spark.catalog.clearCache()
        jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
        jvm.java.lang.System.gc()

    # --- the run -------------------------------------------------------------------------------

    def run(self, on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Prepare, measure every figure, return the results; `on_progress` gets the results so
        far after each figure (so a run stopped half-way still leaves what it measured)."""
        from lakehouse.core.spark import get_spark, stop_spark

        self.started = datetime.now(UTC)
        self.t0 = time.perf_counter()
        self.load_start = _load()
        self.versions: dict[str, str] = {}
        os.environ.setdefault("LAKEHOUSE_PII_HMAC_KEY", "bench-only-key-not-a-secret")
        with self.memory:
            self.memory.mark("startup")
            # A run out of heap stops at once instead of hanging (the Python side would wait).
            spark = get_spark(
                self.base_config.spark,
                app_name="lakehouse-bench",
                extra={
                    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC "
                    "-XX:+ExitOnOutOfMemoryError",
                    # Jobs are counted by job group from the status store, which keeps 1,000 jobs
                    # by default: a first run of a day makes more, so its count was cut short.
                    "spark.ui.retainedJobs": "100000",
                    # Each SQL execution kept holds its plan text and graph (MERGE and Deequ plans
                    # are large); nothing here reads them.
                    "spark.sql.ui.retainedExecutions": "20",
                },
            )
            self.spark = spark
            self.versions = _versions(spark)
            try:
                self.memory.mark("prepare")
                self.prepare()
                steps: list[tuple[str, Callable[[], None]]] = [
                    ("history", self.measure_history),
                    ("peer", self.measure_peer),
                    ("pipeline", self.measure_pipeline),
                ]
                if self.scale.pipeline_first_day:
                    # Its first run of day 1 leaves the lakehouse the merge template starts from.
                    steps = steps[2:] + steps[:2]
                for name, step in steps:
                    if name not in self.only:
                        self.figures[name] = {"error": "not measured in this run (--only)"}
                        if name == "pipeline":
                            self.figures["replay"] = dict(self.figures[name])
                        continue
                    if name in ("history", "peer"):
                        self.memory.mark("prepare")
                        self.prepare_merge()
                    self.memory.mark(name)
                    try:
                        step()
                    except Exception as exc:  # a failed figure is reported, the others still run
                        log(f"{name} failed: {exc!r}")
                        error = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                        self.figures.setdefault(name, {})["error"] = error
                        if name == "pipeline":
                            self.figures.setdefault("replay", {})["error"] = error
                    if on_progress is not None:
                        on_progress(self.results())
            finally:
                stop_spark(spark)
        return self.results()

    def results(self) -> dict[str, Any]:
        """Everything measured so far, as `lakehouse_dev.bench.report` reads it."""
        figures = dict(self.figures)
        figures["memory"] = {
            "peak_rss_bytes": self.memory.peak,
            "peak_rss_sum_bytes": self.memory.peak_rss,
            "measure": "PSS sum" if self.memory.peak != self.memory.peak_rss else "RSS sum",
            "interval_s": self.memory.interval_s,
            "phases": dict(self.memory.phases),
            "peak_parts": dict(self.memory.peak_parts),
        }
        load_end = _load()
        cfg = self.base_config.spark
        return {
            "scale": self.scale.name,
            "command": self.command,
            "started_at": f"{self.started:%Y-%m-%d %H:%M}",
            "finished_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
            "wall_s": round(time.perf_counter() - self.t0, 1),
            "machine": {
                "cores": os.cpu_count(),
                "memory_gib": _memory_gib(),
                "os": platform.platform(terse=True),
                "load_start": self.load_start,
                "load_end": load_end,
                # Only the load before the run started is someone else's: the benchmark itself
                # keeps both cores busy, so the load at its end says nothing about others.
                "busy": self.load_start[0] > (os.cpu_count() or 1) * 0.5,
                **self.versions,
            },
            "params": {
                "orders_per_day": self.scale.orders_per_day,
                "pipeline_orders_per_day": self.scale.pipeline_orders,
                # Which day the whole-pipeline figures run: 2 on top of day 1, or 1 into an
                # empty lakehouse (the quick check).
                "pipeline_day": 1 if self.scale.pipeline_first_day else 2,
                "customers": self.scale.customers,
                "seed": self.base_config.generator.seed,
                "reps": self.reps,
                "pipeline_reps": self.scale.pipeline_reps or self.reps,
                "history_days": list(self.scale.history_days),
                "master": cfg.master,
                "driver_memory": cfg.driver_memory,
                "shuffle_partitions": cfg.shuffle_partitions,
            },
            "figures": figures,
            "details": list(self.details),
        }

    # --- preparation ---------------------------------------------------------------------------

    def generate(self, folder: str, orders_per_day: int) -> None:
        """Two days of the real generator (its default defects) into `folder`."""
        spec = replace(
            self.base_config.generator,
            customers=self.scale.customers,
            orders_per_day=orders_per_day,
            days=2,
            start_date=DAY1,
        )
        log(f"generating 2 days of {orders_per_day:,} orders into {folder}/")
        with timed() as t:
            summary = generate_landing(self.root / folder, spec, overwrite=True)
        self.details.append(
            f"`{folder}/`: 2 days of {orders_per_day:,} orders generated in {t[0]:.1f} s; "
            f"{_lines_of_day(self.root / folder, DAY2):,} landed lines on day 2; records per "
            "source (both days): " + ", ".join(f"{k} {v:,}" for k, v in summary.records.items())
        )

    def prepare(self) -> None:
        """A clean data folder (unless resumed) and the generated landing files."""
        if self.root.exists() and not self.resume:
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.stage_done("landing"):
            self.generate("landing", self.scale.orders_per_day)
            self.mark_done("landing")

    def prepare_merge(self) -> None:
        """The merge templates: bronze and silver of orders, order_items and payments after
        day 1 (the real steps, ledger recorded), bronze of day 2, then synthetic older days."""
        from lakehouse.pipeline import run_bronze

        if self._merge_prepared:
            return
        assert self.spark is not None
        if not self.stage_done("m0-day1"):
            self.prepare_day1()
            self.mark_done("m0-day1")
        if not self.stage_done("m0"):
            cfg = self.config("m0", "landing-merge")
            log("day 2 of orders, order_items, payments into bronze (m0)")
            with timed() as t:
                run_bronze(self.spark, cfg, self.run_id("m0-bronze2"), [str(DAY2)])
            self.details.append(f"merge template: day 2 into bronze: {t[0]:.1f} s")
            self.mark_done("m0")
        if not self.stage_done("history"):
            self.prepare_history()
            self.mark_done("history")
        self._merge_prepared = True

    def ensure_p0(self, landing: str) -> None:
        """`p0/`: the lakehouse after day 1 went through the whole pipeline, unless a first run
        of day 1 (or a resumed run) left it."""
        from lakehouse.pipeline import run_pipeline

        if self._p0_ready or self.stage_done("p0"):
            return
        assert self.spark is not None
        shutil.rmtree(self.root / "p0", ignore_errors=True)
        log("day 1 through the whole pipeline (p0)")
        with timed() as t:
            run_pipeline(
                self.spark, self.config("p0", landing), self.run_id("day1"), ALL_STEPS, [str(DAY1)]
            )
        self.details.append(f"day 1 through the whole pipeline (setup of p0): {t[0]:.1f} s")
        self.keep_p0()

    def keep_p0(self, lakehouse: str | None = None) -> None:
        """`lakehouse` (already built by a first run of day 1) is `p0/` from now on."""
        if lakehouse is not None:
            copy_table_dir(self.root / lakehouse, self.root / "p0")
        self._p0_ready = True
        self.mark_done("p0")

    def stage_done(self, stage: str) -> bool:
        """With `--resume`, a preparation stage a previous run of this scale finished is kept."""
        return self.resume and (self.root / f".{stage}.done").exists()

    def mark_done(self, stage: str) -> None:
        (self.root / f".{stage}.done").touch()

    def prepare_day1(self) -> None:
        from lakehouse.core.specs import load_tables
        from lakehouse.pipeline import run_bronze
        from lakehouse.silver import engine as silver
        from lakehouse.state.ledger import record

        assert self.spark is not None
        spark = self.spark
        shutil.rmtree(self.root / "m0", ignore_errors=True)
        shutil.rmtree(self.root / "landing-merge", ignore_errors=True)
        merge_landing = self.root / "landing-merge"
        for source in MERGE_TABLES:
            src = self.root / "landing" / source
            for f in src.rglob("*"):
                if f.is_file():
                    target = merge_landing / source / f.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(f, target)
        if self.scale.shares_landing:
            # The whole-pipeline figures need day 1 through every step anyway: start from it.
            self.ensure_p0("landing")
            copy_table_dir(self.root / "p0", self.root / "m0")
            self.details.append(
                "merge template: the lakehouse after day 1 went through the whole pipeline (p0)"
            )
            return
        specs = {n: s for n, s in load_tables().items() if n in MERGE_TABLES}
        cfg = self.config("m0", "landing-merge")
        log("day 1 of orders, order_items, payments through bronze and silver (m0)")
        with timed() as t:
            run_bronze(spark, cfg, self.run_id("m0-bronze1"), [str(DAY1)])
            record(spark, cfg.storage.lakehouse_root, silver.apply(spark, cfg, "m0-silver1", specs))
        self.details.append(
            f"merge template: day 1 of the three tables through bronze and silver: {t[0]:.1f} s"
        )

    def prepare_history(self) -> None:
        from lakehouse.core.specs import load_tables

        assert self.spark is not None
        spark = self.spark
        specs = {n: s for n, s in load_tables().items() if n in MERGE_TABLES}

        small, large = self.scale.history_days
        log(f"synthetic silver history: {small} and {large} days")
        with timed() as t:
            copy_table_dir(self.root / "m0", self.root / f"h{small}")
            cfg = self.config(f"h{small}")
            paths = {n: cfg.table_path("silver", n) for n in specs}
            append_history(spark, specs, paths, DAY1, small - 1, self.scale.orders_per_day)
            copy_table_dir(self.root / f"h{small}", self.root / f"h{large}")
            cfg = self.config(f"h{large}")
            paths = {n: cfg.table_path("silver", n) for n in specs}
            append_history(
                spark,
                specs,
                paths,
                DAY1 - timedelta(days=small - 1),
                large - small,
                self.scale.orders_per_day,
            )
        self.details.append(
            f"synthetic history ({small - 1} + {large - small} days of "
            f"{self.scale.orders_per_day:,} orders, their items and payments) written in "
            f"{t[0]:.1f} s; silver sizes: "
            + "; ".join(
                f"{d} days: " + ", ".join(f"{n} {self._count(f'h{d}', n):,}" for n in specs)
                for d in (small, large)
            )
        )

    def _count(self, lakehouse: str, table: str) -> int:
        assert self.spark is not None
        return (
            self.spark.read.format("delta")
            .load(self.config(lakehouse).table_path("silver", table))
            .count()
        )

    # --- history independence ------------------------------------------------------------------

    def measure_history(self) -> None:
        from lakehouse.core.specs import load_tables
        from lakehouse.silver import engine as silver

        assert self.spark is not None
        spark = self.spark
        small, large = self.scale.history_days
        specs = {n: s for n, s in load_tables().items() if n in MERGE_TABLES}
        samples: dict[int, list[float]] = {small: [], large: []}
        metrics: dict[int, dict[str, dict[str, int]]] = {}
        for rep in range(self.reps):
            order = (small, large) if rep % 2 == 0 else (large, small)
            for days in order:
                cfg = self.fresh(f"h{days}", "work-merge")
                run_id = self.run_id(f"merge{days}")
                paths = {n: cfg.table_path("silver", n) for n in specs}
                before = _versions_now(spark, paths)
                log(f"history rep {rep + 1}/{self.reps}: silver MERGE with {days} days")
                with timed() as t:
                    entries = silver.apply(spark, cfg, run_id, specs)
                samples[days].append(t[0])
                log(f"  {t[0]:.1f} s")
                metrics[days] = {n: _merge_metrics(spark, paths[n], before[n]) for n in specs}
                for e in entries:
                    metrics[days][e.table_name].update(
                        inserted=e.inserted or 0, updated=e.updated or 0, deleted=e.deleted or 0
                    )
                if days == large and not (self.root / "peer-source").exists():
                    self._save_peer_source(cfg, run_id, specs)
        self.figures["history"] = {
            "small_days": small,
            "large_days": large,
            "small": samples[small],
            "large": samples[large],
            "metrics": {str(k): v for k, v in metrics.items()},
        }
        for days in (small, large):
            m = metrics[days]
            self.details.append(
                f"silver MERGE commits with {days} days of history (last repetition): "
                + "; ".join(
                    f"{n}: " + ", ".join(f"{k} {v}" for k, v in m[n].items()) for n in specs
                )
            )

    def _save_peer_source(self, cfg: Config, run_id: str, specs: dict[str, Any]) -> None:
        """The rows the MERGE wrote (the deduplicated batch that won), one Parquet folder per
        table: the source both engines MERGE in the peer comparison."""
        assert self.spark is not None
        for name in specs:
            rows = self.spark.read.format("delta").load(cfg.table_path("silver", name))
            rows = rows.where(F.col("_run_id") == run_id)
            rows.coalesce(1).write.mode("overwrite").parquet(str(self.root / "peer-source" / name))

    # --- the peer engine -----------------------------------------------------------------------

    def measure_peer(self) -> None:
        from lakehouse.core.specs import load_tables
        from lakehouse_dev.bench import peer

        assert self.spark is not None
        large = self.scale.history_days[1]
        specs = {n: s for n, s in load_tables().items() if n in MERGE_TABLES}
        sources = {n: self.root / "peer-source" / n for n in specs}
        samples: dict[str, list[float]] = {"spark": [], "deltars": []}
        per_table: dict[str, dict[str, list[float]]] = {"spark": {}, "deltars": {}}
        notes: list[str] = []
        for rep in range(self.reps):
            order = ("spark", "deltars") if rep % 2 == 0 else ("deltars", "spark")
            for engine in order:
                cfg = self.fresh(f"h{large}", "work-peer")
                paths = {n: cfg.table_path("silver", n) for n in specs}
                log(f"peer rep {rep + 1}/{self.reps}: {engine}")
                if engine == "spark":
                    times = peer.spark_merges(self.spark, specs, paths, sources)
                else:
                    times, notes = peer.deltars_merges(specs, paths, sources)
                samples[engine].append(sum(times.values()))
                for n, s in times.items():
                    per_table[engine].setdefault(n, []).append(s)
                log(f"  {sum(times.values()):.1f} s")
        self.figures["peer"] = {
            "tables": list(specs),
            "history_days": large,
            **samples,
            "per_table": per_table,
            "notes": notes,
        }
        self.details.append(
            "peer engine: median seconds per table, Spark / delta-rs: "
            + ", ".join(
                f"{n} {_med(per_table['spark'][n]):.1f} / {_med(per_table['deltars'][n]):.1f}"
                for n in specs
            )
        )
        self.details.extend(notes)

    # --- the daily pipeline ----------------------------------------------------------------------

    def measure_pipeline(self) -> None:
        from lakehouse_dev.bench import daily

        daily.measure(self)


def _versions_now(spark: SparkSession, paths: dict[str, str]) -> dict[str, int]:
    from lakehouse.core.delta_io import current_version

    return {n: current_version(spark, p) for n, p in paths.items()}


def _merge_metrics(spark: SparkSession, path: str, after_version: int) -> dict[str, int]:
    """What the run's MERGE commits (every commit after `after_version`) did to the table at
    `path`, summed from their operationMetrics, with the table's file count after them."""
    from delta.tables import DeltaTable

    keep = (
        "numTargetFilesAdded",
        "numTargetFilesRemoved",
        "numTargetRowsCopied",
        "numTargetRowsUpdated",
        "numTargetRowsInserted",
        "numSourceRows",
    )
    table = DeltaTable.forPath(spark, path)
    total: dict[str, int] = dict.fromkeys(keep, 0)
    total["commits"] = 0
    for row in table.history().where(F.col("version") > after_version).collect():
        total["commits"] += 1
        metrics = row["operationMetrics"] or {}
        for k in keep:
            total[k] += int(metrics.get(k, 0))
    total["files_in_table"] = int(table.detail().first()["numFiles"])  # type: ignore[index]
    return total


def _lines_of_day(landing: Path, day: date) -> int:
    import gzip

    total = 0
    for p in landing.glob(f"*/ingest_date={day}/*"):
        opener = gzip.open if p.suffix == ".gz" else open
        try:
            with opener(p, "rb") as fh:
                total += sum(1 for _ in fh)
        except OSError:
            continue
    return total


def _med(samples: list[float]) -> float:
    from lakehouse_dev.bench.report import median

    return median(samples)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _memory_gib() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 1024**3, 1)


def _versions(spark: SparkSession) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    deequ = next(
        (j.name.removeprefix("deequ-").removesuffix(".jar") for j in _jars() if "deequ" in j.name),
        "?",
    )
    return {
        "python": platform.python_version(),
        "java": java.splitlines()[0].split('"')[1] if '"' in java else java.strip()[:40],
        "pyspark": spark.version,
        "delta_spark": pkg("delta-spark"),
        "deequ": deequ,
        "deltalake": pkg("deltalake"),
    }


def _jars() -> list[Path]:
    from lakehouse.core.spark import jars_dir

    d = jars_dir()
    return sorted(d.glob("*.jar")) if d.is_dir() else []


__all__ = ["SCALES", "Bench", "GeneratorSpec", "Scale", "copy_table_dir", "data_files"]
