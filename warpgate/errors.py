"""Errors, split by who is at fault (the h11 way).

- ``LocalProtocolError``: this program asked for something the protocol does not allow.
- ``RemoteProtocolError``: the peer (or whoever answered) sent something wrong; our state is intact.
- ``AddressError``: a malformed or unusable address, from a user or a peer.
- ``AttemptFailed``: an *expected* failure of one traversal attempt. Plugins raise it with a short
  reason; the race turns it into an event. Anything else a plugin raises is a bug and is reported as
  such, never swallowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warpgate.events import AttemptEvent


class WarpgateError(Exception):
    """Base class of every error warpgate raises on purpose."""


class AddressError(WarpgateError, ValueError):
    """An address could not be decoded or used; the message says why."""


class IdentityError(WarpgateError):
    """A key file is missing, unreadable, has unsafe permissions or holds no P-256 key."""


class ProtocolError(WarpgateError):
    """A protocol rule was broken. Not raised directly: see the two subclasses."""

    def __init__(self, *args: object) -> None:
        if type(self) is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        super().__init__(*args)


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol forbids (a bug or misuse on this side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or forbidden."""


class HandshakeError(RemoteProtocolError):
    """The other end did not prove it holds the key of the address we dialled."""


class NotAllowed(RemoteProtocolError):
    """The key is outside the node's connection gate (``Node(allow=...)``)."""


class PipeClosed(WarpgateError):
    """The pipe is closed (by us, by the peer, or because its transport failed)."""


class PluginError(WarpgateError):
    """A plugin is malformed or its name is taken; raised at registration."""


class AttemptFailed(WarpgateError):
    """One traversal attempt failed in an expected way; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotApplicable(AttemptFailed):
    """The plugin cannot apply to this pair of peers (for example: no signal channel)."""


class ConnectError(WarpgateError):
    """Every plugin of a race failed; ``attempts`` holds one event per plugin with its reason."""

    def __init__(self, message: str, attempts: Sequence[AttemptEvent]) -> None:
        lines = [message] + [f"  {a.plugin}: {a.outcome.value}: {a.reason}" for a in attempts]
        super().__init__("\n".join(lines))
        self.attempts = tuple(attempts)
