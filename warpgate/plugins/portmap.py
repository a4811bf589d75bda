"""``portmap``: an inbound mapping from a gateway, asked for when a peer needs it.

A node whose gateway grants mappings (PCP, NAT-PMP, UPnP IGD: ``warpgate.portmap``) advertises
one from its start (``Node(portmap="start")``), and ``direct`` / ``reverse`` dial it. This plugin
covers the addresses that carry none (``portmap="demand"``, or a mapping lost since): at once it

- asks the peer over the signal channel to map its port (``MapRequest``) and dials what the peer's
  gateway granted (TCP first, UDP 50 ms later, as ``direct``), and
- maps our own port and asks the peer to connect back (``ReverseConnect``, answered by the peer's
  ``reverse`` responder, which dials our address, the mapping now in it),

whichever side has a gateway that answers. The mapping lives until the node stops (refreshed at
half its lease, deleted at stop).

Reflection bound: the responder talks only to its own gateway (not asked again for a while
after it said no), and the connect-back is ``reverse``'s, bounded as that plugin says.

Round trips: one signalling round trip plus the peer's gateway exchange (2 LAN round trips), then
what ``direct`` needs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from warpgate.errors import AttemptFailed
from warpgate.eyeballs import UDP_DELAY, first_success
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin, RacePolicy, ResponderContext
from warpgate.proto.address import Endpoint
from warpgate.proto.messages import Candidate, MapAnswer, MapRequest, Message, ReverseCancel, ReverseConnect
from warpgate.proto.nat import Behaviours

log = logging.getLogger(__name__)


@register
class PortMap(Plugin):
    """Ask a gateway (the peer's, or ours) for an inbound mapping, then dial through it."""

    name = "portmap"
    messages = (MapRequest,)

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.signal_reason is not None:
            return ctx.signal_reason
        if ctx.dest.mapped:
            return "the peer's address carries a gateway mapping: direct dials it"
        if ctx.address.mapped:
            return "our address carries a gateway mapping: reverse offers it"
        if not ctx.address.maps and not ctx.dest.maps:
            return "neither gateway answered a mapping protocol (PCP, NAT-PMP, UPnP IGD)"
        return None

    # A mapping costs a gateway state: only where the cheaper plugins' rules say no.
    policy = RacePolicy(behind=("direct", "udp_punch", "reverse", "tcp_punch"))

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        """Either side's gateway grants a mapping on demand, and neither address carries one yet
        (then ``direct`` or ``reverse`` uses it and this plugin does not apply)."""
        if caller.mapped or callee.mapped:
            return False
        return caller.maps or callee.maps

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        # only the sides whose gateway answered a mapping protocol are asked
        starts: list[tuple[float, Callable[[], Awaitable[Pipe]]]] = []
        if ctx.dest.maps:
            starts.append((0.0, lambda: _theirs(ctx)))
        if ctx.address.maps:
            starts.append((0.0, lambda: _ours(ctx)))
        return await first_success(starts)

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        assert isinstance(msg, MapRequest)
        lease = await ctx.map_port()  # AttemptFailed: the caller is told why
        udp = (Candidate(lease.external_ip, lease.udp),) if lease.udp else ()
        tcp = (Candidate(lease.external_ip, lease.tcp),) if lease.tcp else ()
        return MapAnswer(msg.conn_id, udp, tcp)


async def _theirs(ctx: AttemptContext) -> Pipe:
    """The peer maps its port; we dial the mapping."""
    reply = await ctx.request(MapRequest(ctx.conn_id))
    if not isinstance(reply, MapAnswer) or reply.conn_id != ctx.conn_id:
        raise AttemptFailed("the peer did not answer with its mapping")
    if not reply.udp and not reply.tcp:
        raise AttemptFailed("the peer's gateway mapped nothing")
    starts: list[tuple[float, Callable[[], Awaitable[Pipe]]]] = []
    for proto, found, delay in (("tcp", reply.tcp, 0.0), ("udp", reply.udp, UDP_DELAY)):
        for c in found[:1]:
            ep = Endpoint(proto, c.host, c.port, "mapped")  # type: ignore[arg-type]
            starts.append((delay, lambda ep=ep: ctx.dial(ep)))  # type: ignore[misc]
    return await first_success(starts)


async def _ours(ctx: AttemptContext) -> Pipe:
    """We map our port; the peer connects back to it (its ``reverse`` responder dials our
    address, which carries the mapping from now on)."""
    await ctx.map_port()
    incoming = ctx.expect("nominated")
    try:
        async with asyncio.timeout_at(ctx.deadline):
            await ctx.request(ReverseConnect(ctx.conn_id))
            return await incoming
    except TimeoutError:
        raise AttemptFailed("the peer did not connect back to our mapping before the deadline") from None
    finally:
        if not incoming.done():
            incoming.cancel()
            ctx.notify_later(ReverseCancel(ctx.conn_id))
