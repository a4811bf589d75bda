"""``udp_punch``: both sides send to each other's mapped UDP endpoints at once (hole punching).

A gathers its candidates (the node socket's public mapping; for a NAT with sequential allocation
the next ``WINDOW`` predicted ports, from a fresh reference mapping; its own address for peers
behind the same NAT) and offers them to B over the signal channel. B gathers its own, starts
punching, and answers with them. Both then dial every candidate of the other from their node's
own UDP socket (so the mapping that opens is the one the pipe uses), retransmitting the handshake
on ``timers.PUNCH``:

- a datagram that reaches a side from a path it dials makes it send again at once (the path is
  open now), and when both handshakes cross on one path the key order decides who answers
  (``handshake.yields``): exactly one channel per path;
- a HELLO from a source nobody dials (a symmetric NAT's fresh port: a peer-reflexive candidate,
  RFC 8445 §7.3.1.3) is answered as responder, which is how a cone reaches a symmetric NAT.

A keeps the first authenticated channel B holds for certain and nominates it; B's copy reaches
``accept()`` then. One A completed as initiator qualifies at once; one A only answered, once a
PING of A's own is answered on it (RFC 8445 §8.1.1: the controlling side nominates what its own
check proved). Where the NATs' paths differ by direction (an ADM NAT facing a sequential APDM
one), B's last handshake message can land in another handshake, and B never holds the channel
A answered. B, for its part, keeps every channel it completed, even one completed in the instant
its dial was cancelled.
Nothing heard for ``SILENCE`` seconds after the answer ends the attempt early.

Reach (``punchable``): one side lets in the peer's probes from any port (endpoint-independent
filtering, or address-dependent filtering on a predictable mapping); or both mappings are
predictable (endpoint-independent, or sequential with a measured delta) and not both address-and-
port-dependent (two sequential APDM NATs defeat it: each probe takes a port the other side
predicted for another). Neither side may block UDP.

Over IPv6 (both sides' IPv6 path confirmed at start: ``ctx.ipv6_path``) the node's own address
and port are the candidate, offered first: stateful firewalls, no NAT, so two symmetric NAT44s
with IPv6 firewalls still join. IPv4 candidates start ``IPV6_LEAD`` later (RFC 8305).

Reflection bound (``warpgate.proto.reflection``): as the callee, the HELLOs an offer makes us
send to a candidate that has not answered total at most 3x the offer's envelope, and at most
the per-destination budget across all offers; a candidate that answered is no longer bounded.

Round trips: 1 signalling round trip (offer, answer), then 2 data-path round trips for the
handshake (HELLO/CHALLENGE, PROOF/DONE); the callee starts punching half a signalling round trip
earlier, so its first packets open its NAT before the caller's arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from warpgate.errors import AttemptFailed, PipeClosed
from warpgate.eyeballs import IPV6_LEAD
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Context, Plugin, RacePolicy, ResponderContext
from warpgate.plugins.sessions import Sessions
from warpgate.proto import handshake, timers
from warpgate.proto.address import Address
from warpgate.proto.messages import (
    MAX_PAD,
    Candidate,
    Message,
    MessageError,
    PunchAnswer,
    PunchCancel,
    PunchOffer,
)
from warpgate.proto.nat import Behaviours, Filtering, Mapping, NatBehaviour, PortAllocation
from warpgate.proto.reflection import FACTOR

log = logging.getLogger(__name__)

WINDOW = 8
"""Predicted ports offered for a sequential allocator: other flows of the node may take a few."""
SILENCE = 1.0
"""Seconds without hearing anything from the peer after which punching stops."""
RESPONDER_LIMIT = 10.0
PAID_FOR = 2.0
"""Seconds of the callee's punching (``timers.PUNCH``) that the offer's padding pays for: until
the caller's path answers, the callee may send it only 3 times the offer's bytes."""
"""The callee punches at most this long for one offer."""
MAX_SESSIONS = 32
"""Punches the callee runs at once; more offers are refused (``busy``)."""
SEEN = 4096
"""Offers remembered (sender, conn_id) to refuse a replayed one."""


def predictable(b: NatBehaviour) -> bool | None:
    """Can a peer know the port this NAT will use towards it?"""
    if b.endpoint_independent_mapping:
        return True
    if b.allocation is PortAllocation.SEQUENTIAL and b.delta:
        return True
    if b.allocation is PortAllocation.UNKNOWN or b.mapping is Mapping.UNKNOWN:
        return None
    return False


def open_to_peer(b: NatBehaviour) -> bool:
    """Does this NAT let in the peer's packets from ports it never sent to, when they are aimed at
    the port it advertised or predicted? EIF does; ADF does when that port is the one this side
    sends to the peer's address from (its mapping is predictable). The answer then rides the
    inbound flow's own conntrack entry, so this side's mapping towards the peer does not matter."""
    if b.filtering is Filtering.ENDPOINT_INDEPENDENT:
        return True
    return b.filtering is Filtering.ADDRESS_DEPENDENT and predictable(b) is True


def punchable(a: NatBehaviour, b: NatBehaviour) -> bool | None:
    """Theory: does UDP punching join NAT ``a`` and NAT ``b`` (RFC 4787 axes)? None: it depends.

    - One side open to the peer (``open_to_peer``): the other side's probes get in from whatever
      port its NAT gives them, and the handshake's answers return on that flow.
    - Otherwise both sides filter by port, so each must aim at the other's real port: both
      mappings predictable, and at most one address-and-port-dependent. An endpoint- or address-
      dependent side sends every probe from one port, which is among the candidates the peer
      probes; two sequential APDM NATs each take a new port per probe, and the stale STUN
      candidate first in each list shifts one sequence against the other (measured).
    """
    if Filtering.BLOCKED in (a.filtering, b.filtering):
        return False
    pa, pb = predictable(a), predictable(b)
    if pa is None or pb is None or Filtering.UNKNOWN in (a.filtering, b.filtering):
        return None
    if open_to_peer(a) or open_to_peer(b):
        return True
    if pa and pb:
        return not a.mapping is b.mapping is Mapping.ADDRESS_PORT_DEPENDENT
    return False


def passive(own: NatBehaviour, peer: NatBehaviour, *, caller: bool) -> bool:
    """Does this side only answer, and not dial? When its NAT filters endpoint-independently the
    peer's probes get in wherever the peer's NAT sends them from, and the answers return on that
    inbound flow. Dialling as well would, under ADM or APDM, open a second mapping towards the peer
    whose conntrack entry collides with the inbound one, and the two sides can end up on different
    paths (measured in the cube scenario). With EIF on both sides the callee answers; a caller that
    does not know the peer's filtering dials."""
    if own.filtering is not Filtering.ENDPOINT_INDEPENDENT:
        return False
    return not caller or peer.filtering not in (Filtering.ENDPOINT_INDEPENDENT, Filtering.UNKNOWN)


