"""Progress lines: what a long command has done so far, one line per step and table as each
finishes (rows in, rows written, seconds, Spark jobs) and the run's total.

The engines report through `step` (a step of the run) and `table` (a table of a step, with its
rows in and rows written), on the logger `lakehouse.progress`; the `lakehouse` command prints
its lines to stderr (`enable`), so `make run` is never silent for longer than a table takes. A
library caller (tests, notebooks) sees nothing unless it configures that logger.

The same facts go, as `Event`s, to whoever `listening` subscribed: the benchmark records each
step's and table's reads, writes and commits from them (`lakehouse_dev.bench.steps`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LOG = logging.getLogger("lakehouse.progress")


class _StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is when a line is written (a caller that redirects
    stderr, as tests do, gets the lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def enable() -> None:
    """Print progress lines to stderr, each with the time of day (once per process)."""
    if any(isinstance(h, _StderrHandler) for h in LOG.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def report(message: str, *args: object) -> None:
    """One progress line (`%`-style arguments, formatted only if someone listens)."""
    LOG.info(message, *args)


def spark_jobs_started() -> int | None:
    """How many Spark jobs the running SparkContext has started so far (None without one): the
    DAG scheduler's `numTotalJobs`, read without a job of its own."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None or sc._jsc is None:
        return None
    try:
        return int(sc._jsc.sc().dagScheduler().numTotalJobs())
    except Exception:  # a stopped context, or a Spark without the field: just no job count
        return None


class Clock:
    """Seconds and Spark jobs since it was made: `Clock().seconds` after a piece of work, or
    `Clock().summary` ("3.5 s, 12 Spark jobs")."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._jobs = spark_jobs_started()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started

    @property
    def jobs(self) -> int | None:
        """Spark jobs started since the clock was made (None without a SparkContext)."""
        now = spark_jobs_started()
        return None if now is None or self._jobs is None else now - self._jobs

    @property
    def summary(self) -> str:
        jobs = self.jobs
        return f"{self.seconds:.1f} s" + ("" if jobs is None else f", {jobs} Spark jobs")


@dataclass(frozen=True)
class Event:
    """What a listener hears: a step `started`, a `table` of it finished, or the step `done`
    (or `failed`), with the seconds and Spark jobs since its clock was made and, for a table,
    the rows it read and wrote (None where the engine has no such count)."""

    kind: str
    name: str
    seconds: float
    jobs: int | None
    rows_in: int | None = None
    rows_written: int | None = None


Listener = Callable[[Event], None]
_LISTENERS: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener` with every `Event` inside the block (in this process)."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def _emit(event: Event) -> None:
    """Tell every listener; a listener that fails is logged, never the run's failure (nor does
    it hide the error a failing step is raising)."""
    for listener in list(_LISTENERS):
        try:
            listener(event)
        except Exception:
            logging.getLogger(__name__).exception("progress listener failed on %s", event)


def table(
    name: str,
    clock: Clock,
    message: str,
    *args: object,
    rows_in: int | None = None,
    rows_written: int | None = None,
) -> None:
    """A table's line (`message % args`, then the clock's summary in brackets), and its event."""
    seconds, jobs = clock.seconds, clock.jobs
    report(message + " (%s)", *args, clock.summary)
    _emit(Event("table", name, seconds, jobs, rows_in, rows_written))


@contextmanager
def step(name: str) -> Iterator[None]:
    """A line when the step starts and one with its seconds when it ends (or fails)."""
    _emit(Event("started", name, 0.0, 0))
    clock = Clock()
    report("%s: started", name)
    try:
        yield
    except BaseException:
        report("%s: failed after %.1f s", name, clock.seconds)
        _emit(Event("failed", name, clock.seconds, clock.jobs))
        raise
    seconds, jobs = clock.seconds, clock.jobs
    report("%s: done in %s", name, clock.summary)
    _emit(Event("done", name, seconds, jobs))
