"""spark-submit entry point: a backfill (reprocess a range of ingest dates, diff, publish), with the
arguments of `lakehouse backfill` (see lakehouse.cli.jobs)."""

from __future__ import annotations

import sys

from lakehouse.cli.jobs import ops_main


def main(argv: list[str] | None = None) -> int:
    return ops_main("backfill", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
