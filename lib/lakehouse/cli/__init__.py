"""The `lakehouse` command: land a shop's data into bronze, silver and gold Delta tables, check it,
travel its history, maintain it, and run it on AWS EMR. `lakehouse COMMAND --help` says more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from lakehouse.cli import emr, maintenance, pipeline, time_travel
from lakehouse.core import progress
from lakehouse.core.config import ENVIRONMENTS, ConfigError
from lakehouse.core.errors import UserError

# The command groups, one module each: `register(subparsers)` adds its subcommands, each of which
# sets `func(args) -> int`.
COMMAND_GROUPS: tuple[ModuleType, ...] = (pipeline, time_travel, maintenance, emr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    parser.add_argument(
        "--env", default="local", choices=ENVIRONMENTS, help="configuration overlay conf/<env>.yaml"
    )
    parser.add_argument("--conf-dir", default=None, help="configuration folder (default: ./conf)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.enable()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def entry() -> None:
    """The `lakehouse` program: `main`, then the Spark session it started is stopped, with the
    Py4J callback server pydeequ leaves behind (a non-daemon thread: left running, it kept the
    process alive after `lakehouse run` had finished). `main` leaves the session alone, so tests
    and notebooks can call it in a session they keep."""
    try:
        status = main()
    finally:
        _stop_session()
    sys.exit(status)


def _stop_session() -> None:
    if "pyspark" not in sys.modules:
        return  # the command never started Spark
    from pyspark.sql import SparkSession

    from lakehouse.core.spark import stop_spark

    spark = SparkSession.getActiveSession()
    if spark is not None:
        stop_spark(spark)


if __name__ == "__main__":
    entry()
