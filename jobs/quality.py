"""spark-submit entry point: the quality gate of the daily pipeline (see lakehouse.cli.jobs)."""

from __future__ import annotations

import sys

from lakehouse.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("quality", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
