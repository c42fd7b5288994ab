"""Per step and table of a pipeline run: seconds, Spark jobs, bytes and files read, bytes and
files written, Delta commits (issue #17: "every claim is read off it").

`StepRecorder` listens to the pipeline's progress events (`lakehouse.core.progress`). At each
event it notes only what is cheap to note (the clock, the Spark job, stage and SQL execution
counters, the Delta log files under the lakehouse), so that recording does not slow the run it
measures; `rows()` reads the rest afterwards from Spark's status stores and the Delta logs.

A table's row covers the run from the previous event to its own: the table's own work plus any
shared work of its step done before it (bronze lists, parses and counts every source before the
first source's line; gold finds what changed before the first table is computed). A step's row
covers the whole step. Reads are Spark's: bytes read by tasks (`inputBytes` of the stages) and
the files the scans opened (the SQL metric "number of files read"), Delta's reads of its own
log (commit files, checkpoints) included; writes are Delta's: the commits, and the files and
bytes their `add` actions name. Shuffle is left out of both.
"""

from __future__ import annotations

import glob
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from lakehouse.core.progress import Event, spark_jobs_started

# The benchmark's session keeps enough stages and SQL executions in its status stores for a
# whole run's to be read after it (a first run of a day makes about 2,000 stages). An SQL
# execution kept holds its plan text and graph, large for MERGE and Deequ plans, so they are
# kept at Spark's default of 1,000 (the benchmark kept 20 before, after a run out of heap that
# also had Delta's log cache growing, since emptied between measurements: docs/BENCHMARKS.md,
# finding 4). `rows()` is read right after each recorded run, and a run whose executions were
# no longer all kept reports its files read as unknown (None).
SESSION_SETTINGS = {
    "spark.ui.retainedStages": "10000",
    "spark.sql.ui.retainedExecutions": "1000",
}
FILES_READ_IDS = re.compile(r"SQLPlanMetric\(number of files read,(\d+),")


@dataclass(frozen=True)
class _Mark:
    at: float
    jobs: int
    stage: int
    execution: int
    logs: frozenset[str]


@dataclass
class StepRow:
    """One row of the per-step table."""

    name: str
    kind: str  # "step" or "table"
    seconds: float
    spark_jobs: int
    rows_in: int | None = None
    rows_written: int | None = None
    bytes_read: int = 0
    files_read: int | None = 0
    commits: int = 0
    files_written: int = 0
    bytes_written: int = 0
    files_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StepRecorder:
    """Subscribe with `progress.listening(recorder)`; `rows()` after the run."""

    spark: SparkSession
    lake_root: Path
    _pending: list[tuple[Event, _Mark, _Mark]] = field(default_factory=list)
    _starts: dict[str, _Mark] = field(default_factory=dict)
    _last: _Mark | None = None

    def __post_init__(self) -> None:
        self._last = self._mark()

    def __call__(self, event: Event) -> None:
        now = self._mark()
        assert self._last is not None
        if event.kind == "started":
            self._starts[event.name] = now
        elif event.kind == "table":
            self._pending.append((event, self._last, now))
        elif event.name in self._starts:
            self._pending.append((event, self._starts.pop(event.name), now))
        self._last = now

    def _mark(self) -> _Mark:
        self._drain()
        sc = self.spark.sparkContext._jsc.sc()
        return _Mark(
            at=time.monotonic(),
            jobs=spark_jobs_started() or 0,
            # The DAG scheduler's AtomicInteger, which Py4J hands over as its value.
            stage=int(sc.dagScheduler().nextStageId()),
            execution=_next_execution_id(self.spark),
            logs=frozenset(glob.glob(str(self.lake_root / "*" / "*" / "_delta_log" / "*.json"))),
        )

    def rows(self, run_id: str | None = None) -> list[StepRow]:
        """The recorded rows, in the order their events came (tables before their step); the
        step `run <run_id>` is named `run`, so that runs can be compared row by row."""
        self._drain()
        out = []
        for event, start, end in self._pending:
            row = StepRow(
                name="run" if run_id and event.name == f"run {run_id}" else event.name,
                kind="table" if event.kind == "table" else "step",
                seconds=round(end.at - start.at, 3),
                spark_jobs=end.jobs - start.jobs,
                rows_in=event.rows_in,
                rows_written=event.rows_written,
            )
            row.bytes_read = self._bytes_read(start.stage, end.stage)
            row.files_read = self._files_read(start.execution, end.execution)
            for log in sorted(end.logs - start.logs):
                row.commits += 1
                added, size, removed = _commit_files(Path(log))
                row.files_written += added
                row.bytes_written += size
                row.files_removed += removed
            out.append(row)
        return out

    def _drain(self) -> None:
        """Wait until Spark's listener bus has put every finished stage into the stores."""
        self.spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(10_000)

    def _bytes_read(self, first: int, end: int) -> int:
        store = self.spark.sparkContext._jsc.sc().statusStore()
        jvm = self.spark.sparkContext._jvm
        gateway = self.spark.sparkContext._gateway
        assert jvm is not None and gateway is not None
        # AppStatusStore.stageData(stageId, details, taskStatus, withSummaries, quantiles):
        # Scala's default arguments do not exist for Py4J, so all five are given.
        no_status, no_quantiles = jvm.java.util.ArrayList(), gateway.new_array(jvm.double, 0)
        total = 0
        for sid in range(first, end):
            try:
                attempts = store.stageData(sid, False, no_status, False, no_quantiles)
            except Exception:  # a stage that never ran (skipped) is not in the store
                continue
            for i in range(attempts.size()):
                total += int(attempts.apply(i).inputBytes())
        return total

    def _files_read(self, first: int, end: int) -> int | None:
        store = self.spark._jsparkSession.sharedState().statusStore()
        total = 0
        for eid in range(first, end):
            found = store.execution(eid)
            if not found.isDefined():
                return None
            # The plan's metrics as one string (`SQLPlanMetric(name,accumulatorId,type)`, one
            # Py4J call instead of two per metric); a scan's metric is listed once per
            # plan-graph node that shows it: counted once.
            ids = set(FILES_READ_IDS.findall(found.get().metrics().toString()))
            if not ids:
                continue
            values = store.executionMetrics(eid)
            for acc in ids:
                value = values.get(int(acc))
                if value.isDefined():
                    total += int(str(value.get()).replace(",", "").split()[0])
        return total


def _next_execution_id(spark: SparkSession) -> int:
    """The id the next SQL execution will get (ids are handed out in order from 0)."""
    store = spark._jsparkSession.sharedState().statusStore()
    count = int(store.executionsCount())
    if count == 0:
        return 0
    last = store.executionsList(count - 1, 1)
    return int(last.apply(0).executionId()) + 1 if last.size() else count


def _commit_files(log: Path) -> tuple[int, int, int]:
    """(files added, their bytes, files removed) of one Delta commit."""
    added = size = removed = 0
    for line in log.read_text().splitlines():
        action = json.loads(line)
        if "add" in action:
            added += 1
            size += int(action["add"].get("size", 0))
        elif "remove" in action:
            removed += 1
    return added, size, removed
