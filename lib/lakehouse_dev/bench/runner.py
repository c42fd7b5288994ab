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

Copies are taken with `measure.copy_table_dir`: data files are hard-linked (Delta never changes
a data file once written), everything else (the Delta logs, checkpoints, the Deequ metrics file)
is copied, so a measurement never changes a template.

Each lakehouse folder is one `Lakehouse`: the local configuration and specs with its own storage
roots (`Bench.lakehouse`); the whole-pipeline figures are in `lakehouse_dev.bench.daily`.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.core.config import StorageConfig
from lakehouse.core.context import Lakehouse
from lakehouse.core.specs import TableSpec
from lakehouse_dev.bench import daily, lifetime
from lakehouse_dev.bench.history import append_history
from lakehouse_dev.bench.measure import copy_table_dir, log, timed
from lakehouse_dev.bench.memory import PeakMemory
from lakehouse_dev.bench.scales import ALL_STEPS, DAY1, DAY2, MERGE_TABLES, Scale
from lakehouse_dev.bench.steps import SESSION_SETTINGS
from lakehouse_dev.generate import generate_landing


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
        only: tuple[str, ...] = ("history", "peer", "pipeline", "lifetime"),
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
        # The local environment's configuration and specs; each lakehouse folder of the run is
        # this with its own storage roots (`lakehouse`).
        self.lh = Lakehouse.load("local", overrides={"spark": self.spark_overrides})
        # What the history and peer figures MERGE: orders, order_items and payments.
        self.merge_specs: Mapping[str, TableSpec] = self.lh.only(MERGE_TABLES).tables
        self.figures: dict[str, Any] = {}
        self.details: list[str] = []
        self.spark: SparkSession | None = None
        self.memory = PeakMemory()
        self._seq = 0
        self._merge_prepared = False
        self._p0_ready = False

    # --- configuration and helpers -----------------------------------------------------------

    def lakehouse(self, name: str, landing: str = "landing") -> Lakehouse:
        """The lakehouse in folder `name` of the run, reading the landing files of `landing`."""
        storage = StorageConfig(
            landing_root=str(self.root / landing),
            lakehouse_root=str(self.root / name),
            reports_root=str(self.root / f"{name}-reports"),
        )
        return self.lh.with_config(storage=storage)

    def silver_paths(self, lh: Lakehouse) -> dict[str, str]:
        """Where the merge tables' silver tables are in `lh`."""
        return {n: lh.path(f"silver.{n}") for n in self.merge_specs}

    def run_id(self, what: str) -> str:
        self._seq += 1
        return f"bench-{self._seq:03d}-{what}"

    def fresh(self, template: str, work: str, landing: str = "landing") -> Lakehouse:
        """A new copy `work` of the lakehouse folder `template`, nothing cached from before."""
        self.forget()
        copy_table_dir(self.root / template, self.root / work)
        shutil.rmtree(self.root / f"{work}-reports", ignore_errors=True)
        return self.lakehouse(work, landing)

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
            # A run out of heap stops at once (the session's JVM options, `core.spark`).
            spark = get_spark(
                self.lh.config.spark,
                app_name="lakehouse-bench",
                extra={
                    # Jobs are counted by job group from the status store, which keeps 1,000 jobs
                    # by default: a first run of a day makes more, so its count was cut short.
                    "spark.ui.retainedJobs": "100000",
                    # Stages and SQL executions a per-step record reads (`steps.py`).
                    **SESSION_SETTINGS,
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
                    ("lifetime", self.measure_lifetime),
                ]
                if self.scale.pipeline_first_day:
                    # Its first run of day 1 leaves the lakehouse the merge template starts from.
                    steps = [steps[2], steps[0], steps[1], steps[3]]
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
        cfg = self.lh.config.spark
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
                "seed": self.lh.config.generator.seed,
                "reps": self.reps,
                "pipeline_reps": self.scale.pipeline_reps or self.reps,
                "history_days": list(self.scale.history_days),
                "lifetimes": list(self.scale.lifetimes),
                "lifetime_orders_per_day": self.scale.lifetime_orders,
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
            self.lh.config.generator,
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
            lh = self.lakehouse("m0", "landing-merge")
            log("day 2 of orders, order_items, payments into bronze (m0)")
            with timed() as t:
                run_bronze(self.spark, lh, self.run_id("m0-bronze2"), [str(DAY2)])
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
                self.spark,
                self.lakehouse("p0", landing),
                self.run_id("day1"),
                ALL_STEPS,
                [str(DAY1)],
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
        lh = self.lakehouse("m0", "landing-merge")
        log("day 1 of orders, order_items, payments through bronze and silver (m0)")
        with timed() as t:
            run_bronze(spark, lh, self.run_id("m0-bronze1"), [str(DAY1)])
            record(spark, lh, silver.apply(spark, lh, "m0-silver1", list(self.merge_specs)))
        self.details.append(
            f"merge template: day 1 of the three tables through bronze and silver: {t[0]:.1f} s"
        )

    def prepare_history(self) -> None:
        assert self.spark is not None
        spark = self.spark
        specs = self.merge_specs

        small, large = self.scale.history_days
        log(f"synthetic silver history: {small} and {large} days")
        with timed() as t:
            copy_table_dir(self.root / "m0", self.root / f"h{small}")
            paths = self.silver_paths(self.lakehouse(f"h{small}"))
            append_history(spark, specs, paths, DAY1, small - 1, self.scale.orders_per_day)
            copy_table_dir(self.root / f"h{small}", self.root / f"h{large}")
            paths = self.silver_paths(self.lakehouse(f"h{large}"))
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
            .load(self.lakehouse(lakehouse).path(f"silver.{table}"))
            .count()
        )

    # --- history independence ------------------------------------------------------------------

    def measure_history(self) -> None:
        from lakehouse.silver import engine as silver

        assert self.spark is not None
        spark = self.spark
        small, large = self.scale.history_days
        specs = self.merge_specs
        samples: dict[int, list[float]] = {small: [], large: []}
        metrics: dict[int, dict[str, dict[str, int]]] = {}
        for rep in range(self.reps):
            order = (small, large) if rep % 2 == 0 else (large, small)
            for days in order:
                lh = self.fresh(f"h{days}", "work-merge")
                run_id = self.run_id(f"merge{days}")
                paths = self.silver_paths(lh)
                before = _versions_now(spark, paths)
                log(f"history rep {rep + 1}/{self.reps}: silver MERGE with {days} days")
                with timed() as t:
                    entries = silver.apply(spark, lh, run_id, list(specs))
                samples[days].append(t[0])
                log(f"  {t[0]:.1f} s")
                metrics[days] = {n: _merge_metrics(spark, paths[n], before[n]) for n in specs}
                for e in entries:
                    metrics[days][e.table_name].update(
                        inserted=e.inserted or 0, updated=e.updated or 0, deleted=e.deleted or 0
                    )
                if days == large and not (self.root / "peer-source").exists():
                    self._save_peer_source(paths, run_id)
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

    def _save_peer_source(self, paths: dict[str, str], run_id: str) -> None:
        """The rows the MERGE wrote (the deduplicated batch that won), one Parquet folder per
        table: the source both engines MERGE in the peer comparison."""
        assert self.spark is not None
        for name, path in paths.items():
            rows = self.spark.read.format("delta").load(path)
            rows = rows.where(F.col("_run_id") == run_id)
            rows.coalesce(1).write.mode("overwrite").parquet(str(self.root / "peer-source" / name))

    # --- the peer engine -----------------------------------------------------------------------

    def measure_peer(self) -> None:
        from lakehouse_dev.bench import peer

        assert self.spark is not None
        large = self.scale.history_days[1]
        specs = self.merge_specs
        sources = {n: self.root / "peer-source" / n for n in specs}
        samples: dict[str, list[float]] = {"spark": [], "deltars": []}
        per_table: dict[str, dict[str, list[float]]] = {"spark": {}, "deltars": {}}
        notes: list[str] = []
        for rep in range(self.reps):
            order = ("spark", "deltars") if rep % 2 == 0 else ("deltars", "spark")
            for engine in order:
                paths = self.silver_paths(self.fresh(f"h{large}", "work-peer"))
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
        daily.measure(self)

    # --- the whole pipeline at any age ---------------------------------------------------------

    def measure_lifetime(self) -> None:
        lifetime.measure(self, self.scale.lifetimes)


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


__all__ = ["Bench"]
