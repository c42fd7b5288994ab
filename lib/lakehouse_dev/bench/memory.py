"""Peak resident memory of this process and all its children (the Spark JVM and its Python
workers), sampled by a background thread.

Two sums are kept: RSS, which counts a page shared by forked Python workers (pyspark's daemon
forks them) once per process, so it overstates; and PSS (proportional set size, Linux), which
splits each shared page between the processes sharing it, so the sum is what the tree really
holds. The figure is PSS where the system provides it."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


def tree_memory(process: psutil.Process) -> tuple[int, int | None]:
    """(RSS, PSS) bytes of `process` plus every descendant still alive; PSS None where the
    system does not report it."""
    rss, pss, _ = tree_memory_parts(process)
    return rss, pss


def _kind(root: psutil.Process, p: psutil.Process) -> str:
    if p.pid == root.pid:
        return "python driver"
    try:
        name = p.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    return "spark jvm" if name == "java" else "python workers" if "python" in name else "other"


def tree_memory_parts(process: psutil.Process) -> tuple[int, int | None, dict[str, int]]:
    """`tree_memory` plus the figure (PSS where available) per kind of process: the Python
    driver, the Spark JVM, pyspark's Python workers, other."""
    rss, pss = 0, 0
    has_pss = True
    parts: dict[str, int] = {}
    for p in [process, *process.children(recursive=True)]:
        try:
            if has_pss:
                full = p.memory_full_info()
                rss += full.rss
                if hasattr(full, "pss"):
                    pss += full.pss
                    used = full.pss
                else:
                    has_pss = False
                    used = full.rss
            else:
                used = p.memory_info().rss
                rss += used
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        kind = _kind(process, p)
        parts[kind] = parts.get(kind, 0) + used
    return rss, (pss if has_pss else None), parts


class PeakMemory:
    """`with PeakMemory() as m: ...` then `m.peak` (bytes, PSS where available) and `m.peak_rss`;
    `m.mark(name)` starts a named phase whose own peak is kept in `m.phases`; `m.peak_parts` is
    the peak split by kind of process (`tree_memory_parts`)."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self.peak_rss = 0
        self.phases: dict[str, int] = {}
        self.peak_parts: dict[str, int] = {}
        self._phase: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._process = psutil.Process()

    def _sample(self) -> None:
        rss, pss, parts = tree_memory_parts(self._process)
        used = pss if pss is not None else rss
        self.peak_rss = max(self.peak_rss, rss)
        if used > self.peak:
            self.peak = used
            self.peak_parts = parts
        if self._phase is not None:
            self.phases[self._phase] = max(self.phases.get(self._phase, 0), used)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def mark(self, phase: str) -> None:
        self._sample()
        self._phase = phase

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
