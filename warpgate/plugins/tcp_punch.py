"""``tcp_punch``: both sides connect() to each other's TCP mapping at once (TCP simultaneous open).

Each side's TCP mapping is what discovery's STUN over TCP from the node's port found (endpoint-
independent mapping keeps it for every destination), or, behind a NAT with sequential allocation,
the next ports predicted from a fresh reference mapping (STUN over TCP again, + delta). A offers
its candidates over the signal channel; B starts connecting at once from its node's TCP port
(SO_REUSEPORT) and answers with its own; A connects when the answer arrives. No clock is needed
for the "same moment": B's SYN, dropped by A's NAT if it arrives first, leaves B's socket in
SYN_SENT and B's NAT with a conntrack entry that A's SYN then matches; the SYN that gets through
meets a socket in SYN_SENT (simultaneous open, RFC 9293 §3.5) or, aimed at the node's port from
elsewhere, its listener. A connect refused by a reset is tried again every 50 ms (docs/nat-behaviour.md:
a router that answers early SYNs with resets). The pipe is the punched socket itself; both ends
send HELLO and the key order decides who answers. A keeps the first authenticated pipe and
nominates it; B offers every one it gets, and the rest close.

Reach: ``udp_punch``'s rule over the TCP axes (``punchable``): one side lets the peer's SYNs in
from any port (EIF, or ADF on a predictable mapping), or both mappings are predictable and not
both address-and-port-dependent. The peer's TCP behaviour is read from its address's UDP one
(discovery measures TCP mapping only), except when UDP is blocked there.

Over IPv6 (both sides' IPv6 path confirmed at start) the node's own address and port are the
candidate: stateful firewalls, no NAT, let crossing SYNs through as firewall <-> firewall does
over IPv4; IPv4 candidates start ``IPV6_LEAD`` later.

Reflection bound (``warpgate.proto.reflection``): as the callee, the SYNs an offer makes us send
to the caller's candidates (each connect counted with its retransmissions) total at most 3x the
offer's envelope, and the per-destination budget across all offers.

Round trips: 1 signalling round trip (offer, answer), then 1 data-path round trip for the
crossing SYNs and 2 for the handshake.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from warpgate.errors import AttemptFailed
from warpgate.eyeballs import IPV6_LEAD
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Context, Plugin, RacePolicy, ResponderContext
from warpgate.plugins.sessions import Sessions
from warpgate.plugins.udp_punch import check_candidates, punchable, targets
from warpgate.proto.discovery import Discovery
from warpgate.proto.messages import (
    Candidate,
    Message,
    MessageError,
    TcpPunchAnswer,
    TcpPunchCancel,
    TcpPunchOffer,
)
from warpgate.proto.nat import Behaviours, NatBehaviour, PortAllocation

log = logging.getLogger(__name__)

WINDOW = 4
"""Predicted ports offered for a sequential allocator."""
MAX_TARGETS = 8
"""Candidates of the peer connected to at most (each is a socket and a SYN)."""
RESPONDER_LIMIT = 5.0
"""The callee connects at most this long for one offer."""
MAX_SESSIONS = 32
SEEN = 4096


def tcp_behaviour(found: Discovery | None) -> NatBehaviour:
    """Our TCP NAT as discovery knows it (``Discovery.tcp_view``)."""
    return found.tcp_view if found is not None else NatBehaviour()


async def gather(ctx: Context) -> tuple[tuple[Candidate, ...], tuple[Candidate, ...]]:
    """(public, private) TCP candidates of the node's port, predicted ports included; the IPv6
    address first when its path works (a firewall, no NAT: the port is the node's own)."""
    v6 = (Candidate(*ctx.tcp_local6),) if ctx.tcp_local6 is not None else ()
    local = ctx.tcp_local
    if local is None:
        if v6:
            return v6, ()
        raise AttemptFailed("the node has no IPv4 address")
    mine = Candidate(*local)
    nat = ctx.nat
    if nat is None or nat.mapped_tcp is None:
        return v6, (mine,)
    if nat.mapped_tcp == local:  # no translation: our own address is public
        return (*v6, mine), ()
    b = tcp_behaviour(nat)
    if b.endpoint_independent_mapping or b.allocation is not PortAllocation.SEQUENTIAL or not b.delta:
        return (*v6, Candidate(*nat.mapped_tcp)), (mine,)
    # address-dependent mapping: the STUN mapping is the server's alone; predict the next ones
    ref = await ctx.fresh_tcp_mapping()
    if ref is None:
        return (*v6, Candidate(*nat.mapped_tcp)), (mine,)
    ports = [ref[1] + b.delta * k for k in range(1, WINDOW + 1)]
    return (*v6, *(Candidate(ref[0], p) for p in ports if 1 <= p <= 65535)), (mine,)


async def connect_all(
    ctx: Context, dial_to: list[Candidate], until: float, arrived: asyncio.Future[Pipe]
) -> Pipe:
    """Connect to every candidate from the node's port; the first authenticated pipe wins (or a
    pipe the peer completed towards our listener: ``arrived``). Extra pipes are closed."""
    lead = IPV6_LEAD if any(":" in c.host for c in dial_to) else 0.0

    async def dial(c: Candidate) -> Pipe:
        if lead and ":" not in c.host:
            await asyncio.sleep(lead)  # RFC 8305: IPv6 first
        return await ctx.dial_tcp_shared(c.hostport, until)

    dials = [asyncio.ensure_future(dial(c)) for c in dial_to[:MAX_TARGETS]]
    waits: set[asyncio.Future[Pipe]] = {*dials, arrived}
    chosen: Pipe | None = None
    reasons: list[str] = []
    try:
        while chosen is None and (waits - {arrived}):
            done, waits = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                exc = fut.exception()
                if exc is None:
                    chosen = chosen or fut.result()
                elif isinstance(exc, AttemptFailed):
                    reasons.append(exc.reason)
                else:
                    raise exc
        if chosen is None:
            raise AttemptFailed("; ".join(reasons[:3]) or "no candidate to connect to")
        return chosen
    finally:
        for fut in dials:
            fut.cancel()
        for fut in dials:
            try:
                extra = await fut
            except (asyncio.CancelledError, AttemptFailed):
                continue
            if extra is not chosen:
                await extra.close()


@register
class TcpPunch(Plugin):
    """Both sides connect() to each other's TCP mapping at once (simultaneous open)."""

    name = "tcp_punch"
    messages = (TcpPunchOffer, TcpPunchCancel)
    families = ("ipv4", "ipv6")

    def __init__(self) -> None:
        self._sessions = Sessions(MAX_SESSIONS, "TCP punches")
        self._seen: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        return punchable(caller.tcp, callee.tcp)

    # Behind direct, udp_punch and reverse: a UDP pipe that connects is as good and cheaper to
    # punch, and reverse's one dial back beats a SYN crossing that may be reset and retried
    # (measured, zero-delay lab: udp-blocked <-> open 28 ms raced against 15 ms for reverse alone).
    policy = RacePolicy(behind=("direct", "udp_punch", "reverse"))

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.signal_reason is not None:
            return ctx.signal_reason
        if ctx.ipv6_path:
            return None  # firewalls only: crossing SYNs open them (RFC 6092 §3, RFC 9293 §3.5)
        if ctx.tcp_local is None:
            return "the node has no IPv4 address"
        ours, theirs = tcp_behaviour(ctx.nat), ctx.peer_tcp_behaviour
        if punchable(ours, theirs) is False:
            return f"no TCP punch joins {ours.name} and {theirs.name} (RFC 4787 axes)"
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        public, private = await gather(ctx)
        incoming = ctx.expect("authenticated")
        pipe: Pipe | None = None
        try:
            async with asyncio.timeout_at(ctx.deadline):
                answer = await ctx.request(TcpPunchOffer(ctx.conn_id, public, private))
                if not isinstance(answer, TcpPunchAnswer) or answer.conn_id != ctx.conn_id:
                    raise AttemptFailed("the peer answered the offer with something else")
                try:
                    check_candidates(ctx.dest, answer.public, answer.private)
                except MessageError as exc:
                    raise AttemptFailed(f"the peer's answer was refused: {exc}") from None
                dial_to = targets(answer.public, answer.private, public)
                pipe = await connect_all(ctx, dial_to, ctx.deadline, incoming)
                return pipe
        except TimeoutError:
            raise AttemptFailed("no SYN got through before the deadline") from None
        finally:
            if not incoming.done():
                incoming.cancel()
            elif not incoming.cancelled() and incoming.exception() is None and incoming.result() is not pipe:
                ctx.spawn(incoming.result().close())  # the peer's pipe we did not pick
            if pipe is None:
                ctx.notify_later(TcpPunchCancel(ctx.conn_id))

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        if isinstance(msg, TcpPunchCancel):
            self._sessions.cancel(ctx, msg.conn_id)
            return None
        assert isinstance(msg, TcpPunchOffer)
        check_candidates(ctx.sender, msg.public, msg.private)
        key = (ctx.sender.node_id, msg.conn_id)
        if key in self._seen:
            raise MessageError("replayed", "this offer was answered before")
        self._sessions.admit(ctx)
        self._seen[key] = None
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        public, private = await gather(ctx)
        self._sessions.start(ctx, self._connect_back(ctx, targets(msg.public, msg.private, public)))
        return TcpPunchAnswer(msg.conn_id, public, private)

    async def _connect_back(self, ctx: ResponderContext, dial_to: list[Candidate]) -> None:
        """B's side: connect until a pipe for this offer is authenticated, either way round."""
        until = asyncio.get_running_loop().time() + RESPONDER_LIMIT
        with ctx.arrival() as reached:
            try:
                pipe = await connect_all(ctx, dial_to, until, reached)
            except AttemptFailed as exc:
                log.info("tcp_punch: no path to %s: %s", ctx.sender.node_id[:12], exc)
                return
        if not reached.done() or reached.result() is not pipe:
            ctx.offer(pipe)  # reaches accept() once the caller nominates it

    async def stop(self) -> None:
        self._sessions.stop()
