"""Two real nodes on 127.0.0.1 / ::1 connect with ``direct`` and exchange data both ways."""

import asyncio
import os

import pytest

from tests.conftest import assert_no_tasks
from warpgate import (
    SUB_ALL,
    Address,
    AddressError,
    ConnectError,
    Node,
    PipeClosed,
    Plugin,
    Sub,
    auto_connect,
    register,
)
from warpgate import plugins as registry


def has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "family",
    ["ipv4", pytest.param("ipv6", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1"))],
)
async def test_direct_both_ways(family):
    async with (
        Node(interfaces=["lo"], families=[family]) as a,
        Node(interfaces=["lo"], families=[family]) as b,
    ):
        pipe, plugin = await auto_connect(b, a.addr_bytes)
        assert plugin.name == "direct"
        assert pipe.proto == "tcp" and pipe.peer_id == a.node_id
        incoming = await a.accept()
        assert incoming.peer_id == b.node_id and incoming.plugin == "direct"
        await pipe.send(b"hello")
        assert await incoming.recv(SUB_ALL, timeout=5) == b"hello"
        await incoming.send(b"world")
        assert await pipe.recv(timeout=5) == b"world"
        await pipe.close()
        with pytest.raises(PipeClosed):
            await incoming.recv(timeout=5)
    assert_no_tasks()


async def test_the_readme_example_works_as_written():
    async with Node(interfaces=["lo"]) as server, Node(interfaces=["lo"]) as node:
        dest_addr = server.addr_bytes
        pipe, plugin = await auto_connect(node, dest_addr)
        await pipe.send(b"hello")
        peer = await server.accept()
        await peer.send(await peer.recv())
        assert await pipe.recv(SUB_ALL) == b"hello"


async def test_message_boundaries_and_large_messages():
    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"]) as b:
        pipe, _ = await auto_connect(b, a.address)
        incoming = await a.accept()
        msgs = [os.urandom(n) for n in (0, 1, 5, 1000, 70000, 3_000_000)]
        for m in msgs:
            await pipe.send(m)
        for m in msgs:
            assert await incoming.recv(timeout=10) == m


async def test_subscriptions_filter_by_pattern():
    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"]) as b:
        pipe, _ = await auto_connect(b, a.address)
        incoming = await a.accept()
        pings = incoming.subscribe(Sub(pattern=rb"^PING"))
        others = incoming.subscribe(Sub(pattern=rb"^DATA"))
        incoming.unsubscribe(SUB_ALL)
        for m in (b"DATA 1", b"PING 1", b"DATA 2"):
            await pipe.send(m)
        assert await incoming.recv(pings, timeout=5) == b"PING 1"
        assert await incoming.recv(others, timeout=5) == b"DATA 1"
        assert await incoming.recv(others, timeout=5) == b"DATA 2"
        with pytest.raises(TimeoutError):
            await incoming.recv(pings, timeout=0.05)


async def test_wrong_key_fails_closed():
    """An address with A's endpoints but C's key: nobody can prove it, nothing reaches anyone."""
    async with Node(interfaces=["lo"]) as a, Node(interfaces=["lo"]) as b, Node(interfaces=["lo"]) as c:
        forged = Address(c.identity.public_key, a.port, a.port, a.address.interfaces)
        with pytest.raises(ConnectError, match="wrong peer"):
            await auto_connect(b, forged, timeout=3)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await a.accept()


async def test_garbage_address_is_an_address_error():
    async with Node(interfaces=["lo"]) as b:
        for bad in ("wg1garbage", b"\x01\x02", "hello"):
            with pytest.raises(AddressError):
                await auto_connect(b, bad)


class UdpOnly(Plugin):
    name = "t_udp"

    async def attempt(self, ctx):
        ep = next(ctx.dest.endpoints("udp"))
        return await ctx.connect_udp(ep.host, ep.port)


@pytest.fixture
def udp_plugin():
    register(UdpOnly)
    yield
    registry.unregister("t_udp")


async def test_udp_pipe_and_accept_callback(udp_plugin):
    got: asyncio.Queue = asyncio.Queue()
    async with (
        Node(interfaces=["lo"], families=["ipv4"], on_pipe=got.put_nowait) as a,
        Node(interfaces=["lo"], families=["ipv4"]) as b,
    ):
        pipe, plugin = await auto_connect(b, a.address, plugins=["t_udp"])
        assert pipe.proto == "udp" and plugin.name == "t_udp"
        incoming = await asyncio.wait_for(got.get(), 5)  # arrives on nomination, before any data
        assert incoming.proto == "udp" and incoming.peer_id == b.node_id
        await pipe.send(b"over udp")
        assert await incoming.recv(timeout=5) == b"over udp"
        await incoming.send(b"and back")
        assert await pipe.recv(timeout=5) == b"and back"
        await pipe.close()
        with pytest.raises(PipeClosed):
            await incoming.recv(timeout=5)
    assert_no_tasks()


async def test_udp_overflow_drops_oldest_and_counts(udp_plugin):
    async with (
        Node(interfaces=["lo"], families=["ipv4"], queue_size=4) as a,
        Node(interfaces=["lo"], families=["ipv4"]) as b,
    ):
        pipe, _ = await auto_connect(b, a.address, plugins=["t_udp"])
        incoming = await a.accept()
        marker = incoming.subscribe(Sub(pattern=rb"^last$"))
        for i in range(10):
            await pipe.send(b"%d" % i)
        await pipe.send(b"last")
        # the marker's own inbox proves every earlier datagram was processed, without reading SUB_ALL
        assert await incoming.recv(marker, timeout=5) == b"last"
        got = [await incoming.recv(timeout=1) for _ in range(4)]
        assert got == [b"7", b"8", b"9", b"last"]
        assert incoming.dropped == 7


async def test_stop_leaves_nothing_behind():
    a = await Node(interfaces=["lo"]).start()
    b = await Node(interfaces=["lo"]).start()
    pipe, _ = await auto_connect(b, a.address)
    incoming = await a.accept()
    await a.stop()
    await b.stop()
    assert pipe.closed and incoming.closed
    assert not a._servers and not a._udp and not a._tasks
    assert_no_tasks()
