"""``udp_callback``: ask the peer, over the signal channel, to dial us over UDP.

The caller A sends ``CallbackRequest(conn_id)``; the callee B dials every UDP endpoint in A's
address from its own node socket, and the handshake carries A's ``conn_id``, so A's node routes
the channel to this attempt (``ctx.expect``) rather than to ``accept()``. It is ``reverse`` over
UDP: it works when A's UDP port takes datagrams from anyone (no NAT, or a full cone: RFC 4787
endpoint-independent mapping and filtering) and B can send UDP at all.

It shows the whole responder side of the plugin contract:

- a message type of its own (``@message``, a frozen dataclass with typed fields), listed in
  ``messages`` so the node routes it to ``respond``;
- ``Sessions``, which bounds the work strangers can start (at most ``MAX_CALLBACKS`` at once, two
  per sender; more are refused as ``busy``) and lets only the requester cancel its own;
- ``ctx.offer(pipe)`` and then ``pipe.nominate()``: the dialler nominates the pipe it keeps, which
  is what ends A's ``ctx.expect("nominated")`` and, once A's race picks it, what reaches B's
  ``accept()``. Without the nomination A's attempt waits until its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from warpgate import (
    AttemptContext,
    AttemptFailed,
    Behaviours,
    Filtering,
    Mapping,
    Message,
    Pipe,
    Plugin,
    RacePolicy,
    ResponderContext,
    Sessions,
    message,
)
from warpgate.eyeballs import first_success

__all__ = ["CallbackCancel", "CallbackRequest", "UdpCallback"]

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT = 5.0
"""Seconds the callee dials for one request at most (a cancel from the caller ends it sooner)."""
MAX_CALLBACKS = 16
"""Requests the callee serves at once; more are refused (``busy``)."""


@message
@dataclass(frozen=True, slots=True)
class CallbackRequest(Message):
    """Caller -> callee: dial my UDP endpoints; the handshake carries ``conn_id``."""

    kind: ClassVar[str] = "udp_callback.request"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class CallbackCancel(Message):
    """Caller -> callee: the race is decided, stop dialling for ``conn_id``."""

    kind: ClassVar[str] = "udp_callback.cancel"
    conn_id: bytes


class UdpCallback(Plugin):
    """Ask the peer over the signal channel to dial us over UDP."""

    name = "udp_callback"
    messages = (CallbackRequest, CallbackCancel)
    # a signalling round trip before any data one: let the plugins that need none go first
    policy = RacePolicy(behind=("direct",))

    def __init__(self) -> None:
        self._calls = Sessions(MAX_CALLBACKS, "callbacks")
        """The callee's dials in progress, by conn_id (one instance per node answers them all)."""

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.signal_reason is not None:
            return ctx.signal_reason  # no broker: the request cannot be sent
        if not any(True for _ in ctx.address.endpoints("udp")):
            return "our address has no UDP endpoint for the peer to dial"
        return None

    @classmethod
    def reach(cls, caller: Behaviours, callee: Behaviours) -> bool | None:
        """Theory for the lab (RFC 4787 axes): the callee's datagrams reach the caller's advertised
        UDP endpoint unsolicited (endpoint-independent mapping and filtering, or no NAT), and the
        callee can send UDP at all."""
        udp = caller.udp
        if Mapping.UNKNOWN in (udp.mapping, callee.udp.mapping) or Filtering.UNKNOWN in (
            udp.filtering,
            callee.udp.filtering,
        ):
            return None
        if callee.udp.filtering is Filtering.BLOCKED:
            return False
        return udp.reachable_unsolicited

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        incoming = ctx.expect("nominated")  # before the request: the dial may beat the answer
        request = asyncio.ensure_future(ctx.request(CallbackRequest(ctx.conn_id)))
        try:
            async with asyncio.timeout_at(ctx.deadline):
                await asyncio.wait({incoming, request}, return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
                if not incoming.done():
                    await request  # AttemptFailed when the peer refused or never answered
                return await incoming
        except TimeoutError:
            raise AttemptFailed("the peer's datagrams did not reach us before the deadline") from None
        finally:
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
            if not incoming.done():
                incoming.cancel()
                ctx.notify_later(CallbackCancel(ctx.conn_id))  # so the peer stops dialling

    async def respond(self, ctx: ResponderContext, msg: Message) -> Message | None:
        # ctx.sender signed the envelope: we dial only the address it gave, and only a peer that
        # proves that key in the handshake becomes a pipe
        if isinstance(msg, CallbackRequest) and msg.conn_id not in self._calls:
            self._calls.admit(ctx)  # raises MessageError("busy"): the caller's request fails at once
            self._calls.start(ctx, _call_back(ctx))
        elif isinstance(msg, CallbackCancel):
            self._calls.cancel(ctx, msg.conn_id)  # only the requester's own
        return None  # a bare acknowledgement

    async def stop(self) -> None:
        self._calls.stop()


async def _call_back(ctx: ResponderContext) -> None:
    """The callee's side: dial each UDP endpoint of the caller from the node's socket at once."""
    starts = [(0.0, partial(ctx.dial_shared, (ep.host, ep.port))) for ep in ctx.sender.endpoints("udp")]
    try:
        async with asyncio.timeout(CALLBACK_TIMEOUT):
            pipe = await first_success(starts)
    except (AttemptFailed, TimeoutError) as exc:
        log.info("udp_callback: could not reach %s: %s", ctx.sender.node_id[:12], exc)
        return
    ctx.offer(pipe)  # it reaches our accept() once the caller's race nominates it back
    pipe.nominate()  # and tell the caller this is the channel we keep
