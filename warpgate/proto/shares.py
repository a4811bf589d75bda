"""Fair shares of a bounded table: what a node holds for others (connections in their handshake,
pipes it accepted) is capped per owner and in all, and a full table is not first come, first
served.

When the table is full, a newcomer takes the slot of the oldest entry of whoever holds the most,
unless its own owner already holds as many as anyone: then it waits its turn. A flood from one
source (or one key) only ever displaces itself; a crowd of sources can fill the table, but each
newcomer from elsewhere still gets in at the crowd's expense (libp2p's connection manager trims
the same way, by who holds the most).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")


class Refused(Exception):
    """The newcomer's owner holds its share (or the most): it gets no slot now."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def make_room(
    entries: Iterable[tuple[T, Hashable]], owner: Hashable, *, cap: int, per_owner: int
) -> T | None:
    """What must go for ``owner`` to add one entry to ``entries`` (``(entry, owner)``, oldest
    first): None when there is room, else the oldest entry of the owner holding the most.
    Raises ``Refused("per_owner")`` when ``owner`` holds ``per_owner`` already, and
    ``Refused("full")`` when the table is full and ``owner`` holds as many as anyone."""
    held = list(entries)
    counts = Counter(o for _, o in held)
    if counts[owner] >= per_owner:
        raise Refused("per_owner")
    if len(held) < cap:
        return None
    heaviest, most = counts.most_common(1)[0]
    if counts[owner] >= most:
        raise Refused("full")
    return next(entry for entry, o in held if o == heaviest)
