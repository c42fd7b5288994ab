"""The `lakehouse` program as a process: it must end when its command has finished."""

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
