"""The `lakehouse` command. Each area registers its own subcommands (`register(subparsers)`), so
this file stays a thin dispatcher and `jobs/*.py` call the same functions."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lakehouse.config import ENVIRONMENTS, ConfigError
from lakehouse.errors import UserError

# Modules that add subcommands; each has `register(subparsers)` and sets `func(args) -> int`.
COMMAND_MODULES = (
    "lakehouse.commands",
    "lakehouse.history_commands",
    "lakehouse.maintenance_commands",
    "lakehouse.emr.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    parser.add_argument(
        "--env", default="local", choices=ENVIRONMENTS, help="configuration overlay conf/<env>.yaml"
    )
    parser.add_argument("--conf-dir", default=None, help="configuration folder (default: ./conf)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
