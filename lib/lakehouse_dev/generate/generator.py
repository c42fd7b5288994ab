"""`generate_landing`: a synthetic shop's landing zone, written to a local folder.

Layout, as the landing contract has it:

    <landing_root>/<source>/ingest_date=YYYY-MM-DD/<source>-YYYYMMDD-NNNN.<jsonl|csv>[.gz]

`NNNN` counts the files of one source and ingest day from 0001, in the order they are written: the
missing-column file (fx_rates, one day), the day's own files (at most `max_lines_per_file` lines
each; records delivered late from earlier days come first), re-deliveries, the empty file.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from lakehouse.core.generator_spec import GeneratorSpec
from lakehouse_dev.generate.delivery import Landing
from lakehouse_dev.generate.records import (
    clickstream_records,
    customers_records,
    fx_records,
    items_records,
    orders_records,
    payments_records,
    products_records,
)
from lakehouse_dev.generate.summary import GenerationSummary
from lakehouse_dev.generate.world import World

DEFAULT_MAX_LINES_PER_FILE = 200_000


def generate_landing(
    landing_root: str | Path,
    spec: GeneratorSpec,
    *,
    overwrite: bool = False,
    max_lines_per_file: int = DEFAULT_MAX_LINES_PER_FILE,
) -> GenerationSummary:
    """Write `spec.days` days of the seven landing sources under `landing_root` (a local folder).

    customers, orders, order_items: CDC JSON lines; products, payments, fx_rates: CSV with a
    header; clickstream: JSON lines. The same spec gives byte-identical files. Defects are injected
    as `spec.defects` switches them; the returned summary counts files and records per source and
    lists every injected defect with its file and line.

    The landing root must be missing or empty; with `overwrite=True` everything in it is deleted
    first. Raises `FileExistsError` for a non-empty root without `overwrite`, `ValueError` for a
    spec out of range.
    """
    _check(spec, max_lines_per_file)
    root = _prepare_root(Path(landing_root), overwrite)
    world = World(spec)
    landing = Landing(root, spec, world.dates, max_lines_per_file)
    for day in range(spec.days):
        today = world.advance(day)
        customers, orders, items = world.cdc(day)
        landing.deliver(customers_records(world, day, customers))
        landing.deliver(orders_records(world, day, orders))
        landing.deliver(items_records(world, day, items))
        landing.deliver(products_records(world, day))
        landing.deliver(payments_records(world, day, world.payments(day), landing.drift_from))
        landing.deliver(fx_records(world, day))
        events, sessions = world.clickstream(day, today)
        landing.deliver(clickstream_records(world, day, events, sessions))
    return landing.summary(world.fx.missing, world.fx.corrections)


def _check(spec: GeneratorSpec, max_lines_per_file: int) -> None:
    problems = []
    if spec.seed < 0:
        problems.append(f"seed must be >= 0, got {spec.seed}")
    for name in ("customers", "days", "orders_per_day"):
        if getattr(spec, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(spec, name)}")
    if max_lines_per_file < 1:
        problems.append(f"max_lines_per_file must be >= 1, got {max_lines_per_file}")
    sw = spec.defects
    rates = {
        "redelivered_files": sw.redelivered_files,
        "duplicate_events": sw.duplicate_events,
        "out_of_order_events": sw.out_of_order_events,
        "late_events": sw.late_events,
        "deletes": sw.deletes,
        "malformed_lines": sw.malformed_lines,
        "bad_values": sw.bad_values,
    }
    for name, rate in rates.items():
        if not 0.0 <= rate <= 1.0:
            problems.append(f"defects.{name} must be within [0, 1], got {rate}")
    line_rates = (
        "duplicate_events",
        "out_of_order_events",
        "late_events",
        "malformed_lines",
        "bad_values",
    )
    if sum(rates[name] for name in line_rates) > 1.0:
        problems.append(
            "the line defect rates (duplicates, out-of-order, late, malformed, bad) sum above 1"
        )
    funnel = spec.funnel
    for name in ("anonymous", "view", "cart", "checkout", "late_night"):
        rate = getattr(funnel, name)
        if not 0.0 <= rate <= 1.0:
            problems.append(f"funnel.{name} must be within [0, 1], got {rate}")
    for name in ("browsing_per_order", "extra_views"):
        value = getattr(funnel, name)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"funnel.{name} must be a finite number >= 0, got {value}")
    if problems:
        raise ValueError("invalid GeneratorSpec: " + "; ".join(problems))


def _prepare_root(root: Path, overwrite: bool) -> Path:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"landing root {root} exists and is not a folder")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"landing root {root} is not empty; "
                "pass overwrite=True to delete its contents first"
            )
        if root.resolve() == Path(root.resolve().anchor) or root.resolve() == Path.home():
            raise ValueError(f"refusing to clear {root}: it is a filesystem root or a home folder")
        for child in sorted(root.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root