async def gather(
    ctx: Context, *, predict: bool = True
) -> tuple[tuple[Candidate, ...], tuple[Candidate, ...]]:
    """(public, private) candidates of the node's UDP sockets, predicted ports included (unless
    ``predict`` is off: a passive side's peer aims at its advertised mapping only). The IPv6
    socket's address comes first when an IPv6 STUN server saw it (no NAT: only a firewall, which
    a punch opens like a NAT that keeps ports, RFC 6092 §3)."""
    v6 = (Candidate(*ctx.own6),) if ctx.own6 is not None else ()
    ep = ctx.udp_socket()
    if ep is None:
        if v6:
            return v6, ()
        raise AttemptFailed("the node has no IPv4 UDP socket")
    local = Candidate(*ep.local)
    nat = ctx.nat
    if nat is None or nat.mapped_udp is None:
        return v6, (local,)
    if nat.mapped_udp == ep.local:  # no translation: our own address is public
        return (*v6, local), ()
    public = [*v6, Candidate(*nat.mapped_udp)]
    b = nat.udp
    if (
        predict
        and b.allocation is PortAllocation.SEQUENTIAL
        and b.delta
        and not b.endpoint_independent_mapping
    ):
        ref = await ctx.fresh_mapping()
        if ref is not None:
            ports = [ref[1] + b.delta * k for k in range(1, WINDOW + 1)]
            public += [Candidate(ref[0], p) for p in ports if 1 <= p <= 65535]
    return tuple(public), (local,)


def targets(
    public: tuple[Candidate, ...],
    private: tuple[Candidate, ...],
    mine: tuple[Candidate, ...],
    *,
    answer_only: bool = False,
) -> list[Candidate]:
    """What to dial: the peer's public candidates; its private ones only from behind the same NAT.
    IPv6 ones only when we have a working IPv6 path ourselves (one of ``mine``); an
    ``answer_only`` side (``passive``, a decision about its IPv4 NAT) dials its IPv6 ones alone."""
    mine4 = tuple(c for c in mine if ":" not in c.host)
    v4 = tuple(c for c in public if ":" not in c.host)
    same_nat = not v4 or not mine4 or bool({c.host for c in v4} & {c.host for c in mine4})
    have6 = any(":" in c.host for c in mine)
    out: list[Candidate] = []
    for c in (*public, *(private if same_nat else ())):
        six = ":" in c.host
        if c in out or (six and not have6) or (answer_only and not six):
            continue
        out.append(c)
    return out


