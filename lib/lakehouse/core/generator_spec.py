"""What the landing-zone generator makes: scale, seed and the defects it injects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class DefectSwitches:
    """Each kind of bad or awkward delivery the generator injects, switchable one by one.

    Rates are fractions of the records (or files) of a source; 0 turns a defect off.
    """

    redelivered_files: float = 0.05
    duplicate_events: float = 0.02
    out_of_order_events: float = 0.02
    late_events: float = 0.02
    deletes: float = 0.01
    malformed_lines: float = 0.005
    bad_values: float = 0.005
    schema_drift: bool = True
    bom: bool = True
    empty_file: bool = True
    gzip: bool = True
    missing_column: bool = True

    @classmethod
    def none(cls) -> DefectSwitches:
        """Every defect off: clean, in-order, exactly-once deliveries."""
        return cls(
            redelivered_files=0.0,
            duplicate_events=0.0,
            out_of_order_events=0.0,
            late_events=0.0,
            deletes=0.0,
            malformed_lines=0.0,
            bad_values=0.0,
            schema_drift=False,
            bom=False,
            empty_file=False,
            gzip=False,
            missing_column=False,
        )


@dataclass(frozen=True)
class GeneratorSpec:
    """Scale and shape of one generated landing zone; the same spec and seed give the same bytes."""

    seed: int = 42
    customers: int = 200
    days: int = 5
    orders_per_day: int = 100
    start_date: date = date(2024, 1, 1)
    defects: DefectSwitches = field(default_factory=DefectSwitches)
