"""spark-submit entry point: the maintenance (OPTIMIZE, VACUUM, the full
quality scan), with the arguments of `lakehouse maintain`
(see lakehouse.cli.jobs)."""

from __future__ import annotations

import sys

from lakehouse.cli.jobs import ops_main


def main(argv: list[str] | None = None) -> int:
    return ops_main("maintain", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
