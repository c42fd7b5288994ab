"""Named crash points: where the crash suite kills a run (`lakehouse_dev.chaos`, tests only).

With `LAKEHOUSE_CRASH_AT=<name>` in the environment (or `<name>#<n>` for its n-th pass),
`crash_point(name)` ends the process there and then with `os._exit(CRASH_STATUS)`: no `finally`
block, no flush, no Spark shutdown, as `kill -9` would. Without it (always, outside the crash
suite) a crash point is one environment look-up.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

CRASH_ENV = "LAKEHOUSE_CRASH_AT"
CRASH_STATUS = 137

# Every crash point, in the order a daily run passes them; `lakehouse_dev.chaos.RUN_POINTS`
# trials those of a daily run (the maintenance and erasure ones are not trialled yet).
POINTS = (
    "bronze.written",  # bronze's records and quarantine committed, no ledger row yet
    "bronze.counted",  # bronze's ledger rows written, its files not marked ingested yet
    "silver.table_merged",  # a silver table merged, the next not yet (`#n`: after the n-th)
    "gold.staged",  # gold computed and cached, nothing checked or published
    "gold.table_published",  # a gold table published, the next not yet (`#n`)
    "gold.tables_published",  # every gold table written, the published set not recorded
    "maintain.table",  # `lakehouse maintain`: a table compacted, the others not yet
    "erase.bronze",  # `lakehouse erase`: bronze rewritten, silver and gold not yet
)

_passes: Counter[str] = Counter()


def crash_point(name: str) -> None:
    """End the process here if the crash suite asked for it (see the module docstring)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        sys.stderr.write(f"crash point {name} (pass {_passes[name]}): ending the process\n")
        sys.stderr.flush()
        os._exit(CRASH_STATUS)
