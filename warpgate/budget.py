"""The node's inbox budget: the bytes all of its pipes hold unread, and in flight.

Each pipe's inbox is bounded (``pipe.INBOX_BYTES`` and ``queue_size`` messages), but a node holds
many pipes: 64 pipes nobody reads, each with a full inbox and a 16 MiB frame being read, would
cost gigabytes. So every pipe of a node also draws on one budget (``NODE_INBOX_BYTES``): a message
is charged when it enters an inbox (and a TCP frame before its body is read) and refunded when
the application takes it. When the budget is short, the pipe that holds the most goes first
(closed, its unread messages dropped: ``evicted``), unless the pipe asking holds as much itself:
then a TCP pipe stops reading until there is room (its peer slows down through TCP flow
control), and a UDP message is dropped (``pipe.dropped``). A closed pipe's unread messages go
before anyone's. One message fits into an empty budget whatever its size, so nothing deadlocks.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from warpgate.errors import PipeClosed


class Pipe(Protocol):
    """What the budget needs of a pipe (``warpgate.pipe.Pipe`` provides it)."""

    @property
    def closed(self) -> bool: ...
    @property
    def close_reason(self) -> str | None: ...
    def _evict(self, reason: str) -> None: ...


NODE_INBOX_BYTES = 64 * 1024 * 1024
EVICTED = "closed: its unread messages held the node's inbox budget"


class InboxBudget:
    def __init__(self, limit: int = NODE_INBOX_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self.held: dict[Pipe, int] = {}
        self.flight: dict[Pipe, int] = {}
        """Of ``held``: a TCP frame being read, which nobody can read yet."""
        self.evicted = 0
        """Pipes closed to make room."""
        self._freed: asyncio.Future[None] | None = None

    def unread(self, pipe: Pipe) -> int:
        """What ``pipe`` holds that its application could read now (not in flight)."""
        return self.held.get(pipe, 0) - self.flight.get(pipe, 0)

    def try_take(self, pipe: Pipe, n: int, *, flight: bool = False) -> bool:
        """Charge ``n`` bytes to ``pipe`` if they fit (``flight``: a frame about to be read),
        making room from the biggest holder of unread bytes if it holds more than ``pipe``; False
        when they do not fit."""
        if pipe.closed:
            return False
        while self.used and self.used + n > self.limit:
            hog = self._victim(pipe)
            if hog is None:
                return False
            self.used -= self.held.pop(hog)
            self.flight.pop(hog, None)
            self.evicted += 1
            hog._evict(EVICTED)
        self.used += n
        self.held[pipe] = self.held.get(pipe, 0) + n
        if flight:
            self.flight[pipe] = self.flight.get(pipe, 0) + n
        return True

    def landed(self, pipe: Pipe, n: int) -> None:
        """``n`` bytes of ``pipe``'s frame in flight are in its inbox now (readable)."""
        left = self.flight.get(pipe, 0) - n
        if left > 0:
            self.flight[pipe] = left
        else:
            self.flight.pop(pipe, None)

    def _victim(self, pipe: Pipe) -> Pipe | None:
        """Who goes to make room for ``pipe``: a closed pipe's unread bytes first (nobody may read
        them any more), else the biggest holder if it holds more than ``pipe``."""
        closed = [p for p in self.held if p.closed and p is not pipe]
        if closed:
            return max(closed, key=self.held.__getitem__)
        hog = max(self.held, key=self.unread)
        if hog is pipe or self.unread(hog) <= self.unread(pipe):
            return None
        return hog

    async def take(self, pipe: Pipe, n: int, *, flight: bool = False) -> None:
        """Charge ``n`` bytes to ``pipe``, waiting for room; ``PipeClosed`` if it closes meanwhile."""
        while not self.try_take(pipe, n, flight=flight):
            if pipe.closed:
                raise PipeClosed(pipe.close_reason or "pipe closed")
            if self._freed is None or self._freed.done():
                self._freed = asyncio.get_running_loop().create_future()
            await self._freed

    def refund(self, pipe: Pipe, n: int) -> None:
        """``pipe`` no longer holds ``n`` of its bytes (an evicted pipe's were refunded at once)."""
        held = self.held.get(pipe)
        if held is None:
            return
        n = min(n, held)
        self.used -= n
        if held == n:
            del self.held[pipe]
            self.flight.pop(pipe, None)
        else:
            self.held[pipe] = held - n
            if self.flight.get(pipe, 0) > held - n:
                self.flight[pipe] = held - n
        if self._freed is not None and not self._freed.done():
            self._freed.set_result(None)
