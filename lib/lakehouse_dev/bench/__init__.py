"""`make bench` (issue #8): the lakehouse's performance figures on generated data.

Run as `python -m lakehouse_dev.bench --scale small|default [--out docs] [--data bench-data]`
(both folders relative to the current one: `make bench` runs in the project's folder). It
prepares data under `<data>/<scale>/` (`bench-data/` is git-ignored), measures every figure in
this one process (each pair several times, alternately; medians reported) and writes its section
of `<out>/BENCHMARKS.md`, plus `<out>/bench/results-<scale>.json` and
`<out>/bench/bench-<scale>.png`.

It drives the engines through their public functions only (`lakehouse.pipeline`,
`lakehouse.silver.engine.apply`, `lakehouse.state.ledger.record`, with a
`lakehouse.core.context.Lakehouse` per scratch lakehouse).

- `scales`: how big a run is, and the days, tables and steps every figure shares;
- `measure`: timer, Spark job and Delta commit counter, copies of lakehouse folders;
- `runner`: data preparation and the history and peer measurements (`Bench`);
- `daily`: the whole-pipeline figures (first run, replay, no quality, floor);
- `history`: synthetic silver history (older days written straight into the silver tables);
- `peer`: the same silver MERGE with Delta Lake on Spark and with delta-rs;
- `memory`: peak resident memory of the process tree;
- `report`: targets, verdicts and rendering (pure, tested in `tests/test_bench.py`).
"""
