"""The `lakehouse` program as a process: it must end when its command has finished, and at once
with a clear status when its Spark driver runs out of heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A command that starts Spark and, as pydeequ's Python assertions do, Py4J's callback server (a
# non-daemon thread), then returns 3.
PROGRAM = textwrap.dedent(
    """
    import sys
    from lakehouse import cli
    from lakehouse.core.config import load_config
    from lakehouse.core.spark import get_spark

    def command():
        spark = get_spark(load_config("local").spark, app_name="cli-exit-test")
        spark.sparkContext._gateway.start_callback_server()
        return 3

    cli.main = command
    cli.entry()
    """
)


def test_the_program_exits_with_its_status_after_a_command_that_started_spark_and_py4j() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=180
    )

    assert done.returncode == 3, done.stderr[-2000:]


# A command whose driver JVM (512 MB of heap, the least Spark starts with) is asked for 1 GiB.
OUT_OF_HEAP = textwrap.dedent(
    """
    import argparse, dataclasses
    from lakehouse import cli
    from lakehouse.core.config import load_config
    from lakehouse.core.spark import get_spark

    def command(args):
        config = dataclasses.replace(load_config("local").spark, driver_memory="512m")
        spark = get_spark(config, app_name="cli-oom-test")
        spark.sparkContext._jvm.java.nio.ByteBuffer.allocate(1 << 30)
        return 0

    def parser():
        parser = argparse.ArgumentParser()
        parser.set_defaults(func=command)
        return parser

    cli.build_parser = parser
    cli.entry()
    """
)


def test_a_driver_out_of_heap_ends_the_program_at_once_saying_what_ran_out() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OUT_OF_HEAP], capture_output=True, text=True, timeout=180
    )

    output = done.stdout + done.stderr
    assert done.returncode == 70, output[-3000:]
    assert "Terminating due to java.lang.OutOfMemoryError: Java heap space" in output
    assert "error: the Spark driver (JVM) ended during the run" in done.stderr
