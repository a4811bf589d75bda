"""The connection gate on real nodes and a real mosquitto: with ``allow`` set, a key outside it
gets no answer, no dial-back and no pipe (each refusal counted) while an allowed peer connects
during a flood from outside keys; without it, a peer the node dialled keeps the capacity that
strangers' requests cannot take."""

import asyncio
import contextlib
import dataclasses
import os

import pytest

from tests.daemons import tarpit
from warpgate import Node, auto_connect
from warpgate.errors import ConnectError
from warpgate.identity import Identity
from warpgate.plugins import reverse
from warpgate.proto.messages import ReverseConnect


def lo(broker, **kw):
    return Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url], portmap="off", **kw)


def aim(stranger, tcp_port, udp_port):
    """The stranger signs an address whose ports are the tarpit's: dial-backs to it hang."""
    forged = dataclasses.replace(stranger.address, tcp_port=tcp_port, udp_port=udp_port)
    stranger.signal._address = lambda: forged


def dial_back(stranger, victim):
    """A ReverseConnect request from ``stranger`` (a coroutine: its acknowledgement)."""
    body = ReverseConnect(os.urandom(16)).to_body()
    return stranger.signal.request(victim.address, ReverseConnect.kind, body)


async def wait_until(predicate, timeout=10.0):
    """Until the victim has counted what the test did (its refusals are counters, not futures)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def asks_in_vain(stranger, victim, asking):
    """A request the victim must drop unanswered: sent, seen refused by the victim's counter."""
    refused_before = victim.signal.stats["not_allowed"]
    request = asyncio.ensure_future(asking)
    await wait_until(lambda: victim.signal.stats["not_allowed"] > refused_before)
    assert not request.done()  # dropped: no acknowledgement, not even an error
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request


async def test_a_key_outside_the_gate_gets_no_answer_no_dial_back_and_no_pipe(mosquitto_factory):
    broker = mosquitto_factory()
    friend_id = Identity.generate()
    async with (
        tarpit() as (tcp_port, udp_port, held),
        lo(broker, allow=[friend_id.public_key]) as victim,
        lo(broker, identity=friend_id) as friend,
        lo(broker) as stranger,
    ):
        aim(stranger, tcp_port, udp_port)
        await asks_in_vain(stranger, victim, dial_back(stranger, victim))
        assert not held  # no dial-back reached the stranger's address
        stranger.signal._address = lambda: stranger.address
        with pytest.raises(ConnectError):
            await auto_connect(stranger, victim.address, plugins=["direct"], timeout=2)
        assert victim.gater.refused["handshake"] >= 1  # its HELLOs got no signed answer
        for plugin in ("direct", "reverse"):
            pipe, won = await auto_connect(friend, victim.address, plugins=[plugin], timeout=5)
            assert won.name == plugin
            incoming = await asyncio.wait_for(victim.accept(), 5)
            assert incoming.peer_key == friend_id.public_key
            await pipe.close()
            await incoming.close()


async def test_an_allowed_peer_connects_during_a_flood_from_outside_keys(mosquitto_factory):
    """Thirty keys ask for two dial-backs each towards a tarpit: every envelope is dropped before
    its signature is checked, and the friend's reverse connect goes through meanwhile."""
    broker = mosquitto_factory()
    friend_id = Identity.generate()
    async with (
        tarpit() as (tcp_port, udp_port, held),
        lo(broker, allow={friend_id.node_id}) as victim,
        lo(broker, identity=friend_id) as friend,
        contextlib.AsyncExitStack() as stack,
    ):
        strangers = [await stack.enter_async_context(lo(broker)) for _ in range(30)]
        for s in strangers:
            aim(s, tcp_port, udp_port)
        flood = [asyncio.ensure_future(dial_back(s, victim)) for s in strangers for _ in range(2)]
        await wait_until(lambda: victim.signal.stats["not_allowed"] >= 60)
        pipe, won = await auto_connect(friend, victim.address, plugins=["reverse"], timeout=5)
        assert won.name == "reverse"
        await pipe.close()
        assert not held and not any(f.done() for f in flood)
        for f in flood:
            f.cancel()
        await asyncio.gather(*flood, return_exceptions=True)


async def test_a_peer_we_dialled_keeps_capacity_strangers_cannot_take(mosquitto_factory):
    """An open node: strangers may hold three quarters of the dial-back slots; a peer the node
    dialled itself still gets one when they are all taken."""
    broker = mosquitto_factory()
    async with (
        tarpit() as (tcp_port, udp_port, _held),
        lo(broker) as victim,
        lo(broker) as friend,
        contextlib.AsyncExitStack() as stack,
    ):
        pipe, _ = await auto_connect(victim, friend.address, plugins=["direct"], timeout=5)
        await pipe.close()
        strangers = [await stack.enter_async_context(lo(broker)) for _ in range(reverse.MAX_DIAL_BACKS // 2)]
        answers = []
        for s in strangers:
            aim(s, tcp_port, udp_port)
            answers += [await dial_back(s, victim) for _ in range(2)]
        busy = sum("busy" in a.get("error", "") for a in answers)
        assert busy == reverse.MAX_DIAL_BACKS // 4  # the quarter kept for known peers
        pipe, won = await auto_connect(friend, victim.address, plugins=["reverse"], timeout=5)
        assert won.name == "reverse"
        await pipe.close()
