"""The plugin contract: ``Plugin`` and the ``AttemptContext`` it works with."""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from warpgate import channels
from warpgate.pipe import Pipe
from warpgate.proto.address import Address, Endpoint

if TYPE_CHECKING:
    from warpgate.node import Node


class AttemptContext:
    """Everything one attempt may use: the local node, the destination, a deadline, helpers.

    Each attempt gets its own ``conn_id``, carried through the handshake, so a channel the peer
    opens towards us on our request can be matched to this attempt (``node.expect``).
    """

    def __init__(self, node: Node, dest: Address, plugin: str, deadline: float) -> None:
        self.node = node
        self.dest = dest
        self.plugin = plugin
        self.deadline = deadline
        """Loop time (``asyncio.get_running_loop().time()``) by which the attempt must be done."""
        self.conn_id = os.urandom(16)

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def _auth(self) -> dict[str, Any]:
        """What every channel of this attempt is authenticated with: our key, the peer's, our conn_id."""
        return {
            "expected_key": self.dest.public_key,
            "conn_id": self.conn_id,
            "purpose": self.plugin,
            "queue_size": self.node.queue_size,
        }

    def _own(self, pipe: Pipe) -> Pipe:
        self.node.track(pipe)
        return pipe

    async def connect_tcp(self, host: str, port: int, local_addr: tuple[str, int] | None = None) -> Pipe:
        return self._own(
            await channels.tcp_connect(host, port, self.node.identity, local_addr=local_addr, **self._auth())
        )

    async def connect_udp(self, host: str, port: int) -> Pipe:
        return self._own(await channels.udp_connect(host, port, self.node.identity, **self._auth()))

    async def dial(self, endpoint: Endpoint) -> Pipe:
        """``connect_tcp`` or ``connect_udp``, by the endpoint's transport."""
        return self._own(await channels.dial(endpoint, self.node.identity, **self._auth()))

    async def authenticate_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Pipe:
        """Authenticate a stream a plugin opened by its own means (a relay, a punched socket)."""
        return self._own(await channels.tcp_initiate(reader, writer, self.node.identity, **self._auth()))


class Plugin(ABC):
    """One traversal strategy. Subclass, set ``name``, implement ``attempt``, decorate ``@register``."""

    name: ClassVar[str]

    @classmethod  # noqa: B027  (an optional hook, empty by default)
    def install(cls, node: Node) -> None:
        """Called once per node at start: set up the accepting side (e.g. signal handlers)."""

    def applicable(self, ctx: AttemptContext) -> str | None:
        """None if the plugin can try; otherwise the reason it cannot (reported as not_applicable)."""
        return None

    @abstractmethod
    async def attempt(self, ctx: AttemptContext) -> Pipe:
        """Open and authenticate a channel to ``ctx.dest``; raise ``AttemptFailed`` if you cannot."""
