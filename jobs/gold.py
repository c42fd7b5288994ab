"""spark-submit entry point: the gold step of the daily pipeline (see lakehouse.cli.jobs)."""

from __future__ import annotations

import sys

from lakehouse.cli.jobs import job_main


def main(argv: list[str] | None = None) -> int:
    return job_main("gold", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
