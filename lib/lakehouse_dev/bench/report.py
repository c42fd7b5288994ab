"""The benchmark's results: figures and their targets, the Markdown section of
`docs/BENCHMARKS.md`, the JSON file and the chart.

Everything here is pure except the three writers at the end: a results dict (as the runner makes
it, see `lakehouse_dev.bench.runner`) goes in, rows with a verdict come out. A figure is a ratio
(or a count, or bytes) computed from the medians of its samples; its verdict is `met`, `missed`, or
`reported` when the issue sets no target.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class Target:
    """`value <= limit` (or `==` for an exact count); `aim` marks a goal the issue only asks to
    report ("aim to be no slower"), shown as met/missed all the same."""

    limit: float
    op: str = "<="
    aim: bool = False

    def met(self, value: float) -> bool:
        if self.op == "==":
            return value == self.limit
        return value <= self.limit

    def describe(self, unit: str = "") -> str:
        text = f"{self.op} {_fmt(self.limit)}{unit}"
        return f"aim {text}" if self.aim else text


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    key: str
    figure: str
    measured: str
    value: str
    target: str
    verdict: str  # met | missed | reported | not measured


def median(samples: Sequence[float]) -> float:
    """The median of the samples (the mean of the middle two for an even count)."""
    if not samples:
        raise ValueError("no samples")
    return float(statistics.median(samples))


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """median(numerator) / median(denominator)."""
    return median(numerator) / median(denominator)


def _times(n: object) -> str:
    return "once" if n == 1 else f"{n if n is not None else '?'} times"


def _pipeline_orders(params: dict[str, Any]) -> int:
    return int(params.get("pipeline_orders_per_day") or params.get("orders_per_day") or 0)


def _fmt(x: float) -> str:
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:.2f}"


def _s(samples: Sequence[float]) -> str:
    return f"{median(samples):.1f} s"


def _verdict(target: Target | None, value: float) -> str:
    if target is None:
        return "reported"
    return "met" if target.met(value) else "missed"


def evaluate(results: dict[str, Any]) -> list[Row]:
    """The results table: one row per figure of issue #8, in the issue's order. A figure whose
    samples are missing (a measurement skipped or failed) is `not measured`."""
    f = results.get("figures", {})
    p = results.get("params", {})
    rows: list[Row] = []

    def missing(key: str, figure: str, target: str) -> None:
        reason = f.get(key, {}).get("error", "not measured")
        rows.append(Row(key, figure, reason, "-", target, "not measured"))

    h = f.get("history")
    hist_target = Target(1.25)
    if h and h.get("small") and h.get("large"):
        value = ratio(h["large"], h["small"])
        rows.append(
            Row(
                "history",
                "history independence",
                f"silver MERGE of one day ({_fmt(p.get('orders_per_day', 0))} orders with items "
                f"and payments): {h['large_days']} days of history {_s(h['large'])} vs "
                f"{h['small_days']} days {_s(h['small'])}",
                f"{value:.2f}x",
                hist_target.describe("x"),
                _verdict(hist_target, value),
            )
        )
    else:
        missing("history", "history independence", hist_target.describe("x"))

    r = f.get("replay")
    replay_target, files_target = Target(0.1), Target(0, "==")
    if r and r.get("first") and r.get("replay"):
        value = ratio(r["replay"], r["first"])
        added = max(r["files_added"])
        ok = replay_target.met(value) and files_target.met(added)
        rows.append(
            Row(
                "replay",
                "idempotent replay",
                f"same day again through bronze, silver, quality, gold: {_s(r['replay'])} vs "
                f"first run {_s(r['first'])}; data files added by the replay (bronze, silver, "
                f"gold): {added}",
                f"{value:.2f}x, {added} files",
                f"{replay_target.describe('x')}; files added = 0",
                "met" if ok else "missed",
            )
        )
    else:
        missing("replay", "idempotent replay", "<= 0.1x; files added = 0")

    pl = f.get("pipeline")
    floor_target = Target(4.0)
    if pl and pl.get("with_quality") and pl.get("floor"):
        value = ratio(pl["with_quality"], pl["floor"])
        rows.append(
            Row(
                "floor",
                "cost over the floor (issue #8's floor)",
                f"daily pipeline (bronze, silver, quality, gold) {_s(pl['with_quality'])} vs "
                f"one plain read of the day's landing files written once as Parquet "
                f"{_s(pl['floor'])}",
                f"{value:.2f}x",
                floor_target.describe("x"),
                _verdict(floor_target, value),
            )
        )
    else:
        missing("pipeline", "cost over the floor (issue #8's floor)", floor_target.describe("x"))

    fair_target = Target(2.0)
    if pl and pl.get("with_quality") and pl.get("fair_floor"):
        value = ratio(pl["with_quality"], pl["fair_floor"])
        rows.append(
            Row(
                "fair_floor",
                "whole pipeline / fair floor",
                f"daily pipeline {_s(pl['with_quality'])} vs the fair floor "
                f"{_s(pl['fair_floor'])}: per source one read of the day's files with Spark's "
                "reader and a typed schema, the newest row per key, one MERGE into silver; one "
                "replaceWhere write per gold table (`bench/floor.py` says what it leaves out)",
                f"{value:.2f}x",
                fair_target.describe("x"),
                _verdict(fair_target, value),
            )
        )
    else:
        reason = (pl or {}).get("fair_floor_error") or (pl or {}).get("error", "not measured")
        rows.append(
            Row(
                "fair_floor",
                "whole pipeline / fair floor",
                reason,
                "-",
                fair_target.describe("x"),
                "not measured",
            )
        )

    quality_target = Target(1.1)
    if pl and pl.get("with_quality") and pl.get("without_quality"):
        value = ratio(pl["with_quality"], pl["without_quality"])
        rows.append(
            Row(
                "quality",
                "quality overhead",
                f"daily pipeline with the Deequ suites {_s(pl['with_quality'])} vs without "
                f"{_s(pl['without_quality'])}",
                f"{value:.2f}x",
                quality_target.describe("x"),
                _verdict(quality_target, value),
            )
        )
    else:
        missing("quality", "quality overhead", quality_target.describe("x"))

    peer = f.get("peer")
    peer_target = Target(1.5)
    if peer and peer.get("spark") and peer.get("deltars"):
        value = ratio(peer["spark"], peer["deltars"])
        rows.append(
            Row(
                "peer",
                "against a peer engine",
                f"the same MERGEs into copies of the same silver tables "
                f"({', '.join(peer.get('tables', []))}): Spark {_s(peer['spark'])} vs "
                f"delta-rs {_s(peer['deltars'])} (ratio = Spark / delta-rs)",
                f"{value:.2f}x",
                peer_target.describe("x"),
                _verdict(peer_target, value),
            )
        )
    else:
        missing("peer", "against a peer engine", peer_target.describe("x"))

    work = (pl or {}).get("work", {}).get("first run")
    jobs_target = Target(150)
    if work:
        rows.append(
            Row(
                "jobs",
                "Spark jobs per daily run",
                "Spark jobs the first run of the day started (bronze, silver, quality, gold, "
                f"reports, catalog; last repetition); Delta commits: {work['delta_commits']}",
                f"{work['spark_jobs']:,}",
                jobs_target.describe(),
                _verdict(jobs_target, work["spark_jobs"]),
            )
        )
    else:
        missing("pipeline", "Spark jobs per daily run", jobs_target.describe())

    life = f.get("lifetime")
    life_target = Target(1.2)
    if (
        life
        and life.get("days")
        and life.get("same_ledger", True)
        and all(life.get("samples", {}).get(str(d)) for d in life["days"])
    ):
        days = life["days"]
        small, large = life["samples"][str(days[0])], life["samples"][str(days[-1])]
        value = ratio(large, small)
        rows.append(
            Row(
                "lifetime",
                "whole pipeline at any age",
                f"the whole daily pipeline on a day of {_fmt(life['orders_per_day'])} orders with "
                + ", ".join(f"{d} days of history {_s(life['samples'][str(d)])}" for d in days)
                + f" (ratio = {days[-1]} / {days[0]} days)",
                f"{value:.2f}x",
                life_target.describe("x"),
                _verdict(life_target, value),
            )
        )
    else:
        if life and life.get("same_ledger") is False:
            life = {**life, "error": "the measured day's ledger differed between histories"}
            f = {**f, "lifetime": life}
        missing("lifetime", "whole pipeline at any age", life_target.describe("x"))

    m = f.get("memory")
    mem_target = Target(6.0)
    if m and m.get("peak_rss_bytes"):
        value = m["peak_rss_bytes"] / GIB
        rows.append(
            Row(
                "memory",
                "memory",
                "peak resident memory of the benchmark process and its children (the Spark "
                f"JVM, Python workers), sampled every {m.get('interval_s', 0.5)} s "
                f"({m.get('measure', 'RSS sum')}"
                + (
                    f"; RSS sum, counting pages shared by forked workers once per process: "
                    f"{m['peak_rss_sum_bytes'] / GIB:.2f} GiB)"
                    if m.get("peak_rss_sum_bytes")
                    and m.get("peak_rss_sum_bytes") != m.get("peak_rss_bytes")
                    else ")"
                )
                + (
                    "; at the peak: "
                    + ", ".join(
                        f"{kind} {size / GIB:.2f} GiB"
                        for kind, size in sorted(m["peak_parts"].items(), key=lambda kv: -kv[1])
                    )
                    if m.get("peak_parts")
                    else ""
                ),
                f"{value:.2f} GiB",
                mem_target.describe(" GiB"),
                _verdict(mem_target, value),
            )
        )
    else:
        missing("memory", "memory", mem_target.describe(" GiB"))

    if pl and pl.get("with_quality") and _pipeline_orders(p):
        value = _pipeline_orders(p) / median(pl["with_quality"])
        rows.append(
            Row(
                "throughput",
                "throughput",
                f"{_fmt(_pipeline_orders(p))} orders (and the day's other sources) through the "
                f"whole daily pipeline in {_s(pl['with_quality'])}",
                f"{value:,.0f} orders/s",
                "report",
                "reported",
            )
        )
    else:
        missing("throughput", "throughput", "report")
    return rows


# --- rendering -------------------------------------------------------------------------------


def section_name(results: dict[str, Any]) -> str:
    """The section a run writes: its scale's, unless it was given another (`--section`, for a
    run that measures part of a scale and must not replace that scale's section)."""
    return str(results.get("section") or results["scale"])


