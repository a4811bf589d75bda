"""Resources with a lifecycle: things that outlive one call and must be released exactly once.

An attempt's resources (a relay allocation, a port mapping, a background dial) are released when
the attempt ends, unless the plugin hands them to the pipe it returns (released when the pipe
closes) or to the node (released at ``Node.stop``). Release runs in reverse order of acquisition,
and one failing release does not stop the others.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Release = Callable[[], Awaitable[object] | object]


class Resources:
    """A stack of release callbacks. ``add(release)``, ``await aclose()`` (idempotent)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._stack: list[tuple[str, Release]] = []
        self.closed = False

    def __len__(self) -> int:
        return len(self._stack)

    def add(self, release: Release, what: str = "") -> None:
        if self.closed:
            raise RuntimeError(f"{self.owner}: resources already released")
        self._stack.append((what or getattr(release, "__qualname__", "resource"), release))

    def move_to(self, other: Resources) -> None:
        """Hand everything to ``other`` (e.g. from an attempt to the node that keeps the pipe)."""
        for what, release in self._stack:
            other.add(release, what)
        self._stack.clear()

    async def aclose(self) -> None:
        self.closed = True
        while self._stack:
            what, release = self._stack.pop()
            try:
                result = release()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # each release runs; a failure is logged with its traceback
                log.error("%s: releasing %s failed", self.owner, what, exc_info=exc)
