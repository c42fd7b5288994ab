"""`python -m lakehouse.cli ...` runs the `lakehouse` command (where the script is not on PATH)."""

from lakehouse.cli import entry

entry()
