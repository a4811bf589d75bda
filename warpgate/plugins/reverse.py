"""``reverse``: ask the peer, over the signal channel, to connect back to us.

A sends ``reverse.connect {conn_id}`` to B; B dials A's endpoints exactly like ``direct`` and the
handshake carries A's ``conn_id``, so A's node routes the channel to this attempt
(``node.expect``) instead of ``accept()``. Works when the *caller* is reachable (open internet, full
cone, a port forward) and the callee is not. When the race is decided without it, A sends
``reverse.cancel`` and B stops dialling. The envelope is signed by A, so B dials back only to the
address that signed the request, and only a key that proves itself in the handshake becomes a pipe.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from warpgate import channels
from warpgate.errors import AttemptFailed
from warpgate.eyeballs import happy_eyeballs
from warpgate.pipe import Pipe
from warpgate.plugins import register
from warpgate.plugins.base import AttemptContext, Plugin
from warpgate.proto.address import Address

if TYPE_CHECKING:
    from warpgate.node import Node

log = logging.getLogger(__name__)

DIAL_BACK_TIMEOUT = 10.0


@register
class Reverse(Plugin):
    """Ask the peer over the signal channel to connect back to us."""

    name = "reverse"

    @classmethod
    def install(cls, node: Node) -> None:
        if node.signal is None:
            return
        dialing: dict[bytes, tuple[str, asyncio.Task[object]]] = {}

        async def on_connect(sender: Address, body: dict[str, Any]) -> dict[str, Any]:
            conn_id = bytes.fromhex(body["conn_id"])
            if len(conn_id) != 16:
                raise ValueError("conn_id must be 16 bytes")
            if conn_id not in dialing:
                task = node.spawn(_dial_back(node, sender, conn_id))
                dialing[conn_id] = (sender.node_id, task)
                task.add_done_callback(lambda _: dialing.pop(conn_id, None))
            return {"ok": True}

        async def on_cancel(sender: Address, body: dict[str, Any]) -> dict[str, Any]:
            entry = dialing.get(bytes.fromhex(body["conn_id"]))
            if entry is not None and entry[0] == sender.node_id:  # only the requester may cancel
                entry[1].cancel()
            return {"ok": True}

        node.signal.on("reverse.connect", on_connect)
        node.signal.on("reverse.cancel", on_cancel)

    def applicable(self, ctx: AttemptContext) -> str | None:
        if ctx.node.signal is None:
            return "no signal broker configured (Node(brokers=[...]))"
        return None

    async def attempt(self, ctx: AttemptContext) -> Pipe:
        signal = ctx.node.signal
        assert signal is not None
        incoming = ctx.node.expect(ctx.conn_id)
        try:
            # Bounded by the attempt's deadline: even if a cancellation got lost on the way (seen with
            # Python 3.11's asyncio.timeout around shielded waits), the attempt ends on its own.
            async with asyncio.timeout_at(ctx.deadline):
                answer = await signal.request(
                    ctx.dest,
                    "reverse.connect",
                    {"conn_id": ctx.conn_id.hex()},
                    timeout=min(ctx.remaining, 5.0),
                )
                if "error" in answer:
                    raise AttemptFailed(f"peer refused: {answer['error']}")
                return await incoming
        except TimeoutError:
            raise AttemptFailed("the peer did not connect back before the deadline") from None
        finally:
            if not incoming.done():
                incoming.cancel()
                if signal.connected:
                    ctx.node.spawn(_cancel(ctx.node, ctx.dest, ctx.conn_id))


async def _cancel(node: Node, dest: Address, conn_id: bytes) -> None:
    if node.signal is None:
        return
    try:
        await node.signal.notify(dest, "reverse.cancel", {"conn_id": conn_id.hex()})
    except AttemptFailed as exc:
        log.debug("reverse: cancel not sent: %s", exc)


async def _dial_back(node: Node, requester: Address, conn_id: bytes) -> None:
    """B's side: dial A like ``direct`` does; the pipe reaches accept() once A nominates it."""
    dial = partial(
        channels.dial,
        identity=node.identity,
        expected_key=requester.public_key,
        conn_id=conn_id,
        purpose="reverse",
        queue_size=node.queue_size,
    )
    try:
        async with asyncio.timeout(DIAL_BACK_TIMEOUT):
            pipe = await happy_eyeballs(requester, dial)
    except (AttemptFailed, TimeoutError) as exc:
        log.info("reverse: could not reach %s: %s", requester.node_id[:12], exc)
        return
    node.track(pipe)
    pipe.on_nominated = node.deliver  # A's race nominates it back when reverse wins
    pipe.nominate()  # tell A which of our channels we keep
