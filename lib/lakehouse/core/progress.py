"""Progress lines: what a long command has done so far, one line per step and table as each
finishes (rows in, rows written, seconds) and the run's total.

The engines report through `report` and `step`, on the logger `lakehouse.progress`; the
`lakehouse` command prints its lines to stderr (`enable`), so `make run` is never silent for
longer than a table takes. A library caller (tests, notebooks) sees nothing unless it configures
that logger.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


class Clock:
    """Seconds since it was made: `Clock().seconds` after a piece of work."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self._started


@contextmanager
def step(name: str) -> Iterator[None]:
    """A line when the step starts and one with its seconds when it ends (or fails)."""
    clock = Clock()
    report("%s: started", name)
    try:
        yield
    except BaseException:
        report("%s: failed after %.1f s", name, clock.seconds)
        raise
    report("%s: done in %.1f s", name, clock.seconds)
