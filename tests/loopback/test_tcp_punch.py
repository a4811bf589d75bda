"""tcp_punch between real nodes on loopback, signalling through a real mosquitto broker: both
connect from their node's own TCP port to the other's at once; the pipe is that socket. Offers
that name too many or bad ports are refused, and no socket outlives its attempt."""

import asyncio
import os
import socket
import stat

import pytest

from tests.conftest import assert_no_tasks
from warpgate import Node, auto_connect
from warpgate.errors import AttemptFailed, ConnectError
from warpgate.plugins.base import AttemptContext
from warpgate.proto.messages import Candidate, MessageError, TcpPunchAnswer, TcpPunchOffer


def sockets() -> int:
    """Open sockets of this process (its fds that are sockets)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += stat.S_ISSOCK(os.stat(f"/proc/self/fd/{fd}").st_mode)
        except FileNotFoundError:
            continue
    return count


async def test_tcp_punch_connects_on_the_nodes_own_ports(mosquitto_factory):
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as b,
    ):
        pipe, plugin = await auto_connect(b, a.address, plugins=["tcp_punch"], timeout=5)
        assert plugin.name == "tcp_punch" and pipe.proto == "tcp"
        # the punched socket itself, between the two nodes' listening ports: no bridge
        assert pipe.local == ("127.0.0.1", b.port) and pipe.remote == ("127.0.0.1", a.port)
        incoming = await asyncio.wait_for(a.accept(), 5)
        assert incoming.peer_id == b.node_id
        await pipe.send(b"punched")
        assert await incoming.recv(timeout=5) == b"punched"
        await incoming.send(b"back")
        assert await pipe.recv(timeout=5) == b"back"
    assert_no_tasks()


async def test_no_socket_outlives_its_attempt(mosquitto_factory, monkeypatch):
    """100 attempts, half of them failing: in those both sides offer a closed port, so every
    connect is refused and repeated (a socket each time) until the deadline."""
    from warpgate.plugins import base, tcp_punch

    real = tcp_punch.gather
    made = []
    real_socket = base.reusable_tcp_socket
    monkeypatch.setattr(base, "reusable_tcp_socket", lambda local: made.append(1) or real_socket(local))

    async def closed_port(ctx):
        return (), (Candidate("127.0.0.1", dead_port),)

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as b,
    ):
        pipe, _ = await auto_connect(b, a.address, plugins=["tcp_punch"], timeout=5)  # warm up
        await pipe.close()
        await (await asyncio.wait_for(a.accept(), 5)).close()
        before = sockets()
        made.clear()
        for i in range(100):
            if i % 2:
                monkeypatch.setattr(tcp_punch, "gather", closed_port)
                with pytest.raises(ConnectError):
                    await auto_connect(b, a.address, plugins=["tcp_punch"], timeout=0.3)
                monkeypatch.setattr(tcp_punch, "gather", real)
                continue
            pipe, _ = await auto_connect(b, a.address, plugins=["tcp_punch"], timeout=5)
            incoming = await asyncio.wait_for(a.accept(), 5)
            await pipe.close()
            await incoming.close()
        # the callee's side of the failed ones ends on the caller's cancel (or its own limit)
        sessions = a._responders["tcp_punch"]._sessions._tasks
        await asyncio.wait([t for _, t in sessions.values()] or [asyncio.sleep(0)], timeout=10)
        await asyncio.sleep(0)  # let closed transports run their last callbacks
        assert len(made) > 200  # the failing attempts connected, were refused and tried again
        assert sockets() <= before, (before, sockets())


async def test_bad_offers_are_refused(mosquitto_factory):
    """Ports out of range and too many candidates never decode; candidates on addresses the
    sender does not own are refused (counted by the signal channel)."""
    with pytest.raises(MessageError, match="bad_port"):
        Candidate("127.0.0.1", 70000)
    body = {
        "v": 1,
        "conn_id": "00" * 16,
        "public": [["127.0.0.1", 1000 + i] for i in range(17)],
        "private": [],
    }
    with pytest.raises(MessageError, match="too_many_candidates"):
        TcpPunchOffer.from_body(body)
    broker = mosquitto_factory()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as a,
        Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url]) as b,
    ):
        ctx = AttemptContext(b, a.address, "tcp_punch", deadline=asyncio.get_running_loop().time() + 3)
        with pytest.raises(AttemptFailed, match="foreign_candidate"):
            await ctx.request(TcpPunchOffer(ctx.conn_id, (Candidate("192.0.2.99", 4000),), ()))
        answer = await ctx.request(TcpPunchOffer(ctx.conn_id, (), (Candidate("127.0.0.1", b.port),)))
        assert isinstance(answer, TcpPunchAnswer)
        with pytest.raises(AttemptFailed, match="replayed"):
            await ctx.request(TcpPunchOffer(ctx.conn_id, (), (Candidate("127.0.0.1", b.port),)))
        assert a.signal.stats["request_foreign_candidate"] == 1 and a.signal.stats["request_replayed"] == 1
