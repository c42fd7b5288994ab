"""How the benchmark measures, and keeps its measurements apart: a timer, a counter of the Spark
jobs and Delta commits a block makes, the data files of a lakehouse folder, and copies of
lakehouse folders that share their immutable data files."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t: ...` then `t[0]` is the block's wall time in seconds."""
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)


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
