"""The `lakehouse` command. Each area registers its own subcommands (`register(subparsers)`), so
this file stays a thin dispatcher and `jobs/*.py` call the same functions."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lakehouse.config import ENVIRONMENTS, ConfigError
from lakehouse.errors import UserError

# Modules that add subcommands; each has `register(subparsers)` and sets `func(args) -> int`.
COMMAND_MODULES = (
    "lakehouse.commands",
    "lakehouse.history_commands",
    "lakehouse.maintenance_commands",
    "lakehouse.emr.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    parser.add_argument(
        "--env", default="local", choices=ENVIRONMENTS, help="configuration overlay conf/<env>.yaml"
    )
    parser.add_argument("--conf-dir", default=None, help="configuration folder (default: ./conf)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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

    from lakehouse.spark import stop_spark

    spark = SparkSession.getActiveSession()
    if spark is not None:
        stop_spark(spark)


if __name__ == "__main__":
    entry()