def markers(scale: str) -> tuple[str, str]:
    return (f"<!-- bench:{scale}:start -->", f"<!-- bench:{scale}:end -->")


def _samples_table(results: dict[str, Any]) -> list[str]:
    f = results.get("figures", {})
    lines = ["| measurement | samples (s, in run order) | median (s) |", "| --- | --- | --- |"]
    named = [
        ("history", "small", "silver MERGE, {small_days} days of history"),
        ("history", "large", "silver MERGE, {large_days} days of history"),
        ("pipeline", "with_quality", "daily pipeline with quality (first run of the day)"),
        ("replay", "replay", "the same day again (replay)"),
        ("pipeline", "without_quality", "daily pipeline without quality"),
        ("pipeline", "floor", "floor: landing files read once, written once as Parquet"),
        ("pipeline", "fair_floor", "fair floor: typed reads, one MERGE per source, gold rewrites"),
        ("peer", "spark", "Spark MERGEs (Delta Lake)"),
        ("peer", "deltars", "delta-rs MERGEs"),
    ]
    life = f.get("lifetime", {})
    for d in life.get("days", []):
        samples = life.get("samples", {}).get(str(d))
        if samples:
            lines.append(
                f"| whole pipeline, {d} days of history | "
                f"{', '.join(f'{s:.1f}' for s in samples)} | {median(samples):.1f} |"
            )
    for fig, key, label in named:
        samples = f.get(fig, {}).get(key)
        if not samples:
            continue
        label = label.format(**{k: v for k, v in f.get(fig, {}).items() if k.endswith("_days")})
        lines.append(
            f"| {label} | {', '.join(f'{s:.1f}' for s in samples)} | {median(samples):.1f} |"
        )
    return lines


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f}"


