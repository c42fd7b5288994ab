"""Synthetic shop data for the landing zone, laid out as the landing contract describes.

Example: `generate_landing("data/landing", GeneratorSpec(seed=7))` writes the default small shop
(200 customers, 5 days, 100 orders a day, defects at small rates) and returns its summary.
"""

from __future__ import annotations

from lakehouse.core.generator_spec import DefectSwitches, FunnelRates, GeneratorSpec
from lakehouse_dev.generate.generator import DEFAULT_MAX_LINES_PER_FILE, generate_landing
from lakehouse_dev.generate.summary import (
    DEFECT_KINDS,
    FILE_DEFECT_KINDS,
    SOURCES,
    FxNote,
    GenerationSummary,
    InjectedDefect,
)

__all__ = [
    "DEFAULT_MAX_LINES_PER_FILE",
    "DEFECT_KINDS",
    "FILE_DEFECT_KINDS",
    "SOURCES",
    "DefectSwitches",
    "FunnelRates",
    "FxNote",
    "GenerationSummary",
    "GeneratorSpec",
    "InjectedDefect",
    "generate_landing",
]
