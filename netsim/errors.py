"""Lab errors: every failed command or daemon says what ran and what it printed."""

from __future__ import annotations

from collections.abc import Sequence


class NetsimError(Exception):
    """Base of every lab error."""


class CommandError(NetsimError):
    """A lab command exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, where: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        loc = f" in {where}" if where else ""
        super().__init__(f"command failed{loc} (exit {returncode}): {' '.join(argv)}\n{stderr.strip()}")


class DaemonError(NetsimError):
    """A daemon did not start (or died); the message carries the tail of its log."""


class UsageError(NetsimError):
    """Bad input on the command line or in a file: the CLI exits 2 (other failures exit 1)."""


class ScenarioError(UsageError):
    """A scenario or topology description is invalid; the message names the file and key."""
