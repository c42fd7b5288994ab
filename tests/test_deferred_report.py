"""The run's quality report is written once, after its last gate (`pipeline.DeferredReport`):
each gate used to write the whole report again. No Spark here: the writer is replaced by one
that records its calls."""

from __future__ import annotations

from typing import Any

import pytest

from lakehouse import pipeline
from lakehouse.pipeline import DeferredReport


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    calls: list[tuple[str, bool]] = []

    def write_report(spark: Any, lh: Any, run_id: str, gated: bool = True) -> None:
        calls.append((run_id, gated))

    monkeypatch.setattr("lakehouse.quality.write_report", write_report)
    return calls


def report() -> DeferredReport:
    return DeferredReport(spark=None, lh=None, run_id="run-1")  # type: ignore[arg-type]


def test_a_report_no_gate_made_due_is_not_written(written: list[tuple[str, bool]]) -> None:
    deferred = report()

    deferred.flush()
    deferred.flush(failing=True)

    assert written == []


def test_two_gates_make_one_report(written: list[tuple[str, bool]]) -> None:
    deferred = report()
    deferred.due = True  # the silver gate
    deferred.due = True  # the gold gate

    deferred.flush()
    deferred.flush()

    assert written == [("run-1", True)]


def test_a_report_that_cannot_be_written_fails_the_run_unless_it_is_failing_already(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(spark: Any, lh: Any, run_id: str, gated: bool = True) -> None:
        raise OSError("reports root not writable")

    warnings: list[str] = []
    monkeypatch.setattr("lakehouse.quality.write_report", broken)
    # The progress log may have its own handler and not propagate (the CLI sets it up), so its
    # warnings are recorded where they are made.
    monkeypatch.setattr(
        pipeline.progress.LOG, "warning", lambda msg, *args: warnings.append(msg % args)
    )
    deferred = report()
    deferred.due = True
    with pytest.raises(OSError, match="not writable"):
        deferred.flush()

    deferred.due = True
    deferred.flush(failing=True)  # the run's own error is what the caller sees

    assert warnings == ["quality report not written: OSError: reports root not writable"]
