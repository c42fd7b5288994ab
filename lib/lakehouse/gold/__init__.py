"""The gold layer: a star schema and the dashboard KPIs of `contracts/metrics.md`, rebuilt
incrementally from silver's Change Data Feed (see `build.py`)."""

from __future__ import annotations

from lakehouse.gold.build import GoldResult, TableWrite, build_gold, gold_tables

__all__ = ["GoldResult", "TableWrite", "build_gold", "gold_tables"]
