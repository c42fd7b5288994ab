"""How big a benchmark run is, and the days, tables and steps every measurement shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

# The source tables the history and peer figures MERGE into silver.
MERGE_TABLES = ("orders", "order_items", "payments")
ALL_STEPS = ("bronze", "silver", "quality", "gold")
DAY1 = date(2024, 1, 1)
DAY2 = DAY1 + timedelta(days=1)


@dataclass(frozen=True)
class Scale:
    """How big a benchmark run is. `history_days` are the two silver histories compared."""

    name: str
    orders_per_day: int
    customers: int
    reps: int
    history_days: tuple[int, int] = (5, 50)
    # The day the whole-pipeline figures run (None: the same as `orders_per_day`).
    pipeline_orders_per_day: int | None = None
    # Repetitions of the whole-pipeline figures (None: `reps`).
    pipeline_reps: int | None = None
    # Spark driver memory (None: the configuration's, conf/base.yaml).
    driver_memory: str | None = None
    # The whole-pipeline figures run day 1 into an empty lakehouse instead of day 2 on top of
    # day 1: the quick check needs no setup run of day 1, and its merge template starts from
    # the lakehouse the first run left (docs/BENCHMARKS.md).
    pipeline_first_day: bool = False
    # The whole-pipeline history figure (`lifetime.py`): the histories compared (days behind
    # the measured day) and the size of each day.
    lifetimes: tuple[int, ...] = (5, 50, 365)
    lifetime_orders: int = 2_000
    # The figure groups a plain run of the scale measures (`--only` overrides), and which of
    # the whole-pipeline runs it takes: the first run (with its replay), the run without
    # quality, issue #8's floor, the fair floor.
    figures: tuple[str, ...] = ("history", "peer", "pipeline", "lifetime")
    pipeline_runs: tuple[str, ...] = ("with", "without", "floor", "fair")

    @property
    def pipeline_orders(self) -> int:
        return self.pipeline_orders_per_day or self.orders_per_day

    @property
    def shares_landing(self) -> bool:
        """The whole-pipeline figures run on the history figures' landing (the same days)."""
        return self.pipeline_orders == self.orders_per_day


SCALES = {
    # A quick check of every code path: one repetition, the whole-pipeline figures on day 1 (a
    # pipeline run of even a small day costs over a minute of fixed Spark and Delta work on 2
    # cores, docs/BENCHMARKS.md; day 2 would need day 1 run first).
    "small": Scale(
        "small",
        orders_per_day=2_000,
        customers=2_000,
        reps=1,
        pipeline_first_day=True,
        lifetimes=(5, 50),
        lifetime_orders=500,
    ),
    # A 4g driver: with the configured 2g, preparing the merge template (bronze of the
    # 100k-order day 2, after day 1 went through bronze and silver in the same process) ran out
    # of heap (docs/BENCHMARKS.md, Findings).
    "default": Scale(
        "default",
        orders_per_day=100_000,
        customers=100_000,
        reps=3,
        pipeline_orders_per_day=20_000,
        driver_memory="4g",
    ),
    # Issue #17's volume: a 1M-order day (all seven sources, about 17M landed lines) through the
    # whole pipeline after day 1, with the configuration's driver memory; the first run and its
    # replay only (each takes many minutes on 2 cores).
    "large": Scale(
        "large",
        orders_per_day=1_000_000,
        customers=200_000,
        reps=1,
        figures=("pipeline",),
        pipeline_runs=("with",),
    ),
    # For working on the benchmark itself: every code path, minimal data, one repetition.
    "smoke": Scale(
        "smoke",
        orders_per_day=200,
        customers=200,
        reps=1,
        history_days=(2, 4),
        pipeline_first_day=True,
        lifetimes=(2, 4),
        lifetime_orders=200,
    ),
}
