"""``random_probe``: the birthday-paradox bridge between a cone and a random-port NAT.

A NAT with endpoint-independent mapping (the "easy" side, a cone) keeps one public port for all
destinations; a NAT that maps each destination to a fresh random port (the "hard" side) cannot be
predicted, and with address-and-port-dependent filtering on both sides no punch meets. Instead
(Tailscale's "birthday" traversal): the hard side opens ``sockets`` fresh UDP sockets and dials
the easy side's mapping from each (a warpgate HELLO, retransmitted), which gives it ``sockets``
random public ports, each open to the easy side's mapping. The easy side sends ``budget`` PROBE
frames from its node socket to random distinct ports of the hard side's address, ``rate`` a
second; each opens its own NAT's filter towards that port. When a probe lands on one of the hard
side's ports, that socket dials again at once (the probe names the attempt's ``conn_id``), its
HELLO now passes the easy side's NAT, and the handshake authenticates the pair. The first pipe
wins; every other socket closes.

The guessing is needed only against an easy side that filters by address and port (a
port-restricted cone). One that filters by address only (a restricted cone) opens to the hard
side's whole address with its first probe, and one that filters endpoint-independently (full
cone, open) lets any HELLO in: there the hard side dials from a single socket (``sockets_for``),
so the pair makes exactly one pipe, and an endpoint-independent easy side sends no probe.

With ``sockets`` = N open among R possible ports and k probes, the chance of a hit is
1 - (1 - N/R)^k (for R = 64512: N = 256, k = 256 about 64 %; k = 1024 about 98 %; k = 2048 about
99.97 %). The options travel in the offer, each bounded (``LIMITS``); a side refuses an offer
outside them.

Reflection bound (``warpgate.proto.reflection``): as the callee, one sweep (at most 2,048
packets: probes, or the hard side's dials) per target host a minute, whatever the number of
keys asking, and the offer's options only lower our defaults (``ours``).

Round trips: 1 signalling round trip, then the time to the first hit (k / rate on average about
R / (N * rate)), then 2 data-path round trips for the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from warpgate.channels import Gate, UdpEndpoint
from warpgate.errors import AttemptFailed, LocalProtocolError
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Context, Plugin, RacePolicy, ResponderContext
from warpgate.plugins.sessions import Sessions
from warpgate.plugins.udp_punch import check_candidates
from warpgate.proto.messages import Candidate, Message, MessageError, ProbeAnswer, ProbeCancel, ProbeOffer
from warpgate.proto.nat import Behaviours, Filtering, Mapping, NatBehaviour, PortAllocation
from warpgate.proto.reflection import SWEEP

log = logging.getLogger(__name__)

DEFAULTS: dict[str, int] = {"sockets": 256, "budget": 2048, "rate": 2000, "low": 1024, "high": 65535}
LIMITS: dict[str, tuple[int, int]] = {
    "sockets": (1, 1024),  # file descriptors: one each
    "budget": (1, 65536),
    "rate": (1, 20000),
    "low": (1, 65535),
    "high": (1, 65535),
}
MAX_DURATION = 30.0
"""Seconds of probing an offer may ask for (the hard side's sockets stay open that long)."""
GRACE = 0.5
"""Seconds the sockets stay open after the last probe is due (its HELLO and handshake)."""
MAX_SESSIONS = 8
MAX_OPEN = 2048
"""Sockets the callee holds open for all hard-side runs at once (one file descriptor each): a
stranger's offers cost bounded descriptors."""
SEEN = 4096


def easy(b: NatBehaviour) -> bool:
    """One public port for every destination, and UDP passes."""
    return b.endpoint_independent_mapping and b.filtering not in (Filtering.BLOCKED, Filtering.UNKNOWN)


def hard(b: NatBehaviour) -> bool:
    """A fresh random port per destination (no prediction), and UDP passes."""
    return (
        b.mapping in (Mapping.ADDRESS_DEPENDENT, Mapping.ADDRESS_PORT_DEPENDENT)
        and b.allocation is PortAllocation.RANDOM
        and b.filtering not in (Filtering.BLOCKED, Filtering.UNKNOWN)
    )


def probeable(a: NatBehaviour, b: NatBehaviour) -> bool | None:
    """Theory: one side a cone, the other a random-port NAT (then a hit is likely, not certain:
    the module docstring gives the odds). None when an axis is unknown."""
    if (easy(a) and hard(b)) or (hard(a) and easy(b)):
        return True
    if Mapping.UNKNOWN in (a.mapping, b.mapping) or PortAllocation.UNKNOWN in (a.allocation, b.allocation):
        return None
    return False


def options(given: dict[str, Any]) -> dict[str, int]:
    """The run's options: the defaults, overridden by ``given``; ``LocalProtocolError`` naming a
    bad one (unknown, not an integer, out of bounds, or an empty port range)."""
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise LocalProtocolError(
            f"random_probe has no option {sorted(unknown)[0]!r} (it has {', '.join(DEFAULTS)})"
        )
    out = {**DEFAULTS, **given}
    for key, (lo, hi) in LIMITS.items():
        v = out[key]
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise LocalProtocolError(f"random_probe option {key} must be an integer in {lo}..{hi}, not {v!r}")
    if out["low"] > out["high"] or out["budget"] > out["high"] - out["low"] + 1:
        raise LocalProtocolError("random_probe: low..high must hold at least budget ports")
    if out["budget"] / out["rate"] > MAX_DURATION:
        raise LocalProtocolError(f"random_probe: budget / rate must be <= {MAX_DURATION:.0f} s of probing")
    return out


def ours(given: dict[str, Any]) -> dict[str, Any]:
    """A peer's options within our own defaults: it may ask for fewer sockets, fewer probes, a
    lower rate or a narrower port range, never for more (its offer makes us do the work)."""
    out = dict(given)
    for key in ("sockets", "budget", "rate", "high"):
        if isinstance(out.get(key), int):
            out[key] = min(out[key], DEFAULTS[key])
    if isinstance(out.get("low"), int):
        out["low"] = max(out["low"], DEFAULTS["low"])
    return out


def sockets_for(opts: dict[str, int], easy_side: NatBehaviour) -> int:
    """How many sockets the hard side opens: ``sockets`` where the easy side filters by address
    and port (RFC 4787 §5, a port-restricted cone), so that a probe must land on one of our exact
    ports; one where it filters endpoint-independently (our first HELLO passes) or by address
    only (it passes once any probe has left for our address). One socket then makes one pipe:
    with many, every socket's HELLO passes, each completes a handshake, and the two sides may
    keep different ones (the peer's closes the other's)."""
    return opts["sockets"] if easy_side.filtering is Filtering.ADDRESS_PORT_DEPENDENT else 1


def needs_probes(easy_side: NatBehaviour) -> bool:
    """Whether the easy side must probe at all: not when it filters endpoint-independently."""
    return easy_side.filtering is not Filtering.ENDPOINT_INDEPENDENT


def waiting(ctx: AttemptContext, easy_side: NatBehaviour) -> contextlib.AbstractContextManager[None]:
    """The wait for a hit, counted as luck (``AttemptContext.chance``) where a probe must find one
    of many ports; against any other easy side the first HELLO or probe opens the way."""
    lucky = easy_side.filtering is Filtering.ADDRESS_PORT_DEPENDENT
    return ctx.chance() if lucky else contextlib.nullcontext()


def curve(sockets: int, pool: int, probes: float) -> float:
    """1 - (1 - N/R)^k: the chance that k random probes hit one of N open ports among R."""
    return float(1.0 - (1.0 - sockets / pool) ** probes)


def duration(opts: dict[str, int]) -> float:
    return opts["budget"] / opts["rate"] + GRACE


async def first_dial(
    ctx: Context,
    eps: list[UdpEndpoint],
    peer: tuple[str, int],
    until: float,
    gate: Gate | None = None,
    keep: Callable[[Pipe], None] | None = None,
) -> Pipe:
    """The hard side: dial ``peer`` from every socket (each already mapped by our NAT); the first
    pipe wins (it owns its socket), every other socket closes. A second pipe completed in the
    same instant goes to ``keep`` (the callee's: the caller may have taken that one first, and
    its nomination decides, RFC 8445 §8.1.1), or is closed (the caller's own choice)."""
    dials = {asyncio.ensure_future(ctx.dial_from(ep, peer, gate)): ep for ep in eps}
    chosen: asyncio.Future[Pipe] | None = None
    loop = asyncio.get_running_loop()
    try:
        pending = set(dials)
        while pending and chosen is None:
            done, pending = await asyncio.wait(
                pending, timeout=max(0.0, until - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                raise AttemptFailed(f"no probe hit any of {len(eps)} ports in time")
            for fut in done:
                if not fut.cancelled() and fut.exception() is None and chosen is None:
                    chosen = fut
                elif not fut.cancelled() and not isinstance(fut.exception(), AttemptFailed | None):
                    raise fut.exception()  # type: ignore[misc]
        if chosen is None:
            raise AttemptFailed("every socket's dial failed")
        return chosen.result()
    finally:
        for fut in dials:
            if fut is not chosen:
                fut.cancel()
        for fut, ep in dials.items():
            if fut is chosen:
                continue
            try:
                extra = await fut
            except (asyncio.CancelledError, AttemptFailed):
                ep.close()
                continue
            if keep is not None:
                keep(extra)
            else:
                await extra.close()  # a second pipe of the same instant: closes its socket too


def probe_ports(opts: dict[str, int]) -> list[int]:
    """``budget`` distinct random ports of ``low``..``high`` (drawn anew for every attempt)."""
    return random.sample(range(opts["low"], opts["high"] + 1), opts["budget"])


@register
class RandomProbe(Plugin):
    """Birthday-paradox probing between a cone and a random-port NAT."""

    name = "random_probe"
    messages = (ProbeOffer, ProbeCancel)

    def __init__(self) -> None:
        self._sessions = Sessions(MAX_SESSIONS, "probe runs", per_sender=1)
        self._open_count = 0
        self._seen: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        return probeable(caller.udp, callee.udp)

    @classmethod
    def odds(
        cls,
        caller: Behaviours,
        callee: Behaviours,
        given: dict[str, Any],
        pools: tuple[tuple[int, int], tuple[int, int]],
        within: float | None = None,
    ) -> float | None:
        """The chance of a hit: ``sockets`` = N ports open among the R of the hard side's pool
        (``pools``: caller's, callee's external port range), ``budget`` probes of which k fall in
        that pool: 1 - (1 - N/R)^k (Tailscale's figure; drawing without replacement, as we do,
        is a hair better). ``within``: the seconds the attempt has (its deadline); only the
        probes due ``GRACE`` before it count, since the offer's round trip comes before the first
        probe and a hit's handshake after it. None when the rule says the pair is not for random
        probing."""
        if not probeable(caller.udp, callee.udp):
            return None
        opts = options(given)
        if sockets_for(opts, callee.udp if hard(caller.udp) else caller.udp) == 1:
            return 1.0  # the easy side's filter opens to the hard side's whole address
        lo, hi = pools[0] if hard(caller.udp) else pools[1]
        size = hi - lo + 1
        overlap = max(0, min(hi, opts["high"]) - max(lo, opts["low"]) + 1)
        sent = float(opts["budget"])
        if within is not None:
            sent = min(sent, opts["rate"] * max(0.0, within - GRACE))
        probes = sent * overlap / (opts["high"] - opts["low"] + 1)
        return curve(min(opts["sockets"], size), size, probes)

    # Hundreds of sockets and thousands of probes: only where no cheaper plugin's rule joins the
    # pair, or every one that said so has failed.
    policy = RacePolicy(behind=("direct", "udp_punch", "reverse", "tcp_punch", "portmap"))

    def applicable(self, ctx: AttemptContext) -> str | None:
        options(ctx.options)  # a bad option is the caller's mistake: raised, not a failed attempt
        if ctx.signal_reason is not None:
            return ctx.signal_reason
        if ctx.nat is None or ctx.nat.mapped_udp is None:
            return "no UDP mapping known (STUN): nothing to offer the peer"
        if probeable(ctx.local_behaviour, ctx.peer_behaviour) is not True:
            # unknown counts as no: a peer whose address states no UDP behaviour knows no UDP
            # mapping of its own (no STUN answer: its UDP may be blocked) and refuses every offer
            return (
                f"random probing joins a cone and a random-port NAT, not {ctx.local_behaviour.name}"
                f" and {ctx.peer_behaviour.name}"
            )
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        opts = options(ctx.options)
        assert ctx.nat is not None and ctx.nat.mapped_udp is not None
        public = (Candidate(*ctx.nat.mapped_udp),)
        incoming = ctx.expect("authenticated")
        probing: asyncio.Future[int] | None = None
        pipe: Pipe | None = None
        eps: list[UdpEndpoint] = []
        try:
            async with asyncio.timeout_at(ctx.deadline):
                target: tuple[str, int] | None = None
                if hard(ctx.local_behaviour):
                    # our sockets' mappings must exist before the first probe can arrive
                    ep0 = next(iter(ctx.dest.endpoints("udp")), None)
                    if ep0 is None:
                        raise AttemptFailed("the peer's address lists no UDP endpoint")
                    target = (ep0.host, ep0.port)
                    eps = await ctx.open_udp_sockets(sockets_for(opts, ctx.peer_behaviour), target)
                answer = await ctx.request(ProbeOffer(ctx.conn_id, public, **opts))
                if not isinstance(answer, ProbeAnswer) or answer.conn_id != ctx.conn_id or not answer.public:
                    raise AttemptFailed("the peer answered the offer with something else")
                try:
                    check_candidates(ctx.dest, answer.public, ())
                except MessageError as exc:
                    raise AttemptFailed(f"the peer's answer was refused: {exc}") from None
                peer = answer.public[0]
                loop = asyncio.get_running_loop()
                if target is not None:
                    until = min(ctx.deadline, loop.time() + duration(opts))
                    mine, eps = eps, []  # first_dial closes them from here on
                    with waiting(ctx, ctx.peer_behaviour):  # the peer probes from its answer on
                        pipe = await first_dial(ctx, mine, target, until)
                else:
                    ports = probe_ports(opts) if needs_probes(ctx.local_behaviour) else []
                    probing = asyncio.ensure_future(ctx.send_probes(peer.host, ports, opts["rate"]))
                    # the hard side's HELLO, through the hole a probe opened; after the last probe
                    # and a grace for its HELLO, no hit will come
                    with waiting(ctx, ctx.local_behaviour):
                        done, _ = await asyncio.wait({incoming}, timeout=duration(opts))
                    if not done:
                        raise AttemptFailed(
                            f"none of {opts['budget']} probes hit one of the peer's {opts['sockets']} ports"
                        )
                    pipe = incoming.result()
                return pipe
        except TimeoutError:
            raise AttemptFailed("no probe hit before the deadline") from None
        finally:
            for ep in eps:  # opened, but the offer failed before any dial
                ep.close()
            if probing is not None:
                probing.cancel()
            if not incoming.done():
                incoming.cancel()
            elif not incoming.cancelled() and incoming.exception() is None and incoming.result() is not pipe:
                ctx.spawn(incoming.result().close())
            if pipe is None:
                ctx.notify_later(ProbeCancel(ctx.conn_id))

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        if isinstance(msg, ProbeCancel):
            self._sessions.cancel(ctx, msg.conn_id)
            return None
        assert isinstance(msg, ProbeOffer)
        try:
            opts = options(ours({k: getattr(msg, k) for k in DEFAULTS}))
        except LocalProtocolError as exc:
            raise MessageError("bad_option", str(exc)) from None
        check_candidates(ctx.sender, msg.public, ())
        if not msg.public:
            raise MessageError("malformed", "the offer names no mapping")
        key = (ctx.sender.node_id, msg.conn_id)
        if key in self._seen:
            raise MessageError("replayed", "this offer was answered before")
        nat = ctx.nat
        if nat is None or nat.mapped_udp is None:
            raise MessageError("no_mapping", "this node knows no UDP mapping of its own (STUN)")
        if probeable(ctx.local_behaviour, ctx.peer_behaviour) is False:
            raise MessageError("not_applicable", "random probing does not join these NATs")
        self._sessions.admit(ctx)
        self._seen[key] = None
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        peer = msg.public[0]
        sweep = ctx.sweep(peer.host, SWEEP if hard(ctx.local_behaviour) else opts["budget"])
        if sweep is not None and sweep.left == 0:
            raise MessageError("busy", f"a probe sweep towards {peer.host} ran less than a minute ago")
        gate = None if sweep is None else sweep.take
        if hard(ctx.local_behaviour):
            if self._open_count + sockets_for(opts, ctx.peer_behaviour) > MAX_OPEN:
                raise MessageError("busy", f"{self._open_count} probe sockets open (at most {MAX_OPEN})")
            # mapped before we answer: the caller starts probing when the answer arrives
            eps = await ctx.open_udp_sockets(sockets_for(opts, ctx.peer_behaviour), peer.hostport, gate)
            self._open_count += len(eps)
            started: list[bool] = []
            task = self._sessions.start(ctx, self._open(ctx, eps, peer.hostport, opts, started, gate))

            def never_ran(_: object) -> None:  # cancelled before its first step: nothing closed them
                if not started:
                    self._open_count -= len(eps)
                    for ep in eps:
                        ep.close()

            task.add_done_callback(never_ran)
        else:
            self._sessions.start(ctx, self._probe(ctx, peer.host, opts, gate))
        return ProbeAnswer(msg.conn_id, (Candidate(*nat.mapped_udp),))

    async def _open(
        self,
        ctx: ResponderContext,
        eps: list[UdpEndpoint],
        peer: tuple[str, int],
        opts: dict[str, int],
        started: list[bool],
        gate: Gate | None,
    ) -> None:
        started.append(True)
        until = asyncio.get_running_loop().time() + duration(opts)
        try:
            pipe = await first_dial(ctx, eps, peer, until, gate, keep=ctx.offer)
        except AttemptFailed as exc:
            log.info("random_probe: no hit towards %s: %s", ctx.sender.node_id[:12], exc)
            return
        finally:
            self._open_count -= len(eps)  # first_dial closed every socket but the pipe's
        ctx.offer(pipe)  # reaches accept() once the caller nominates it

    async def _probe(self, ctx: ResponderContext, host: str, opts: dict[str, int], gate: Gate | None) -> None:
        # the hard side's HELLO reaches our node socket through a probe's hole: the node routes it
        with ctx.arrival() as reached:
            ports = probe_ports(opts) if needs_probes(ctx.local_behaviour) else []
            probing = asyncio.ensure_future(ctx.send_probes(host, ports, opts["rate"], gate))
            try:
                await asyncio.wait({reached}, timeout=duration(opts))
            finally:
                probing.cancel()
                await asyncio.gather(probing, return_exceptions=True)

    async def stop(self) -> None:
        self._sessions.stop()
