"""The landing contract's sources as bronze sees them (`conf/sources.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lakehouse.core.config import DEFAULT_CONF_DIR, load_typed_yaml


@dataclass(frozen=True)
class SourceSpec:
    """How one source is delivered: CDC JSON lines, plain JSON lines or CSV with a header."""

    format: Literal["cdc", "jsonl", "csv"]
    snapshot: bool = False
    required_columns: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SourcesFile:
    sources: dict[str, SourceSpec]


def load_sources(conf_dir: str | Path | None = None) -> dict[str, SourceSpec]:
    """All sources by name, in the order the file lists them."""
    path = Path(conf_dir or DEFAULT_CONF_DIR) / "sources.yaml"
    return load_typed_yaml(path, SourcesFile).sources
