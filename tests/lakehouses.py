"""Lakehouses for tests: the project's local configuration with every root in a folder of the
test's own (`landing/`, `lake/`, `reports/`)."""

from __future__ import annotations

from pathlib import Path

from lakehouse.core.context import Lakehouse


def local_lakehouse(base: Path, conf_dir: Path | str | None = None) -> Lakehouse:
    """The `local` environment (of `conf_dir`, default the project's conf/) with its landing
    zone, lakehouse and reports under `base`."""
    storage = {
        "landing_root": str(base / "landing"),
        "lakehouse_root": str(base / "lake"),
        "reports_root": str(base / "reports"),
    }
    return Lakehouse.load("local", conf_dir, {"storage": storage})
