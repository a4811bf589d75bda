"""``reverse``: ask the peer, over the signal channel, to connect back to us.

A sends ``ReverseConnect(conn_id)`` to B; B dials A's endpoints exactly like ``direct`` and the
handshake carries A's ``conn_id``, so A's node routes the channel to this attempt (``ctx.expect``)
instead of ``accept()``. Works when the *caller* is reachable (open internet, full cone, a port
forward) and the callee is not. A takes the pipe the moment B nominates it, whether or not B's
acknowledgement has arrived yet. When the race is decided without it, A sends ``ReverseCancel``
and B stops dialling. The envelope is signed by A, so B dials back only to the address that
signed the request, and only a key that proves itself in the handshake becomes a pipe.

Reflection bound (``warpgate.proto.reflection``): the SYNs and HELLOs a request makes B send to
A's address total at most 3x the request's envelope (and the per-destination budget across all
requests) until A's side answers; a TCP connect gives up after 3 s.

Round trips: half a signalling round trip (the request reaches B), then what ``direct`` needs
from B to A (1 TCP round trip + 2 handshake round trips).
"""

from __future__ import annotations

import asyncio
import logging

from warpgate.errors import AttemptFailed
from warpgate.eyeballs import happy_eyeballs
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin, RacePolicy, ResponderContext
from warpgate.plugins.direct import reachable
from warpgate.plugins.sessions import Sessions
from warpgate.proto.messages import Message, ReverseCancel, ReverseConnect
from warpgate.proto.nat import Behaviours, Filtering

log = logging.getLogger(__name__)

DIAL_BACK_TIMEOUT = 10.0
MAX_DIAL_BACKS = 16
"""Dial-backs the callee runs at once (2 for one peer); more requests are refused (``busy``)."""


@register
class Reverse(Plugin):
    """Ask the peer over the signal channel to connect back to us."""

    name = "reverse"
    messages = (ReverseConnect, ReverseCancel)

    def __init__(self) -> None:
        self._dialing = Sessions(MAX_DIAL_BACKS, "dial-backs")
        """The callee's dial-backs in progress, by conn_id."""

    # Behind direct, and behind udp_punch where its rule says it joins us: its bound (1
    # signalling + 2 data round trips) is no worse than ours wherever a data round trip costs at
    # least half a signalling one (the lab's paths), and two signalling plugins that both connect
    # double the envelopes and handshakes both nodes compute (measured, zero-delay lab: race 8.1 ms
    # against 4.6 ms for udp_punch alone).
    policy = RacePolicy(behind=("direct", "udp_punch"))

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.signal_reason is not None:
            return ctx.signal_reason
        own = ctx.local_behaviour
        if ctx.address.mapped:
            return None  # the peer dials the mapping our gateway granted
        if own.filtering in (Filtering.ADDRESS_DEPENDENT, Filtering.ADDRESS_PORT_DEPENDENT):
            # Discovery measures UDP filtering only; a NAT that filters unsolicited datagrams
            # drops unsolicited SYNs as well, so the peer's dial-back could not reach us.
            return f"the peer cannot reach us: our NAT filters unsolicited packets ({own.name})"
        return None

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        return reachable(caller, callee) or caller.mapped

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        incoming = ctx.expect("nominated")
        request = asyncio.ensure_future(ctx.request(ReverseConnect(ctx.conn_id)))
        try:
            # Bounded by the attempt's deadline: even if a cancellation got lost on the way (seen with
            # Python 3.11's asyncio.timeout around shielded waits), the attempt ends on its own.
            async with asyncio.timeout_at(ctx.deadline):
                await asyncio.wait({incoming, request}, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
                if not incoming.done():
                    await request  # raises AttemptFailed when the peer refused or never answered
                return await incoming
        except TimeoutError:
            raise AttemptFailed("the peer did not connect back before the deadline") from None
        finally:
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
            if not incoming.done():
                incoming.cancel()
                ctx.notify_later(ReverseCancel(ctx.conn_id))

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        if isinstance(msg, ReverseConnect) and msg.conn_id not in self._dialing:
            self._dialing.admit(ctx)
            self._dialing.start(ctx, _dial_back(ctx))
        elif isinstance(msg, ReverseCancel):
            self._dialing.cancel(ctx, msg.conn_id)
        return None

    async def stop(self) -> None:
        self._dialing.stop()


async def _dial_back(ctx: ResponderContext) -> None:
    """B's side: dial A like ``direct`` does; the pipe reaches accept() once A nominates it."""
    try:
        async with asyncio.timeout(DIAL_BACK_TIMEOUT):
            pipe = await happy_eyeballs(ctx.sender, ctx.dial)
    except (AttemptFailed, TimeoutError) as exc:
        log.info("reverse: could not reach %s: %s", ctx.sender.node_id[:12], exc)
        return
    ctx.offer(pipe)  # A's race nominates it back when reverse wins
    pipe.nominate()  # tell A which of our channels we keep
