"""Data quality: Deequ verification suites from `conf/quality/*.yaml`, the publish gate, anomaly
history in Deequ's metrics repository, HTML/JSON reports and suite suggestions.

See docs/QUALITY.md. pydeequ is imported lazily (inside functions), after `get_spark` has set
`SPARK_VERSION`.
"""

from __future__ import annotations

from lakehouse.quality.report import write_report
from lakehouse.quality.runner import (
    RESULTS_TABLE,
    CheckResult,
    QualityGateError,
    QualityOutcome,
    gate,
    gated_runs,
    metrics_path,
    passed_gate,
    run_quality,
)
from lakehouse.quality.suggest import suggest
from lakehouse.quality.suites import CheckSpec, Suite, load_suite, load_suites, suite_path

__all__ = [
    "RESULTS_TABLE",
    "CheckResult",
    "CheckSpec",
    "QualityGateError",
    "QualityOutcome",
    "Suite",
    "gate",
    "gated_runs",
    "load_suite",
    "load_suites",
    "metrics_path",
    "passed_gate",
    "run_quality",
    "suggest",
    "suite_path",
    "write_report",
]
