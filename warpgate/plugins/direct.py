"""``direct``: dial every advertised endpoint of the peer at once (happy eyeballs, RFC 8305).

TCP endpoints start immediately, UDP ones ``UDP_DELAY`` later, so a reachable peer gets a stream
(ordered, reliable) and UDP still wins when TCP is filtered. Works whenever the peer is reachable:
open internet, full cone, a port forward, or the same LAN.
"""

from __future__ import annotations

from functools import partial

from warpgate.errors import NotApplicable
from warpgate.eyeballs import first_success
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin

UDP_DELAY = 0.05


@register
class Direct(Plugin):
    name = "direct"

    def applicable(self, ctx: AttemptContext) -> str | None:
        if not any(ctx.dest.endpoints("tcp")) and not any(ctx.dest.endpoints("udp")):
            return "the address lists no endpoint"
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        starts = [(0.0, partial(ctx.connect_tcp, ep.host, ep.port)) for ep in ctx.dest.endpoints("tcp")]
        starts += [
            (UDP_DELAY, partial(ctx.connect_udp, ep.host, ep.port)) for ep in ctx.dest.endpoints("udp")
        ]
        if not starts:
            raise NotApplicable("the address lists no endpoint")
        return await first_success(starts)
