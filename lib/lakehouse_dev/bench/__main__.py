"""`python -m lakehouse_dev.bench --scale small|default [--out docs/] [--data bench-data/]`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from lakehouse_dev.bench.measure import log
from lakehouse_dev.bench.report import section_name, write_chart, write_json, write_markdown
from lakehouse_dev.bench.runner import Bench
from lakehouse_dev.bench.scales import SCALES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse_dev.bench",
        description="Benchmark the daily pipeline on generated data (issue #8) and write "
        "docs/BENCHMARKS.md, a JSON file and a PNG chart.",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="default")
    # Relative to the current folder: `make bench` runs in the project's folder.
    parser.add_argument(
        "--out", default="docs", help="folder of BENCHMARKS.md and bench/ (default: docs)"
    )
    parser.add_argument(
        "--data",
        default="bench-data",
        help="scratch folder, git-ignored in the project (default: bench-data)",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions per pair")
    parser.add_argument(
        "--pipeline-reps", type=int, default=None, help="repetitions of the whole-pipeline pairs"
    )
    parser.add_argument(
        "--pipeline-orders",
        type=int,
        default=None,
        help="orders per day for the whole-pipeline figures (default: the scale's)",
    )
    parser.add_argument(
        "--command",
        default=None,
        help="the command line to record in the report (make passes `make bench SCALE=...`)",
    )
    parser.add_argument(
        "--driver-memory", default=None, help="Spark driver memory (default: the configuration's)"
    )
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated figure groups to measure: history, peer, pipeline, lifetime "
        "(default: the scale's)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the preparation stages a previous run of this scale finished",
    )
    parser.add_argument(
        "--section",
        default=None,
        help="write this section (and results-<section>.json, bench-<section>.png) instead of "
        "the scale's: for a run that measures only part of a scale",
    )
    parser.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        default=None,
        help="measure nothing: write the section and chart again from a results file",
    )
    args = parser.parse_args(argv)
    command = args.command or "python -m lakehouse_dev.bench " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = Path(args.out)
    name = args.section or args.scale
    json_path = out / "bench" / f"results-{name}.json"
    png_path = out / "bench" / f"bench-{name}.png"

    def write(results: dict[str, Any]) -> None:
        if args.section:
            results["section"] = args.section
        write_json(results, json_path)
        write_chart(results, png_path)
        doc = write_markdown(results, out / "BENCHMARKS.md", json_path, png_path)
        log(f"wrote {doc}, {json_path}, {png_path}")

    if args.render:
        results = json.loads(Path(args.render).read_text())
        name = args.section or section_name(results)
        json_path = out / "bench" / f"results-{name}.json"
        png_path = out / "bench" / f"bench-{name}.png"
        write(results)
        return 0
    scale = SCALES[args.scale]
    if args.pipeline_reps:
        scale = replace(scale, pipeline_reps=args.pipeline_reps)
    if args.pipeline_orders:
        scale = replace(scale, pipeline_orders_per_day=args.pipeline_orders)
    bench = Bench(
        scale,
        Path(args.data),
        command,
        args.reps,
        driver_memory=args.driver_memory,
        only=tuple(args.only.split(",")) if args.only else scale.figures,
        resume=args.resume,
    )
    write(bench.run(on_progress=write))
    return 0


if __name__ == "__main__":
    sys.exit(main())
