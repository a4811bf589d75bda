"""A bounded set whose members expire: who proved an address, whom we dialled (time passed in)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class Expiring:
    """Members added with ``add(key, now)`` hold for ``ttl`` seconds; at most ``limit`` are kept
    (the oldest added first out)."""

    def __init__(self, ttl: float, limit: int) -> None:
        self.ttl = ttl
        self.limit = limit
        self._until: OrderedDict[Hashable, float] = OrderedDict()

    def add(self, key: Hashable, now: float) -> None:
        self._until[key] = now + self.ttl
        self._until.move_to_end(key)
        while len(self._until) > self.limit:
            self._until.popitem(last=False)

    def holds(self, key: Hashable, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until < now:
            del self._until[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self._until)
