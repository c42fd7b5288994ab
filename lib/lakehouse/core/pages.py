"""The HTML pages people read (the KPI dashboard; docs/REPORTS.md): Jinja2 templates from
`lakehouse/templates/`, charts drawn in the browser by plotly.js, inlined, so that each page is one
file that opens offline, from a laptop's disk or an S3 download, with nothing fetched.

Why these two: templates keep markup out of Python (the pages were built by string concatenation);
plotly.js handles axes, number formats (`$10M`), hover and zoom, which the hand-drawn SVG did not,
and it ships inside the pure-Python `plotly` wheel, so the EMR bundle (a zip on `--py-files`)
carries it with no compiled code. Its cost is size: about 4.8 MB of script per page.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from typing import Any

import jinja2


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lakehouse", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def plotly_js() -> str:
    """plotly.js (minified) as the `plotly` wheel ships it, to inline in a `<script>`. Read
    through the package's loader without importing plotly, so it works from site-packages and
    from the EMR bundle's zip, which carries this one file of plotly (emr/bundle.yaml)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None or spec.loader is None:
        raise RuntimeError("plotly is not installed: the report pages inline its plotly.js")
    path = os.path.join(os.path.dirname(spec.origin), "package_data", "plotly.min.js")
    data: bytes = spec.loader.get_data(path)  # type: ignore[attr-defined]
    return data.decode("utf-8")


# Inside <script>, "</script" ends the element and "<!--" changes how the parser looks for the
# end; JSON's \u escapes of <, > and & (and of the two line separators JavaScript once refused)
# leave no markup in the text and the same value after JSON.parse.
_SCRIPT_SAFE = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def script_json(value: Any, indent: int | None = None) -> str:
    """`value` as JSON that is safe inside a `<script>` element, whatever its strings hold."""
    text = json.dumps(
        value, sort_keys=True, indent=indent, separators=None if indent else (",", ":")
    )
    return text.translate(_SCRIPT_SAFE)


def render(template: str, **context: Any) -> str:
    """Template `template` (under lakehouse/templates/) with `context`, plus `plotly_js`."""
    return _environment().get_template(template).render(plotly_js=plotly_js(), **context)
