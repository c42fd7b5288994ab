"""`make bench` (issue #8): the lakehouse's performance figures on generated data.

Run as `python -m lakehouse_dev.bench --scale small|default [--out docs/]`. It prepares data under
`bench-data/<scale>/` (git-ignored), measures every figure in this one process (each pair several
times, alternately; medians reported) and writes its section of `docs/BENCHMARKS.md`, plus
`docs/bench/results-<scale>.json` and `docs/bench/bench-<scale>.png`.

- `runner`: data preparation and the measurements;
- `history`: synthetic silver history (older days written straight into the silver tables);
- `peer`: the same silver MERGE with Delta Lake on Spark and with delta-rs;
- `memory`: peak resident memory of the process tree;
- `report`: targets, verdicts and rendering (pure, tested in `tests/test_bench.py`).
"""
