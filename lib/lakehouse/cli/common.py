"""What every command group shares: the lakehouse of `--env`/`--conf-dir`, its session, and the
catalog refresh after an operation that moves the published gold set."""

from __future__ import annotations

import argparse
from typing import Any

from lakehouse.core.context import Lakehouse


def lakehouse_of(args: argparse.Namespace) -> Lakehouse:
    """The configuration of `--env` from `--conf-dir` (default: the project's conf/), with the
    table specs of the same folder."""
    return Lakehouse.load(args.env, args.conf_dir)


def session(lh: Lakehouse, app: str) -> Any:
    """The one session factory, with the environment's Spark settings."""
    from lakehouse.core.spark import get_spark

    return get_spark(lh.config.spark, app_name=app)


def refresh_catalog(spark: Any, lh: Lakehouse) -> None:
    """After an operation that moved or restored the published gold set (maintenance, erasure,
    rollback): register new tables and re-point the gold views (`lakehouse.state.catalog`)."""
    from lakehouse.state.catalog import register_tables

    register_tables(spark, lh)
