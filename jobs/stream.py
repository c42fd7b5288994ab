"""spark-submit entry point: the streaming ingestion (`lakehouse stream`), with its arguments;
run as an EMR Serverless STREAMING job run or an EMR on EC2 step (lakehouse.emr.streaming)."""

from __future__ import annotations

import sys

from lakehouse.cli.jobs import ops_main


def main(argv: list[str] | None = None) -> int:
    return ops_main("stream", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
