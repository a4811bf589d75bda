"""The connection gate: which keys may reach a node at all (libp2p's connection gater,
WireGuard's peer list).

``Node(allow=...)`` takes a collection of public keys (bytes) or node ids (hex strings), or a
callable ``allow(public_key) -> bool``; None (the default) lets anyone in, as a research node
wants. The gate is asked with the key a message claims, before any work is spent on it: a signal
envelope before its signature is checked, a handshake's HELLO before we sign our answer. A key
outside it gets no answer, no dial-back, no punch and no pipe; each refusal is counted.

A peer we dial ourselves is let in for ``DIALLED_TTL`` (its answers and its side of a punch must
reach us) and counts as *known*: so does every key the gate lets in when one is set. Known
peers keep capacity strangers cannot take (``Sessions``: strangers may hold ``STRANGERS_SHARE``
of a plugin's slots, known peers all of them).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Collection

from warpgate.errors import LocalProtocolError
from warpgate.identity import node_id_of
from warpgate.proto.expiring import Expiring

log = logging.getLogger(__name__)

Allow = Collection[bytes | str] | Callable[[bytes], bool] | None
DIALLED_TTL = 600.0
MAX_DIALLED = 4096
STRANGERS_SHARE = 0.75


class Gater:
    def __init__(self, allow: Allow = None) -> None:
        self._check: Callable[[bytes], bool] | None
        if allow is None:
            self._check = None
        elif callable(allow):
            self._check = allow
        elif isinstance(allow, str | bytes):
            raise LocalProtocolError("allow= takes a collection of keys or node ids, not one key")
        else:
            keys = set()
            for item in allow:
                if isinstance(item, bytes):
                    keys.add(node_id_of(item))
                elif isinstance(item, str) and re.fullmatch(r"[0-9a-fA-F]{32}", item):
                    keys.add(item.lower())
                elif isinstance(item, str):
                    raise LocalProtocolError(f"allow= holds {item[:40]!r}, not a node id (32 hex digits)")
                else:
                    raise LocalProtocolError(f"allow= holds {type(item).__name__}, not a key or node id")
            frozen = frozenset(keys)
            self._check = lambda key: node_id_of(key) in frozen
        self._dialled = Expiring(DIALLED_TTL, MAX_DIALLED)
        self.refused: Counter[str] = Counter()
        """Refusals by where they happened (``signal``, ``handshake``)."""

    @property
    def closed(self) -> bool:
        """Whether a gate is set (only allowed keys get in)."""
        return self._check is not None

    def dialled(self, key: bytes, now: float) -> None:
        """We are dialling ``key``: it may answer, and it is known."""
        self._dialled.add(key, now)

    def _was_dialled(self, key: bytes, now: float) -> bool:
        return self._dialled.holds(key, now)

    def _allowed(self, key: bytes) -> bool:
        assert self._check is not None
        try:
            return bool(self._check(key))
        except Exception as exc:  # a user's callable that fails: the key stays out, said once
            if not self.refused["allow_raised"]:
                log.error("the allow= callable raised; the keys it fails on stay out", exc_info=exc)
            self.refused["allow_raised"] += 1
            return False

    def admits(self, key: bytes, now: float, where: str) -> bool:
        """Whether ``key`` may reach us; a refusal is counted under ``where``."""
        if self._check is None or self._was_dialled(key, now) or self._allowed(key):
            return True
        self.refused[where] += 1
        return False

    def asker(self, where: str, clock: Callable[[], float]) -> Callable[[bytes], bool] | None:
        """The gate as a socket or the signal channel asks it, refusals counted under ``where``;
        None when no gate is set (nothing to ask)."""
        if self._check is None:
            return None
        return lambda key: self.admits(key, clock(), where)

    def known(self, key: bytes, now: float) -> bool:
        """A peer we dialled, or (with a gate set) one it lets in: it keeps reserved capacity."""
        if self._was_dialled(key, now):
            return True
        return self._check is not None and self._allowed(key)
