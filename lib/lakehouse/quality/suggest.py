"""Draft a quality suite from data with Deequ's `ConstraintSuggestionRunner`.

pydeequ 1.7's `DEFAULT()` rule set calls Scala default-argument methods that Deequ 2.0.7 does
not have (`FractionalCategoricalRangeRule.apply$default$3`), so the runner and the rules are
taken from the JVM (`com.amazon.deequ.suggestions`) directly.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from pyspark.sql import DataFrame, SparkSession

from lakehouse.core.context import Lakehouse

COMPLETE = re.compile(r'\.isComplete\("([^"]+)"\)')
COMPLETENESS = re.compile(r'\.hasCompleteness\("([^"]+)", _ >= ([0-9.]+)')
UNIQUE = re.compile(r'\.isUnique\("([^"]+)"\)')
NON_NEGATIVE = re.compile(r'\.isNonNegative\("([^"]+)"\)')
CONTAINED = re.compile(r'\.isContainedIn\("([^"]+)", Array\((.*?)\)\)')


def _check(suggestion: dict[str, Any]) -> dict[str, Any] | None:
    code = suggestion.get("code_for_constraint", "")
    column = suggestion.get("column_name", "")
    if m := COMPLETE.search(code):
        return {"name": f"{m.group(1)}_complete", "completeness": {"column": m.group(1)}}
    if m := COMPLETENESS.search(code):
        return {
            "name": f"{m.group(1)}_completeness",
            "severity": "warning",
            "completeness": {"column": m.group(1), "threshold": round(float(m.group(2)), 4)},
        }
    if m := UNIQUE.search(code):
        return {"name": f"{m.group(1)}_unique", "uniqueness": {"columns": [m.group(1)]}}
    if m := NON_NEGATIVE.search(code):
        return {"name": f"{m.group(1)}_non_negative", "non_negative": {"column": m.group(1)}}
    if (m := CONTAINED.search(code)) and "_ >=" not in code:
        values = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))
        return {"name": f"{m.group(1)}_allowed", "allowed": {"column": column, "values": values}}
    return None


def suggestions(spark: SparkSession, df: DataFrame) -> list[dict[str, Any]]:
    """Deequ's default-rule suggestions for `df` as dicts (`column_name`, `description`,
    `code_for_constraint`, ...)."""
    jvm = spark._jvm
    assert jvm is not None
    deequ = jvm.com.amazon.deequ.suggestions
    result = (
        deequ.ConstraintSuggestionRunner()
        .onData(df._jdf)
        .addConstraintRules(deequ.Rules.DEFAULT())
        .run()
    )
    payload = json.loads(deequ.ConstraintSuggestionResult.getConstraintSuggestionsAsJson(result))
    return list(payload.get("constraint_suggestions", []))


def suggest(spark: SparkSession, lh: Lakehouse, table: str) -> str:
    """A draft `conf/quality/<table>.yaml` for the lakehouse's table `table` (`layer.name`, read
    as stored, every column): see `draft_suite`."""
    layer, _, name = table.partition(".")
    return draft_suite(spark, spark.read.format("delta").load(lh.path(table)), layer, name)


def draft_suite(
    spark: SparkSession, df: DataFrame, layer: str = "silver", table: str = "draft"
) -> str:
    """A draft suite `<layer>.<table>.yaml` for `df` (any columns): Deequ's suggestions mapped
    to suite checks (error severity for exact rules, warning for observed completeness), and
    the suggestions with no suite kind left as comments. Review before committing."""
    checks: list[dict[str, Any]] = []
    skipped: list[str] = []
    names: set[str] = set()
    for s in suggestions(spark, df):
        check = _check(s)
        if check is None or check["name"] in names:
            skipped.append(f"{s.get('column_name')}: {s.get('code_for_constraint')}")
            continue
        names.add(check["name"])
        checks.append(check)
    draft = {
        "layer": layer,
        "table": table,
        "description": "Draft suggested by Deequ; review thresholds and severities.",
        "checks": checks,
    }
    text = yaml.safe_dump(draft, sort_keys=False, allow_unicode=True)
    if skipped:
        text += "# Suggestions with no suite kind (add as `sql` checks if wanted):\n"
        text += "".join(f"#   {line}\n" for line in skipped)
    return text
