"""The benchmark's pure parts: medians, targets and verdicts, and the report it writes, and its
work counter on a real Delta table. No benchmark runs here (`make bench` does that)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse_dev.bench.measure import copy_table_dir, data_files, work_counted
from lakehouse_dev.bench.report import (
    GIB,
    evaluate,
    median,
    render_section,
    splice,
    write_markdown,
)


def _results(**figures: object) -> dict[str, object]:
    base: dict[str, object] = {
        "history": {
            "small_days": 5,
            "large_days": 50,
            "small": [10.0, 12.0, 11.0],
            "large": [12.0, 11.5, 13.0],
        },
        "replay": {
            "first": [100.0, 90.0, 95.0],
            "replay": [8.0, 9.0, 9.5],
            "files_added": [0, 0, 0],
        },
        "pipeline": {
            "with_quality": [100.0, 90.0, 95.0],
            "without_quality": [88.0, 86.0, 90.0],
            "floor": [30.0, 28.0, 29.0],
            "fair_floor": [50.0, 48.0, 49.0],
            "work": {"first run": {"spark_jobs": 140, "delta_commits": 30}},
        },
        "peer": {"tables": ["orders"], "spark": [4.0, 5.0, 6.0], "deltars": [5.0, 5.0, 5.0]},
        "lifetime": {
            "days": [5, 50, 365],
            "orders_per_day": 2000,
            "samples": {
                "5": [20.0, 21.0, 19.0],
                "50": [21.0, 22.0, 20.0],
                "365": [23.0, 25.0, 22.0],
            },
        },
        "memory": {"peak_rss_bytes": 3 * GIB},
    }
    base.update(figures)
    return {
        "scale": "small",
        "command": "make bench SCALE=small",
        "params": {"orders_per_day": 1000, "reps": 3},
        "machine": {"cores": 2, "memory_gib": 24.0, "busy": True},
        "figures": base,
    }


def _verdicts(results: dict[str, object]) -> dict[str, str]:
    return {r.key: r.verdict for r in evaluate(results)}


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_every_figure_met_when_the_medians_are_within_target() -> None:
    verdicts = _verdicts(_results())
    assert verdicts == {
        "history": "met",  # 12.0 / 11.0 = 1.09
        "replay": "met",  # 9 / 95 = 0.095, no files
        "floor": "met",  # 95 / 29 = 3.3
        "fair_floor": "met",  # 95 / 49 = 1.94
        "quality": "met",  # 95 / 88 = 1.08
        "peer": "met",  # 5 / 5 = 1.0 <= 1.5
        "jobs": "met",  # 140 <= 150
        "lifetime": "met",  # 23 / 20 = 1.15, the largest history against the smallest
        "memory": "met",
        "throughput": "reported",
    }


def test_history_ratio_compares_medians_not_single_samples() -> None:
    # One slow outlier in the 50-day samples must not make the figure miss.
    results = _results(
        history={
            "small_days": 5,
            "large_days": 50,
            "small": [10.0, 10.0, 10.0],
            "large": [11.0, 40.0, 12.0],
        }
    )
    assert _verdicts(results)["history"] == "met"
    results["figures"]["history"]["large"] = [13.0, 40.0, 12.6]  # type: ignore[index]
    assert _verdicts(results)["history"] == "missed"


def test_the_whole_pipeline_history_compares_the_largest_history_with_the_smallest() -> None:
    results = _results()
    results["figures"]["lifetime"]["samples"]["365"] = [25.0, 24.0, 30.0]  # type: ignore[index]

    rows = {r.key: r for r in evaluate(results)}

    assert rows["lifetime"].value == "1.25x"  # 25 / 20, the 50-day median plays no part
    assert rows["lifetime"].verdict == "missed"
    assert "365 days of history 25.0 s" in rows["lifetime"].measured


def test_a_daily_run_of_more_than_150_spark_jobs_misses() -> None:
    results = _results()
    results["figures"]["pipeline"]["work"]["first run"]["spark_jobs"] = 151  # type: ignore[index]

    assert _verdicts(results)["jobs"] == "missed"


def test_the_per_step_record_is_rendered_a_row_per_table_then_its_step() -> None:
    recorded = [
        {
            "name": "bronze.orders",
            "kind": "table",
            "seconds": 1.25,
            "spark_jobs": 12,
            "rows_in": 2000,
            "rows_written": 1990,
            "bytes_read": 2_500_000,
            "files_read": 3,
            "commits": 1,
            "files_written": 2,
            "bytes_written": 1_000_000,
            "files_removed": 0,
        },
        {
            "name": "bronze",
            "kind": "step",
            "seconds": 3.0,
            "spark_jobs": 30,
            "rows_in": None,
            "rows_written": None,
            "bytes_read": 5_000_000,
            "files_read": None,
            "commits": 3,
            "files_written": 4,
            "bytes_written": 2_000_000,
            "files_removed": 1,
        },
    ]
    results = _results()
    results["figures"]["pipeline"]["steps"] = {"first run": recorded}  # type: ignore[index]

    text = render_section(results, "bench/r.json", "bench/c.png")

    assert "| bronze.orders | 1.2 | 12 | 2,000 | 1,990 | 2.5 (3) | 1 | 2 (1.0) | 0 |" in text
    assert "| **bronze** | 3.0 | 30 | - | - | 5.0 (-) | 3 | 4 (2.0) | 1 |" in text


def test_replay_misses_when_it_adds_a_data_file_even_if_fast() -> None:
    results = _results(replay={"first": [100.0], "replay": [1.0], "files_added": [0, 1, 0]})
    assert _verdicts(results)["replay"] == "missed"


def test_memory_above_six_gib_misses() -> None:
    results = _results(memory={"peak_rss_bytes": int(6.5 * GIB)})
    assert _verdicts(results)["memory"] == "missed"


def test_a_failed_measurement_is_reported_as_not_measured_with_its_reason() -> None:
    results = _results(peer={"error": "failed: OSError: no space"})
    rows = {r.key: r for r in evaluate(results)}
    assert rows["peer"].verdict == "not measured"
    assert "no space" in rows["peer"].measured


def test_section_says_plainly_which_targets_are_missed() -> None:
    results = _results(
        pipeline={
            "with_quality": [100.0],
            "without_quality": [50.0],
            "floor": [10.0],
            "fair_floor": [20.0],
            "work": {"first run": {"spark_jobs": 700, "delta_commits": 35}},
        },
        replay={"first": [100.0], "replay": [10.0], "files_added": [0]},
    )
    results["figures"]["peer"] = {"error": "not measured in this run (--only)"}  # type: ignore[index]
    text = render_section(results, "bench/results-small.json", "bench/bench-small.png")
    assert "Not measured in this run: **against a peer engine**" in text
    assert (
        "Targets missed in this run: **cost over the floor (issue #8's floor)**, "
        "**whole pipeline / fair floor**, **quality overhead**, **Spark jobs per daily run**"
    ) in text
    assert "| cost over the floor (issue #8's floor) |" in text and "| **missed** |" in text
    assert "make bench SCALE=small" in text
    assert "The machine was busy" in text


def test_splice_replaces_only_its_own_scale_section() -> None:
    doc = "# Benchmarks\n\nhand-written part\n"
    small = render_section(_results(), "a.json", "a.png")
    once = splice(doc, small, "small")
    twice = splice(once, small.replace("make bench SCALE=small", "again"), "small")
    assert twice.count("<!-- bench:small:start -->") == 1
    assert "again" in twice and "hand-written part" in twice
    default = splice(
        twice, "<!-- bench:default:start -->\nD\n<!-- bench:default:end -->", "default"
    )
    assert "again" in default and "\nD\n" in default


def test_write_markdown_links_the_json_and_chart_relative_to_the_document(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    write_markdown(_results(), doc, tmp_path / "bench" / "r.json", tmp_path / "bench" / "c.png")
    text = doc.read_text()
    assert "kept" in text and "(bench/r.json)" in text and "(bench/c.png)" in text


def test_copies_share_data_files_but_not_logs(tmp_path: Path) -> None:
    src = tmp_path / "src" / "silver" / "orders"
    (src / "_delta_log").mkdir(parents=True)
    (src / "part-0.parquet").write_bytes(b"data")
    (src / "_delta_log" / "00.json").write_text("{}")
    copy_table_dir(tmp_path / "src", tmp_path / "dst")
    copied = tmp_path / "dst" / "silver" / "orders"
    assert (copied / "part-0.parquet").stat().st_ino == (src / "part-0.parquet").stat().st_ino
    (copied / "_delta_log" / "00.json").write_text('{"changed": 1}')
    assert (src / "_delta_log" / "00.json").read_text() == "{}"
    assert data_files(tmp_path / "dst") == {"silver/orders/part-0.parquet"}


def test_memory_of_this_process_tree_is_measured() -> None:
    import psutil

    from lakehouse_dev.bench.memory import tree_memory, tree_memory_parts

    rss, pss = tree_memory(psutil.Process())
    assert rss > 10 * 1024**2
    assert pss is None or 0 < pss <= rss
    _, _, parts = tree_memory_parts(psutil.Process())
    assert parts["python driver"] > 10 * 1024**2
    assert set(parts) <= {"python driver", "spark jvm", "python workers", "other"}


def test_work_counter_counts_the_spark_jobs_and_delta_commits_made_inside(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = str(tmp_path / "lake" / "t")
    spark.range(3).write.format("delta").save(path)

    with work_counted(spark, tmp_path / "lake", "two-appends") as work:
        spark.range(2).write.format("delta").mode("append").save(path)
        spark.range(2).write.format("delta").mode("append").save(path)
    with work_counted(spark, tmp_path / "lake", "one-count") as idle:
        assert spark.read.format("delta").load(path).count() == 7

    assert work["delta_commits"] == 2
    assert work["spark_jobs"] >= 2
    assert idle["delta_commits"] == 0
    assert idle["spark_jobs"] >= 1


def test_a_run_given_its_own_section_leaves_the_scales_section_alone(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    json_path, png_path = tmp_path / "bench" / "r.json", tmp_path / "bench" / "c.png"
    write_markdown(_results(), doc, json_path, png_path)
    part = {**_results(), "section": "small-pipeline", "params": {"reps": 3, "pipeline_reps": 2}}

    write_markdown(part, doc, json_path, png_path)

    text = doc.read_text()
    assert text.count("<!-- bench:small:start -->") == 1
    assert text.count("<!-- bench:small-pipeline:start -->") == 1
    assert "at scale `small` (issues #8, #17): section `small-pipeline`" in text
    assert "measured 3 times (2 for the whole-pipeline figures)" in text


def test_a_single_repetition_is_called_a_quick_check_not_a_measurement() -> None:
    one = {**_results(), "params": {"orders_per_day": 1000, "reps": 1}}

    text = render_section(one, "bench/r.json", "bench/c.png")

    assert "each pair measured once, alternately, in this one process; every sample" in text
    assert "one repetition gives no median" in text
    assert "one repetition" not in render_section(_results(), "bench/r.json", "bench/c.png")


def test_the_section_says_which_day_the_whole_pipeline_figures_ran() -> None:
    first_day = {**_results(), "params": {"orders_per_day": 1000, "reps": 1, "pipeline_day": 1}}

    quick = render_section(first_day, "bench/r.json", "bench/c.png")
    default = render_section(_results(), "bench/r.json", "bench/c.png")

    assert "the whole-pipeline figures run day 1 into an empty lakehouse" in quick
    assert "day 2 on top of day 1" not in quick.split("the default scale")[0]
    assert "the whole-pipeline figures run day 2 on top of day 1" in default
    assert "empty lakehouse" not in default


def test_the_quick_check_shares_its_day_1_between_the_pipeline_and_merge_figures() -> None:
    from lakehouse_dev.bench.scales import SCALES

    assert SCALES["small"].pipeline_first_day and SCALES["small"].shares_landing
    # The default scale measures a smaller day 2 on top of day 1 for the pipeline figures.
    assert not SCALES["default"].pipeline_first_day
    assert not SCALES["default"].shares_landing
    assert SCALES["default"].pipeline_orders == 20_000


BENCH_PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "lakehouse_dev" / "bench"


def _bench_imports() -> dict[str, list[tuple[str, list[str]]]]:
    """Per benchmark module, every `from X import a, b` and `import X` it holds anywhere (module
    level, inside functions, under TYPE_CHECKING), with `from . import` made absolute."""
    import ast

    found: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted(BENCH_PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports: list[tuple[str, list[str]]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imports.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                imports.extend((a.name, []) for a in node.names)
        found[f"lakehouse_dev.bench.{path.stem}"] = imports
    return found


def test_the_benchmark_modules_import_one_another_without_a_cycle() -> None:
    modules = _bench_imports()
    graph: dict[str, set[str]] = {}
    for module, imports in modules.items():
        targets = set()
        for source, names in imports:
            targets.update(n for n in [source] + [f"{source}.{a}" for a in names] if n in modules)
        graph[module] = targets - {module, "lakehouse_dev.bench.__init__"}

    def cycle_from(start: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[start]):
            if nxt in seen:
                return (*seen, nxt)
            found = cycle_from(nxt, (*seen, nxt))
            if found:
                return found
        return None

    cycles = [c for m in graph if (c := cycle_from(m, (m,)))]
    assert cycles == []


def _private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def test_the_benchmark_uses_only_public_names_of_the_engines() -> None:
    """No `from lakehouse.x import _y`, no `import lakehouse._x`, no `x._y` on a name imported
    from `lakehouse`."""
    import ast

    private = []
    for path in sorted(BENCH_PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported: dict[str, str] = {}  # local name -> what it is in `lakehouse`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name
        imported = {k: v for k, v in imported.items() if v.split(".")[0] == "lakehouse"}
        private.extend(f"{path.name}: {v}" for v in imported.values() if _private(v))
        private.extend(
            f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and node.attr.startswith("_")
        )
    assert private == []


def test_each_lakehouse_folder_of_a_run_has_its_own_roots_and_the_same_specs(
    tmp_path: Path,
) -> None:
    from lakehouse_dev.bench.runner import Bench
    from lakehouse_dev.bench.scales import MERGE_TABLES, SCALES

    bench = Bench(SCALES["smoke"], tmp_path, "test")
    lh = bench.lakehouse("m0", "landing-merge")

    run = tmp_path.resolve() / "smoke"
    assert lh.path("silver.orders") == f"{run}/m0/silver/orders"
    assert lh.config.storage.landing_root == str(run / "landing-merge")
    assert lh.config.storage.reports_root == str(run / "m0-reports")
    assert dict(lh.tables) == dict(bench.lh.tables)
    assert set(bench.merge_specs) == set(MERGE_TABLES)
    assert bench.silver_paths(lh)["payments"] == f"{run}/m0/silver/payments"


def test_the_report_goes_to_the_out_folder_relative_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from lakehouse_dev.bench.__main__ import main

    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results()))
    monkeypatch.chdir(tmp_path)

    assert main(["--render", str(results)]) == 0

    assert "<!-- bench:small:start -->" in (tmp_path / "docs" / "BENCHMARKS.md").read_text()
    assert (tmp_path / "docs" / "bench" / "results-small.json").is_file()
    assert (tmp_path / "docs" / "bench" / "bench-small.png").is_file()


def test_a_day_of_history_moves_every_date_back_and_renames_the_events_not_the_customers(
    spark: SparkSession,
) -> None:
    import datetime as dt

    from pyspark.sql import functions as F

    from lakehouse_dev.bench.lifetime import shifted

    day = spark.createDataFrame(
        [("o1", "c1", "p1", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2, 10, 30), 7)],
        "order_id string, customer_id string, product_id string, order_date date, "
        "order_ts timestamp, quantity int",
    )

    copies = shifted(
        day.crossJoin(spark.range(1, 3).select(F.col("id").cast("int").alias("k"))), F.col("k")
    ).drop("k")

    assert sorted(tuple(r) for r in copies.collect()) == [
        ("h1-o1", "c1", "p1", dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 10, 30), 7),
        ("h2-o1", "c1", "p1", dt.date(2023, 12, 31), dt.datetime(2023, 12, 31, 10, 30), 7),
    ]


def test_the_step_recorder_counts_what_each_table_read_and_wrote(
    spark: SparkSession, tmp_path: Path
) -> None:
    from lakehouse.core import progress
    from lakehouse_dev.bench.steps import StepRecorder

    lake = tmp_path / "lake"
    path = str(lake / "bronze" / "t")
    spark.range(100).coalesce(1).write.format("delta").save(path)
    recorder = StepRecorder(spark, lake)

    with progress.listening(recorder), progress.step("bronze"):
        clock = progress.Clock()
        spark.range(10).coalesce(1).write.format("delta").mode("append").save(path)
        spark.range(5).repartition(2).write.format("delta").mode("append").save(path)
        progress.table("bronze.t", clock, "  bronze.t", rows_in=15, rows_written=15)
        clock = progress.Clock()
        assert spark.read.format("delta").load(path).where("id % 2 = 0").count() == 58
        progress.table("bronze.count", clock, "  bronze.count")

    rows = {r.name: r for r in recorder.rows()}

    assert [r.name for r in recorder.rows()] == ["bronze.t", "bronze.count", "bronze"]
    wrote, counted, step = rows["bronze.t"], rows["bronze.count"], rows["bronze"]
    assert (wrote.commits, wrote.files_written, wrote.rows_in) == (2, 3, 15)
    assert wrote.bytes_written > 0 and wrote.kind == "table"
    assert (counted.commits, counted.files_written) == (0, 0)
    # The table's four data files, and the three commit files Delta reads for the snapshot.
    assert counted.files_read == 7
    assert counted.bytes_read > 0
    assert step.kind == "step" and step.commits == 2
    assert step.spark_jobs == wrote.spark_jobs + counted.spark_jobs


def test_the_fair_floor_reads_a_cdc_day_typed_and_keeps_the_newest_row_per_key(
    spark: SparkSession, tmp_path: Path
) -> None:
    import datetime as dt
    import json

    from lakehouse.core.context import Lakehouse
    from lakehouse_dev.bench.floor import read_day, silver_batch

    spec = Lakehouse.load("local").table("orders")
    after = {
        "order_id": "o1",
        "customer_id": "c1",
        "order_ts": "2024-01-02T10:00:00Z",
        "status": "placed",
        "currency": "USD",
        "shipping_country": "DE",
    }
    lines = [
        {"op": "c", "lsn": 1, "before": None, "after": after},
        {"op": "u", "lsn": 3, "before": after, "after": {**after, "status": "shipped"}},
        {"op": "u", "lsn": 2, "before": after, "after": {**after, "status": "paid"}},
        {"op": "c", "lsn": 4, "before": None, "after": {**after, "order_id": "o2"}},
        {"op": "d", "lsn": 5, "before": {**after, "order_id": "o2"}, "after": None},
    ]
    path = tmp_path / "orders.jsonl"
    # A truncated line reads as all nulls, key included: left out, as silver's keys are NOT NULL.
    truncated = '{"op":"c","lsn":6,"before":null,"after":{"order_id":"o3"\n'
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + truncated)

    batch = silver_batch(spark, Lakehouse.load("local"), spec, read_day(spark, spec, [str(path)]))

    got = sorted(
        (r.order_id, r.status, r.order_date, r._lsn, r._is_deleted) for r in batch.collect()
    )
    assert got == [
        ("o1", "shipped", dt.date(2024, 1, 2), 3, False),
        ("o2", "placed", dt.date(2024, 1, 2), 5, True),
    ]


def test_the_history_copies_every_table_that_grows_by_day_and_no_other() -> None:
    from lakehouse.core.context import Lakehouse
    from lakehouse_dev.bench.lifetime import grown_tables

    grown = grown_tables(Lakehouse.load("local"))

    assert grown == {
        **{
            f"bronze.{s}": "ingest_date"
            for s in (
                "clickstream",
                "customers",
                "fx_rates",
                "order_items",
                "orders",
                "payments",
                "products",
            )
        },
        "silver.clickstream": "event_date",
        "silver.fx_rates": "rate_date",
        "silver.order_items": "order_date",
        "silver.orders": "order_date",
        "silver.payments": "event_date",
        "gold.daily_kpis": "order_date",
        "gold.daily_payments": "event_date",
        "gold.fact_orders": "order_date",
        "gold.fact_payments": "event_date",
        "gold.daily_funnel": "session_date",
        "gold.product_engagement": "date",
        "gold.sessions": "session_date",
    }
