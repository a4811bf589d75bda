"""``direct``: dial every advertised endpoint of the peer at once (happy eyeballs, RFC 8305).

TCP endpoints start immediately, UDP ones ``UDP_DELAY`` later, so a reachable peer gets a stream
(ordered, reliable) and UDP still wins when TCP is filtered. Works whenever the peer is reachable:
open internet, full cone, a port forward, or the same LAN.
"""

from __future__ import annotations

from warpgate.eyeballs import happy_eyeballs
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin


@register
class Direct(Plugin):
    """Dial every advertised endpoint of the peer at once (happy eyeballs, TCP before UDP)."""

    name = "direct"

    def applicable(self, ctx: AttemptContext) -> str | None:
        if not any(ctx.dest.endpoints("tcp")) and not any(ctx.dest.endpoints("udp")):
            return "the address lists no endpoint"
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        return await happy_eyeballs(ctx.dest, ctx.dial)
