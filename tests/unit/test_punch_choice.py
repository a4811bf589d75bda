"""Which punched channel the caller keeps: one the peer holds for certain (RFC 8445 §8.1.1).

Over NATs whose paths differ by direction (an ADM NAT facing a sequential APDM one, where the
NAT's clash resolution hands out new ports), a channel the caller only *answered* can be one
the callee never completed: its DONE went to another handshake. The caller nominates it and the
pipe carries nothing. These tests build that state on loopback: the callee drops its copy of an
answered channel, as the lost DONE leaves it."""

import asyncio

from warpgate.channels import UdpEndpoint
from warpgate.identity import Identity
from warpgate.plugins.udp_punch import Candidate, punch
from warpgate.proto import timers

CONN = bytes(range(16))


class Dialler:
    """What ``punch`` needs of a plugin context: the node's socket and a task owner."""

    def __init__(self, ep: UdpEndpoint, peer_key: bytes) -> None:
        self.ep, self.peer_key = ep, peer_key
        self.tasks: list[asyncio.Task] = []

    async def dial_shared(self, peer, backoff=timers.PUNCH, unclaimed=None):
        return await self.ep.connect(
            peer,
            expected_key=self.peer_key,
            conn_id=CONN,
            purpose="udp_punch",
            backoff=backoff,
            unclaimed=unclaimed,
        )

    def heard(self, peer) -> bool:
        return self.ep.heard(peer)

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task


async def answered_channel(caller: Identity, callee: Identity, *, callee_keeps: bool):
    """The callee dials the caller's socket; the caller answers. Returns (the caller's socket, its
    answered pipe, the callee's socket, the callee's pipe)."""
    arrived: asyncio.Future = asyncio.get_running_loop().create_future()
    e_c = await UdpEndpoint.bind(("127.0.0.1", 0), caller, lambda p, c: arrived.set_result(p))
    e_l = await UdpEndpoint.bind(("127.0.0.1", 0), callee, lambda p, c: None)
    p_l = await e_l.connect(e_c.local, expected_key=caller.public_key, conn_id=CONN, purpose="udp_punch")
    p_c = await asyncio.wait_for(arrived, 2)
    assert p_c.answered and not p_l.answered
    if not callee_keeps:
        p_l._shutdown("its DONE reached another handshake")  # what the asymmetric path leaves
    return e_c, p_c, e_l, p_l


async def test_the_caller_keeps_a_channel_it_dialled_over_one_it_only_answered():
    caller, callee = Identity.generate(), Identity.generate()
    e_c, dead, e_l, _ = await answered_channel(caller, callee, callee_keeps=False)
    held: asyncio.Future = asyncio.get_running_loop().create_future()
    e_l2 = await UdpEndpoint.bind(("127.0.0.1", 0), callee, lambda p, c: held.set_result(p))
    incoming: asyncio.Future = asyncio.get_running_loop().create_future()
    incoming.set_result(dead)  # it arrived first
    ctx = Dialler(e_c, callee.public_key)
    try:
        chosen = await asyncio.wait_for(punch(ctx, [Candidate(*e_l2.local)], incoming), 5)
        assert chosen.remote == e_l2.local and not chosen.answered
        assert dead.closed  # never nominated: closed, telling nobody who holds nothing
        await chosen.send(b"over the channel both ends hold")
        assert await (await asyncio.wait_for(held, 2)).recv(timeout=2) == b"over the channel both ends hold"
    finally:
        for e in (e_c, e_l, e_l2):
            e.close()
        await asyncio.gather(*ctx.tasks, return_exceptions=True)


async def test_an_answered_channel_the_callee_holds_is_kept_after_one_round_trip():
    caller, callee = Identity.generate(), Identity.generate()
    e_c, answered, e_l, p_l = await answered_channel(caller, callee, callee_keeps=True)
    incoming: asyncio.Future = asyncio.get_running_loop().create_future()
    incoming.set_result(answered)
    ctx = Dialler(e_c, callee.public_key)
    try:
        chosen = await asyncio.wait_for(punch(ctx, [], incoming), 5)
        assert chosen is answered  # the cone-to-symmetric case: the only path is one we answered
        await chosen.send(b"confirmed")
        assert await p_l.recv(timeout=2) == b"confirmed"
    finally:
        e_c.close()
        e_l.close()
        await asyncio.gather(*ctx.tasks, return_exceptions=True)
