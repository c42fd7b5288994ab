"""spark-submit entry point: the erasure of one customer's personal
data, with the arguments of `lakehouse erase`
(see lakehouse.cli.jobs)."""

from __future__ import annotations

import sys

from lakehouse.cli.jobs import ops_main


def main(argv: list[str] | None = None) -> int:
    return ops_main("erase", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
