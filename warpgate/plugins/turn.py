"""``turn``: both sides relay through their own TURN allocation (RFC 8656), the last resort.

A allocates a relayed address on its TURN server (over UDP, or over TCP to the server when its own
UDP is blocked) and offers it to B over the signal channel. B allocates on its own server, starts
dialling A's relayed address through its allocation, and answers with its relayed address; A then
dials B's through its own. Each side only ever sends to its own TURN server, so every NAT lets the
traffic through, a symmetric one included (an engine that sends from another socket straight to
the peer's relayed address is filtered by exactly that NAT). The first datagram towards a peer
binds a TURN channel, which installs the permission (RFC 8656 §12); until both sides have, the
servers drop the first handshakes and retransmission carries on: udp_punch's simultaneous open,
through relays. Pipes carry ``path = "relayed"``.

Race policy: a relayed pipe must not beat a direct one that arrives moments later, so while
another racing plugin's reach rule says it connects, ``turn`` waits ``Node(relay_head_start=1.0)``
seconds; the race cuts the wait short as soon as those plugins have failed. Where no other plugin
can connect (two symmetric NATs, UDP blocked against a filtering NAT) it starts at once.

Allocations end with their pipe: the relay deletes its allocation when its pipe closes, a losing
attempt's allocation is deleted when the race ends, and the callee deletes its own when the
caller cancels (``RelayCancel``) or nothing authenticates within ``RESPONDER_LIMIT``.

Reflection bound (``warpgate.proto.reflection``): the relay forwards our HELLOs to the relayed
address an offer names, so as the callee those total at most 3x the offer's envelope until that
address answers.

Round trips: 2 to the TURN server for the allocation (401, then Allocate with credentials), 1
signalling round trip during which B allocates (2 more to its server), then a channel binding (1 to
the server) and the handshake (2 relayed round trips).
"""

from __future__ import annotations

import asyncio
import logging

from warpgate.errors import AttemptFailed
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin, RacePolicy, ResponderContext
from warpgate.plugins.sessions import Sessions
from warpgate.proto.messages import Candidate, Message, MessageError, RelayAnswer, RelayCancel, RelayOffer
from warpgate.proto.nat import Behaviours
from warpgate.turn import RelayEndpoint, release_unused

log = logging.getLogger(__name__)

RESPONDER_LIMIT = 10.0
"""The callee keeps an allocation for one offer at most this long without a pipe."""
MAX_SESSIONS = 16
"""Allocations the callee holds for offers at once; more offers are refused (``busy``)."""


@register
class Turn(Plugin):
    """Both sides send through their own TURN allocation; the race's last resort."""

    name = "turn"
    messages = (RelayOffer, RelayCancel)

    def __init__(self) -> None:
        self._sessions = Sessions(MAX_SESSIONS, "relayed offers")

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        # A relay joins any two NATs: each side only talks to its TURN server, over UDP or, where
        # UDP is blocked, over TCP. (That the server is reachable is a deployment fact.)
        return True

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.signal_reason is not None:
            return ctx.signal_reason
        if not ctx.turn_servers:
            return "no TURN server configured (--turn URL, Node(turn=[...]))"
        return None

    # Behind every plugin whose rule says it joins the pair directly, for Node(relay_head_start).
    policy = RacePolicy(behind="*", patience="relay")

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        relay = await ctx.allocate_relay()
        incoming = ctx.expect("authenticated")
        won = False
        try:
            async with asyncio.timeout_at(ctx.deadline):
                answer = await ctx.request(RelayOffer(ctx.conn_id, (Candidate(*relay.relayed),)))
                if not isinstance(answer, RelayAnswer) or answer.conn_id != ctx.conn_id:
                    raise AttemptFailed("the peer answered the offer with something else")
                pipe = await _dial(ctx, relay, answer.relayed, incoming)
                won = True
                return pipe
        except TimeoutError:
            raise AttemptFailed("no relayed path authenticated before the deadline") from None
        finally:
            if not incoming.done():
                incoming.cancel()
            if not won:
                ctx.notify_later(RelayCancel(ctx.conn_id))

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        if isinstance(msg, RelayCancel):
            self._sessions.cancel(ctx, msg.conn_id)
            return None
        assert isinstance(msg, RelayOffer)
        if len(msg.relayed) != 1:
            raise MessageError("malformed", "a relay offer carries exactly one relayed address")
        if msg.conn_id in self._sessions:
            raise MessageError("replayed", "this offer is being answered")
        self._sessions.admit(ctx)
        relay = await ctx.allocate_relay()
        self._sessions.start(ctx, self._dial_back(ctx, relay, msg.relayed))
        return RelayAnswer(msg.conn_id, (Candidate(*relay.relayed),))

    async def _dial_back(
        self, ctx: ResponderContext, relay: RelayEndpoint, peer: tuple[Candidate, ...]
    ) -> None:
        with ctx.arrival() as reached:
            try:
                async with asyncio.timeout(RESPONDER_LIMIT):
                    pipe = await _dial(ctx, relay, peer, reached)
            except (AttemptFailed, TimeoutError, asyncio.CancelledError) as exc:
                log.info("turn: no relayed path to %s: %r", ctx.sender.node_id[:12], exc)
                await release_unused(relay)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
        if not reached.done() or reached.result() is not pipe:
            ctx.offer(pipe)  # reaches accept() once the caller nominates it

    async def stop(self) -> None:
        self._sessions.stop()


async def _dial(
    ctx: AttemptContext | ResponderContext,
    relay: RelayEndpoint,
    peer: tuple[Candidate, ...],
    incoming: asyncio.Future[Pipe],
) -> Pipe:
    """Dial the peer's relayed address through our allocation; the first authenticated channel
    (ours, or the one the peer completed towards us) wins."""
    dial = asyncio.ensure_future(ctx.dial_relayed(relay, peer[0].hostport))
    try:
        done, _ = await asyncio.wait({dial, incoming}, return_when=asyncio.FIRST_COMPLETED)
        for fut in (dial, incoming):  # one channel per path: both at once means the same pipe
            if fut in done and not fut.cancelled() and fut.exception() is None:
                return fut.result()
        exc = dial.exception() if dial.done() and not dial.cancelled() else None
        raise exc if isinstance(exc, AttemptFailed) else AttemptFailed("the relayed handshake failed")
    finally:
        if not dial.done():
            dial.cancel()
            await asyncio.gather(dial, return_exceptions=True)