def _n(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def steps_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One run's per-step record (`steps.StepRecorder`): a row per table, then its step's."""
    out = [
        "| step / table | s | Spark jobs | rows in | rows written | read MB (files) "
        "| commits | written files (MB) | files removed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        name = f"**{r['name']}**" if r["kind"] == "step" else r["name"]
        out.append(
            f"| {name} | {r['seconds']:.1f} | {r['spark_jobs']:,} | {_n(r.get('rows_in'))} "
            f"| {_n(r.get('rows_written'))} | {_mb(r['bytes_read'])} ({_n(r['files_read'])}) "
            f"| {r['commits']} | {r['files_written']:,} ({_mb(r['bytes_written'])}) "
            f"| {r['files_removed']:,} |"
        )
    return out


def lifetime_table(life: dict[str, Any]) -> list[str]:
    """Seconds and reads of each step and table, side by side for each history."""
    days = [str(d) for d in life.get("days", []) if life.get("steps", {}).get(str(d))]
    if not days:
        return []
    head = " | ".join(f"{d} days: s, read MB (files)" for d in days)
    out = [f"| step / table | {head} |", "| --- |" + " --- |" * len(days)]
    by_day = {d: {r["name"]: r for r in life["steps"][d]} for d in days}
    for r in life["steps"][days[0]]:
        name = f"**{r['name']}**" if r["kind"] == "step" else r["name"]
        cells = []
        for d in days:
            x = by_day[d].get(r["name"])
            cells.append(
                "-"
                if x is None
                else f"{x['seconds']:.1f}, {_mb(x['bytes_read'])} ({_n(x['files_read'])})"
            )
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def render_section(results: dict[str, Any], json_name: str, png_name: str) -> str:
    """The Markdown for one scale, between its marker comments."""
    scale = results["scale"]
    section = section_name(results)
    m = results.get("machine", {})
    p = results.get("params", {})
    rows = evaluate(results)
    start, end = markers(section)
    out = [
        start,
        f"## `make bench` at scale `{scale}` (issues #8, #17)"
        + ("" if section == scale else f": section `{section}`"),
        "",
        "Generated by `python -m lakehouse_dev.bench`; every number below comes from the run this "
        "section names. Do not edit by hand: run the command again.",
        "",
        f"- Command: `{results.get('command', '')}` (from the project folder)",
        f"- Date: {results.get('started_at', '')} to {results.get('finished_at', '')} UTC "
        f"({results.get('wall_s', 0) / 60:.1f} min in all, data preparation included)",
        f"- Machine: {m.get('cores', '?')} cores, {m.get('memory_gib', 0):.1f} GiB, "
        f"{m.get('os', '')}; load average at start {m.get('load_start', '?')}, "
        f"at end {m.get('load_end', '?')}",
        f"- Versions: Python {m.get('python', '?')}, Java {m.get('java', '?')}, "
        f"PySpark {m.get('pyspark', '?')}, delta-spark {m.get('delta_spark', '?')}, "
        f"Deequ {m.get('deequ', '?')}, deltalake (delta-rs) {m.get('deltalake', '?')}",
        f"- Spark: {p.get('master', '?')}, driver memory {p.get('driver_memory', '?')}, "
        f"{p.get('shuffle_partitions', '?')} shuffle partitions",
        f"- Data: the real generator (seed {p.get('seed', '?')}, its default defects, "
        f"{_fmt(p.get('customers', 0))} customers), two days; history and peer figures on a "
        f"day of {_fmt(p.get('orders_per_day', 0))} orders, whole-pipeline figures on a day "
        f"of {_fmt(_pipeline_orders(p))} orders (all seven sources)"
        + (
            "; **the whole-pipeline figures run day 1 into an empty lakehouse** (the quick "
            "check: no setup run of day 1, so its first run is also the process's first "
            "pipeline run, the JVM's warm-up included; the default scale runs day 2 on top of "
            "day 1)"
            if p.get("pipeline_day") == 1
            else "; the whole-pipeline figures run day 2 on top of day 1"
        ),
        f"- Repetitions: each pair measured {_times(p.get('reps'))}"
        + (
            f" ({'once' if p['pipeline_reps'] == 1 else p['pipeline_reps']} for the "
            "whole-pipeline figures)"
            if p.get("pipeline_reps") not in (None, p.get("reps"))
            else ""
        )
        + ", alternately, in this one process; "
        + ("medians reported, " if p.get("reps") != 1 else "")
        + f"every sample below and in [`{json_name}`]({json_name})"
        + (
            "; **one repetition gives no median: a quick check of every code path, not a "
            "measurement**"
            if 1 in (p.get("reps"), p.get("pipeline_reps"))
            else ""
        ),
    ]
    if m.get("busy"):
        out.append(
            "- **The machine was busy**: other processes (other engineers' Spark tests) were "
            "running when the measurement started, so times are slower and noisier than on a "
            "quiet machine."
        )
    out += [
        "",
        "| figure | how it is measured | value | target | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        verdict = {"met": "met", "missed": "**missed**", "reported": "reported"}.get(
            r.verdict, f"**{r.verdict}**"
        )
        out.append(f"| {r.figure} | {r.measured} | {r.value} | {r.target} | {verdict} |")
    missed = [r for r in rows if r.verdict == "missed"]
    unmeasured = [r for r in rows if r.verdict == "not measured"]
    out += [""]
    if missed:
        out.append(
            "Targets missed in this run: "
            + ", ".join(f"**{r.figure}**" for r in missed)
            + ". Causes and fixes are under *Findings* below."
        )
    if unmeasured:
        out.append(
            "Not measured in this run: "
            + ", ".join(f"**{r.figure}**" for r in unmeasured)
            + " (see *Findings* below)."
        )
    if not missed and not unmeasured:
        out.append("Every target with a limit is met in this run.")
    out += ["", f"![benchmark chart]({png_name})", "", "Samples:", "", *_samples_table(results)]
    f = results.get("figures", {})
    for label, key in (("first run of the day", "first run"), ("replay", "replay")):
        recorded = f.get("pipeline", {}).get("steps", {}).get(key)
        if recorded:
            out += ["", f"Per step, the {label} (last repetition; `steps.py` says how):", ""]
            out += steps_table(recorded)
    life = f.get("lifetime")
    if life and life.get("steps"):
        out += [
            "",
            f"Per step, the whole pipeline on a day of {_fmt(life['orders_per_day'])} orders at "
            "each age (last repetition; `lifetime.py` says how the history is made; the "
            "measured day's ledger rows were "
            + ("identical" if life.get("same_ledger") else "**not identical**")
            + " at every age):",
            "",
        ]
        out += lifetime_table(life)
    details = results.get("details", [])
    if details:
        out += ["", "Details measured in the same run:", ""]
        out += [f"- {d}" for d in details]
    out += ["", end]
    return "\n".join(out)


def splice(document: str, section: str, scale: str) -> str:
    """Replace the scale's section between its markers, or append it at the end."""
    start, end = markers(scale)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    return document.rstrip("\n") + "\n\n" + section + "\n"


# --- writers ---------------------------------------------------------------------------------


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    return path


def write_chart(results: dict[str, Any], path: Path) -> Path:
    """Two panels: each ratio against its target, and the median times of each pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r.key: r for r in evaluate(results)}
    f = results.get("figures", {})
    ratios = []
    for key, label, limit in (
        (
            "history",
            f"history\n({f.get('history', {}).get('large_days', '?')} vs "
            f"{f.get('history', {}).get('small_days', '?')} days)",
            1.25,
        ),
        ("lifetime", "whole pipeline\n(oldest vs youngest)", 1.2),
        ("replay", "replay\n(vs first run)", 0.1),
        ("floor", "pipeline\nvs #8 floor", 4.0),
        ("fair_floor", "pipeline\nvs fair floor", 2.0),
        ("quality", "with vs without\nquality", 1.1),
        ("peer", "Spark vs\ndelta-rs", 1.5),
    ):
        row = rows.get(key)
        if row is None or row.verdict == "not measured":
            continue
        value = float(row.value.split("x")[0])
        ratios.append((label, value, limit, row.verdict))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"met": "#2e7d32", "missed": "#c62828", "reported": "#1565c0"}
    for i, (_label, value, limit, verdict) in enumerate(ratios):
        ax1.bar(i, value, color=colors.get(verdict, "grey"))
        ax1.hlines(limit, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
        ax1.text(i, value, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    ax1.set_xticks(range(len(ratios)), [r[0] for r in ratios], fontsize=8)
    ax1.set_yscale("log")
    ax1.set_ylabel("ratio, log scale (dashed: target)")
    ax1.set_title("ratios against targets (green met, red missed)")
    pairs = []
    for fig_key, a, b, label in (
        ("history", "small", "large", "silver MERGE"),
        ("replay", "first", "replay", "first run / replay"),
        ("pipeline", "with_quality", "without_quality", "with / without quality"),
        ("pipeline", "with_quality", "floor", "pipeline / floor"),
        ("pipeline", "with_quality", "fair_floor", "pipeline / fair floor"),
        ("peer", "spark", "deltars", "Spark / delta-rs MERGE"),
    ):
        data = f.get(fig_key, {})
        if data.get(a) and data.get(b):
            pairs.append((label, median(data[a]), median(data[b])))
    for i, (_label, x, y) in enumerate(pairs):
        ax2.bar(i - 0.2, x, width=0.4, color="#546e7a")
        ax2.bar(i + 0.2, y, width=0.4, color="#90a4ae")
    ax2.set_xticks(range(len(pairs)), [p[0] for p in pairs], fontsize=8, rotation=15)
    ax2.set_ylabel("median seconds (dark: first of the pair)")
    ax2.set_title(f"median times, scale {results.get('scale')}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_markdown(results: dict[str, Any], doc: Path, json_path: Path, png_path: Path) -> Path:
    """Put the scale's section into `doc` (created if missing), links relative to it."""
    rel_json = json_path.resolve().relative_to(doc.resolve().parent).as_posix()
    rel_png = png_path.resolve().relative_to(doc.resolve().parent).as_posix()
    section = render_section(results, rel_json, rel_png)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    doc.write_text(splice(text, section, section_name(results)))
    return doc
