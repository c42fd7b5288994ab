"""The report pages opened in a real browser: headless Chromium (Debian's `chromium` package,
`make browser`) driven by Playwright, from `file://`, as a person opens a downloaded report.

`inspect_page` loads a page at a laptop's width, waits for every chart, and measures what a reader
would notice: console errors, any request beyond the file itself (a self-contained page makes
none), charts left empty, elements wider than their box or the window, axis labels cut off. It
writes a screenshot next to the page. `python -m lakehouse_dev.browser PAGE...` does the same for
pages on disk (`make pages`: the last run's dashboard, and a large made-up shop's).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("LAKEHOUSE_CHROMIUM", "/usr/bin/chromium")
# The flags this machine's probe needed: no sandbox as root, and no background connections
# (refused, many at a time, on a closed network).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LAPTOP = {"width": 1366, "height": 768}


class BrowserMissing(RuntimeError):
    """No Chromium where the tests look for it; the message says how to install it."""


# Measured in the page: elements wider than their own box (outside boxes that scroll on purpose
# and outside the charts' SVG, which plotly sizes itself), the document against the window, and
# each chart's tick and legend labels against the chart's box.
_MEASURE = """() => {
  const scrolls = (e) => {
    const o = getComputedStyle(e).overflowX;
    return o === 'auto' || o === 'scroll';
  };
  const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
    (typeof e.className === 'string' && e.className ? '.' + e.className.replace(/ /g, '.') : '');
  const overflowing = [];
  for (const e of document.querySelectorAll('body *')) {
    if (e.closest('svg') || e.closest('[data-chart]')) continue;
    if (e.scrollWidth > e.clientWidth + 1 && !scrolls(e) && e.clientWidth > 0)
      overflowing.push(name(e) + ' ' + e.scrollWidth + '>' + e.clientWidth);
  }
  const clipped = [];
  const charts = {};
  for (const div of document.querySelectorAll('[data-chart]')) {
    const box = div.getBoundingClientRect();
    const id = div.getAttribute('data-chart');
    const marks = div.querySelectorAll(
      '.bars path, .scatterlayer path.js-line, .heatmaplayer image, .hm image');
    charts[id] = {
      svg: div.querySelectorAll('svg.main-svg').length,
      marks: marks.length,
      ticks: Array.from(div.querySelectorAll('.ytick text')).map((t) => t.textContent),
    };
    const labels = '.xtick text, .ytick text, .legendtext, .g-ytitle, .g-xtitle';
    for (const t of div.querySelectorAll(labels)) {
      const r = t.getBoundingClientRect();
      if (r.width === 0) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1 ||
          r.top < box.top - 1 || r.bottom > box.bottom + 1)
        clipped.push(id + ': ' + t.textContent);
    }
  }
  const doc = document.documentElement;
  return {overflowing, clipped, charts,
          pageWidth: doc.scrollWidth, windowWidth: window.innerWidth};
}"""


@dataclass
class PageCheck:
    """What a page showed in the browser (`inspect_page`)."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # beyond the page's own file
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    overflowing: list[str] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)
    page_width: int = 0
    window_width: int = 0
    screenshot: str = ""
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """Everything a reader would call broken, in words; empty for a good page."""
        out = [f"console error: {m}" for m in self.console_errors]
        out += [f"request beyond the file: {u}" for u in self.requests]
        out += [f"chart {c} drew nothing" for c, v in self.charts.items() if not v["marks"]]
        out += [f"wider than its box: {e}" for e in self.overflowing]
        out += [f"label outside its chart: {e}" for e in self.clipped]
        if self.page_width > self.window_width:
            out.append(f"page {self.page_width}px wide in a {self.window_width}px window")
        return out


def chromium_path() -> str:
    """Chromium's executable, or BrowserMissing saying how to install it."""
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if not path:
        raise BrowserMissing(
            f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium package "
            "(or set LAKEHOUSE_CHROMIUM to a Chromium or Chrome executable)"
        )
    return path


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium for the block (Playwright's Browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()


def inspect_page(
    chromium: Any,
    page_path: Path,
    screenshot: Path | None = None,
    texts: Sequence[str] = (),
    viewport: dict[str, int] = LAPTOP,
) -> PageCheck:
    """Open `page_path` at `viewport`, wait for its charts, measure it (`PageCheck`), keep the
    text of each CSS selector in `texts`, and write a full-page screenshot to `screenshot`
    (default: `<page>.png` beside the page)."""
    url = page_path.resolve().as_uri()
    check = PageCheck(url)
    page = chromium.new_page(viewport=viewport)
    try:
        page.on(
            "console",
            lambda m: check.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: check.console_errors.append(str(e)))

        # Every request beyond the page's own file is recorded and refused before it leaves the
        # machine: a self-contained page makes none.
        def refuse(route: Any) -> None:
            check.requests.append(route.request.url)
            route.abort()

        page.route(lambda u: u != url and not u.startswith(("data:", "blob:")), refuse)
        page.goto(url, wait_until="load")
        # Folded sections unfolded: their charts are drawn and measured, and the screenshot
        # shows everything.
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        page.wait_for_function(
            "Array.from(document.querySelectorAll('[data-chart]'))"
            ".every((d) => d.querySelector('svg.main-svg'))",
            timeout=30_000,
        )
        measured = page.evaluate(_MEASURE)
        check.charts = measured["charts"]
        check.overflowing = measured["overflowing"]
        check.clipped = measured["clipped"]
        check.page_width = measured["pageWidth"]
        check.window_width = measured["windowWidth"]
        for selector in texts:
            check.texts[selector] = page.inner_text(selector)
        shot = screenshot or page_path.with_suffix(".png")
        page.screenshot(path=str(shot), full_page=True)
        check.screenshot = str(shot)
    finally:
        page.close()
    return check


def write_samples(folder: Path) -> list[Path]:
    """The dashboards of a small made-up shop and of one taking about $20M a day (60 days)."""
    from lakehouse.gold.dashboard import render_dashboard
    from lakehouse_dev.kpi_samples import synthetic_kpis

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, data in (
        ("dashboard-small.html", synthetic_kpis(days=5, orders_per_day=100)),
        ("dashboard-large.html", synthetic_kpis(days=60, orders_per_day=200_000, order_value=100)),
    ):
        path = folder / name
        path.write_text(render_dashboard(data), encoding="utf-8")
        out.append(path)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse_dev.browser",
        description="Open report pages in headless Chromium at 1366 px, report what is broken "
        "and write a screenshot beside each page.",
    )
    parser.add_argument("pages", nargs="*", type=Path)
    parser.add_argument(
        "--samples",
        type=Path,
        metavar="DIR",
        help="also write the dashboards of a small and a large made-up shop into DIR "
        "(lakehouse_dev.kpi_samples) and open them",
    )
    args = parser.parse_args(argv)
    pages = [p for p in args.pages if p.exists()]
    for missing in sorted(set(args.pages) - set(pages)):
        print(f"{missing}: not there (run `make run` first), skipped")
    if args.samples:
        pages += write_samples(args.samples)
    failed = False
    with browser() as chromium:
        for path in pages:
            check = inspect_page(chromium, path)
            status = "ok" if not check.problems else "PROBLEMS"
            print(f"{path}: {status}, screenshot {check.screenshot}")
            for problem in check.problems:
                print(f"  {problem}")
            failed |= bool(check.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
