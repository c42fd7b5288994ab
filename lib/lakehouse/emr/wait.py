"""Waiting for AWS work with sleep, capped exponential backoff and a deadline; never a busy loop.

`sleep` and `clock` are injected so tests run instantly with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from lakehouse.emr.definitions import WaitDef


class WaitTimeout(TimeoutError):
    """The deadline passed before the work reached a final state; `last_state` is what it was."""

    def __init__(self, what: str, last_state: str, waited_s: float) -> None:
        super().__init__(f"{what} still {last_state} after {waited_s:.0f}s: deadline reached")
        self.what = what
        self.last_state = last_state
        self.waited_s = waited_s


@dataclass(frozen=True)
class Backoff:
    """Delays between polls: `initial_s`, times `factor` after each poll, never above `max_s`,
    and never past `deadline_s` after the start."""

    initial_s: float
    max_s: float
    factor: float
    deadline_s: float

    @classmethod
    def from_def(cls, wait: WaitDef, deadline_minutes: float | None = None) -> Backoff:
        minutes = wait.deadline_minutes if deadline_minutes is None else deadline_minutes
        return cls(
            initial_s=wait.initial_delay_seconds,
            max_s=wait.max_delay_seconds,
            factor=wait.factor,
            deadline_s=minutes * 60.0,
        )

    def delays(self) -> Callable[[], float]:
        """A function returning the next delay each time it is called."""
        current = self.initial_s

        def next_delay() -> float:
            nonlocal current
            delay = min(current, self.max_s)
            current = min(current * self.factor, self.max_s)
            return delay

        return next_delay


def wait_for_state(
    what: str,
    poll: Callable[[], str],
    final: Collection[str] | Callable[[str], bool],
    backoff: Backoff,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_change: Callable[[str, str], None] | None = None,
) -> str:
    """Poll `poll()` until it returns a final state (one of `final`, or one `final(state)` holds
    for) and return that state.

    Calls `on_change(what, state)` each time the state changes (the first poll included). Raises
    `WaitTimeout` once `backoff.deadline_s` has passed; the caller decides what to do with the
    unfinished work (cancel it, typically).
    """
    is_final = final if callable(final) else final.__contains__
    start = clock()
    deadline = start + backoff.deadline_s
    next_delay = backoff.delays()
    last: str | None = None
    while True:
        state = poll()
        if state != last:
            if on_change is not None:
                on_change(what, state)
            last = state
        if is_final(state):
            return state
        now = clock()
        remaining = deadline - now
        if remaining <= 0:
            raise WaitTimeout(what, state, now - start)
        sleep(min(next_delay(), remaining))


def print_change(what: str, state: str) -> None:
    """The default state-change report: one line per change, flushed at once."""
    print(f"{what}: {state}", flush=True)
