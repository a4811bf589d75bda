"""``direct``: dial every advertised endpoint of the peer at once (happy eyeballs, RFC 8305).

TCP endpoints start immediately, UDP ones ``UDP_DELAY`` later, so a reachable peer gets a stream
(ordered, reliable) and UDP still wins when TCP is filtered. When both sides confirmed their IPv6
path at start, IPv6 endpoints lead IPv4 ones by ``IPV6_LEAD`` (RFC 8305 §4-5). Works whenever
the peer is reachable: open internet, full cone, a port forward, or the same LAN.

Round trips: no signalling; 1 data-path round trip to open TCP (SYN) plus 2 for the handshake
(HELLO/CHALLENGE, PROOF/DONE), or 2 over UDP after the 50 ms happy-eyeballs delay.
"""

from __future__ import annotations

from warpgate.eyeballs import happy_eyeballs
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin
from warpgate.proto.nat import Behaviours, Filtering, Mapping


def reachable(target: Behaviours, source: Behaviours) -> bool:
    """Does a packet from anyone reach ``target``'s advertised endpoint (RFC 4787 §5)?

    Over UDP when it filters endpoint-independently (open, full cone: its STUN-learned mapping is
    open to all) and the source's UDP is not blocked; over TCP when it filters endpoint-
    independently and maps endpoint-independently or not at all: a NAT has no TCP mapping for a
    listening port until something leaves from it, and discovery's STUN over TCP from the node's
    port is that something (a full cone then forwards to the listener).
    """
    udp = (
        target.udp.filtering is Filtering.ENDPOINT_INDEPENDENT
        and source.udp.filtering is not Filtering.BLOCKED
    )
    tcp = target.tcp.filtering is Filtering.ENDPOINT_INDEPENDENT and target.tcp.mapping in (
        Mapping.NONE,
        Mapping.ENDPOINT_INDEPENDENT,
    )
    return udp or tcp


@register
class Direct(Plugin):
    """Dial every advertised endpoint of the peer at once (happy eyeballs, TCP before UDP)."""

    name = "direct"
    families = ("ipv4", "ipv6")

    def applicable(self, ctx: AttemptContext) -> str | None:
        if not any(ctx.dest.endpoints("tcp")) and not any(ctx.dest.endpoints("udp")):
            return "the address lists no endpoint"
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        return await happy_eyeballs(ctx.dest, ctx.dial, prefer6=ctx.ipv6_path)

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        return reachable(callee, caller) or callee.mapped

    @classmethod
    def joins(cls, ctx: AttemptContext) -> bool:
        # a peer on our own link (a LAN, loopback) is dialled without a NAT in the way, whatever
        # STUN knows or does not know of either side
        return ctx.peer_on_link or super().joins(ctx)