def pad_for(candidates: int) -> str:
    """An offer's padding: 3 times the offer then covers the callee's HELLOs to ``candidates``
    for ``PAID_FOR`` seconds (QUIC pads its Initial for the same limit, RFC 9000 §8.1, §14.1).
    Its NAT's early packets are dropped until our mapping exists, so the callee must go on
    sending blind for a while: a punch offer is the one request that pays for that."""
    need = candidates * (handshake.MIN_HELLO + 1) * timers.PUNCH.sends_within(PAID_FOR)
    return "0" * min(MAX_PAD, -(-need // FACTOR))


def check_candidates(sender: Address, public: tuple[Candidate, ...], private: tuple[Candidate, ...]) -> None:
    """Every candidate must be on an IP of the sender's signed address: no dialling strangers."""
    own = {
        str(ip)
        for i in sender.interfaces
        for ip in (i.private4, i.public4, i.private6, i.public6)
        if ip is not None
    }
    for c in (*public, *private):
        if c.host not in own:
            raise MessageError("foreign_candidate", f"{c} is not an address of the sender")


async def punch(
    ctx: Context,
    dial_to: list[Candidate],
    incoming: asyncio.Future[Pipe] | None,
    keep: Callable[[Pipe], None] | None = None,
) -> Pipe:
    """Dial every candidate from the node's socket; the first authenticated channel wins.

    ``incoming`` resolves with a channel the peer completed towards us (we answered its HELLO).
    Extra channels finished in the same instant are closed, or handed to ``keep``: the callee
    keeps them all, because the caller may have picked a different one of the same instant (two
    EIF NATs open two paths at once, each side seeing one first; a sequential APDM NAT facing an
    ADM one completes up to a channel per predicted port at once) and its nomination decides.
    That includes a channel completed as its dial is cancelled.
    """
    loop = asyncio.get_running_loop()
    lead = IPV6_LEAD if any(":" in c.host for c in dial_to) else 0.0

    def unclaimed(pipe: Pipe) -> None:
        if keep is not None:
            keep(pipe)
        else:
            ctx.spawn(pipe.close("another channel was picked"))

    async def dial(c: Candidate) -> Pipe:
        if lead and ":" not in c.host:
            await asyncio.sleep(lead)  # RFC 8305: IPv6 first; a peer's probe still answers at once
        return await ctx.dial_shared(c.hostport, unclaimed=unclaimed)

    async def confirmed(pipe: Pipe) -> Pipe:
        try:
            await pipe.confirm()
        except (TimeoutError, PipeClosed) as exc:
            raise AttemptFailed(f"a channel we answered never carried the peer's frame: {exc}") from None
        return pipe

    dials = {asyncio.ensure_future(dial(c)): c for c in dial_to}
    waits: set[asyncio.Future[Pipe]] = set(dials)
    if incoming is not None:
        waits.add(incoming)
    checks: dict[asyncio.Future[Pipe], Pipe] = {}
    chosen: Pipe | None = None
    reasons: list[str] = []
    quiet_until = loop.time() + SILENCE
    try:
        while chosen is None and waits:
            done, waits = await asyncio.wait(
                waits, timeout=max(0.0, quiet_until - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            # of one instant's channels, one we dialled first: the peer holds it for certain
            for fut in sorted(done, key=lambda f: not _initiated(f)):
                if fut.cancelled():
                    continue
                exc = fut.exception()
                if exc is None:
                    pipe = fut.result()
                    if keep is None and pipe.answered and fut not in checks:
                        # the caller nominates, so only a channel its own round trip proved
                        # (RFC 8445 §8.1.1): a PING answered on it, while the dials go on
                        check = asyncio.ensure_future(confirmed(pipe))
                        checks[check] = pipe
                        waits.add(check)
                        continue
                    chosen = chosen or pipe
                elif isinstance(exc, AttemptFailed):
                    reasons.append(exc.reason)
                else:
                    raise exc
            if chosen is None and loop.time() >= quiet_until:
                if not any(ctx.heard(c.hostport) for c in dial_to):
                    raise AttemptFailed(
                        f"nothing heard from the peer's {len(dial_to)} candidates within {SILENCE:.1f} s"
                    )
                quiet_until = loop.time() + SILENCE
        if chosen is None:
            raise AttemptFailed("; ".join(reasons) or "no candidate to punch")
        return chosen
    finally:
        for fut in (*dials, *checks):
            fut.cancel()
        for pipe in checks.values():
            if pipe is not chosen:
                await pipe.close("another channel was picked")
        for fut in dials:
            try:
                extra = await fut
            except (asyncio.CancelledError, AttemptFailed):
                continue
            if extra is not chosen and extra not in checks.values():
                if keep is not None:
                    keep(extra)
                else:
                    await extra.close()


def _initiated(fut: asyncio.Future[Pipe]) -> bool:
    """A finished dial or arrival whose channel we completed as initiator."""
    return not fut.cancelled() and fut.exception() is None and not fut.result().answered


@register
class UdpPunch(Plugin):
    """Both sides send to each other's mapped endpoints at once; predicted ports for sequential NATs."""

    name = "udp_punch"
    messages = (PunchOffer, PunchCancel)
    families = ("ipv4", "ipv6")

    def __init__(self) -> None:
        self._sessions = Sessions(MAX_SESSIONS, "punches")
        self._seen: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        return punchable(caller.udp, callee.udp)

    # Behind direct only: behind reverse it lost more than it saved (its bound, 1 signalling + 2
    # data round trips, beats reverse's 1/2 + 3 wherever signalling is no slower than data).
    policy = RacePolicy(behind=("direct",))

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.signal_reason is not None:
            return ctx.signal_reason
        if ctx.ipv6_path:
            return None  # firewalls only: a punch opens them (RFC 6092 §3)
        if ctx.udp_socket() is None:
            return "the node has no IPv4 UDP socket"
        if punchable(ctx.local_behaviour, ctx.peer_behaviour) is False:
            return f"no punch joins {ctx.local_behaviour.name} and {ctx.peer_behaviour.name} (RFC 4787 axes)"
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        answer_only = passive(ctx.local_behaviour, ctx.peer_behaviour, caller=True)
        public, private = await gather(ctx, predict=not answer_only)
        incoming = ctx.expect("authenticated")
        won = False
        pipe: Pipe | None = None
        try:
            async with asyncio.timeout_at(ctx.deadline):
                offer = PunchOffer(ctx.conn_id, public, private, pad_for(len(public) + len(private)))
                answer = await ctx.request(offer)
                if not isinstance(answer, PunchAnswer) or answer.conn_id != ctx.conn_id:
                    raise AttemptFailed("the peer answered the offer with something else")
                try:
                    check_candidates(ctx.dest, answer.public, answer.private)
                except MessageError as exc:
                    raise AttemptFailed(f"the peer's answer was refused: {exc}") from None
                dial_to = targets(answer.public, answer.private, public, answer_only=answer_only)
                if not dial_to:
                    pipe = await incoming  # the peer dials; we answer (bounded by the deadline)
                else:
                    pipe = await punch(ctx, dial_to, incoming)
                won = True
                return pipe
        except TimeoutError:
            raise AttemptFailed("no path opened before the deadline") from None
        finally:
            if not incoming.done():
                incoming.cancel()
            elif not incoming.cancelled() and incoming.exception() is None and incoming.result() is not pipe:
                ctx.spawn(incoming.result().close())  # the peer's channel we did not pick
            if not won:
                ctx.notify_later(PunchCancel(ctx.conn_id))

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        if isinstance(msg, PunchCancel):
            self._sessions.cancel(ctx, msg.conn_id)
            return None
        assert isinstance(msg, PunchOffer)
        check_candidates(ctx.sender, msg.public, msg.private)
        key = (ctx.sender.node_id, msg.conn_id)
        if key in self._seen:
            raise MessageError("replayed", "this offer was answered before")
        self._sessions.admit(ctx)
        self._seen[key] = None
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        answer_only = passive(ctx.local_behaviour, ctx.peer_behaviour, caller=False)
        public, private = await gather(ctx, predict=not answer_only)
        dial_to = targets(msg.public, msg.private, public, answer_only=answer_only)
        if dial_to:  # else the caller dials us, and its channel reaches accept() as any
            self._sessions.start(ctx, self._punch_back(ctx, dial_to))
        return PunchAnswer(msg.conn_id, public, private)

    async def _punch_back(self, ctx: ResponderContext, dial_to: list[Candidate]) -> None:
        """B's side: punch until a channel for this offer is authenticated, either way round."""
        # the caller may complete a handshake towards us first: then we stop dialling
        with ctx.arrival() as reached:
            try:
                async with asyncio.timeout(RESPONDER_LIMIT):
                    pipe = await punch(ctx, dial_to, reached, keep=ctx.offer)
            except (AttemptFailed, TimeoutError) as exc:
                log.info("udp_punch: no path to %s: %s", ctx.sender.node_id[:12], exc)
                return
        if not reached.done() or reached.result() is not pipe:
            ctx.offer(pipe)  # reaches accept() once the caller nominates it

    async def stop(self) -> None:
        self._sessions.stop()
