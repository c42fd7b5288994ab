"""The error the `lakehouse` command reports as a message (status 1) rather than a traceback."""

from __future__ import annotations


class UserError(RuntimeError):
    """A refusal or failure whose message tells the person at the terminal everything they need:
    a failed quality gate, a refused rollback, a retention below the time-travel window."""
