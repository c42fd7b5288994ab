"""The `lakehouse` command: land a shop's data into bronze, silver and gold Delta tables, check it,
travel its history, maintain it, and run it on AWS EMR. `lakehouse COMMAND --help` says more."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from lakehouse.cli import emr, maintenance, pipeline, stream, time_travel
from lakehouse.core import progress
from lakehouse.core.config import ENVIRONMENTS, ConfigError
from lakehouse.core.errors import UserError

# The command groups, one module each: `register(subparsers)` adds its subcommands, each of which
# sets `func(args) -> int`.
COMMAND_GROUPS: tuple[ModuleType, ...] = (pipeline, stream, time_travel, maintenance, emr)


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


def main(argv: Sequence[str] | None = None, *, errors: list[str] | None = None) -> int:
    """Run one command; its status. An error it reports is printed, and also appended to
    `errors` when given (a job's outcome carries it)."""
    told = errors if errors is not None else []
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.enable()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        told.append(f"configuration error: {exc}")
        print(told[-1], file=sys.stderr)
        return 2
    except UserError as exc:
        told.append(f"error: {exc}")
        print(told[-1], file=sys.stderr)
        return 1
    except Exception as exc:
        if not jvm_ended(exc):
            raise
        told.append(
            "error: the Spark driver (JVM) ended during the run; the run did not finish and "
            "published nothing more. A JVM out of heap says 'Terminating due to "
            "java.lang.OutOfMemoryError' above: give it more memory (spark.driver_memory in "
            "conf/) and run again."
        )
        print(told[-1], file=sys.stderr)
        return JVM_ENDED


# The status of a run whose Spark driver ended under it (sysexits' EX_SOFTWARE).
JVM_ENDED = 70


def jvm_ended(exc: BaseException) -> bool:
    """Whether `exc` is Py4J finding the JVM gone (it exited, out of heap or killed), rather than
    an error the JVM reported: a network error, or a Py4J error without a Java exception after
    which the JVM does not answer."""
    from py4j.protocol import Py4JError, Py4JJavaError, Py4JNetworkError

    if isinstance(exc, Py4JNetworkError | ConnectionError):
        return True
    if isinstance(exc, Py4JError) and not isinstance(exc, Py4JJavaError):
        return not _jvm_answers()
    return False


def _jvm_answers() -> bool:
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None or context._jvm is None:
        return False
    try:
        context._jvm.java.lang.System.currentTimeMillis()
    except Exception:
        return False
    return True


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

    try:
        spark = SparkSession.getActiveSession()
        if spark is not None:
            stop_spark(spark)
    except Exception as exc:
        if not jvm_ended(exc):
            raise  # a JVM that is gone has nothing left to stop


if __name__ == "__main__":
    entry()
