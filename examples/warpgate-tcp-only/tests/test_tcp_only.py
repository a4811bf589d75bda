"""The plugin on loopback: found through its entry point, raced, and it connects over TCP."""

from warpgate import Node, auto_connect
from warpgate.plugins import available


def test_the_entry_point_registers_it():
    assert "tcp_only" in available()


async def test_it_connects_over_tcp():
    async with Node(interfaces=["lo"]) as server, Node(interfaces=["lo"]) as client:
        pipe, plugin = await auto_connect(client, server.address, plugins=["tcp_only"], timeout=5)
        assert plugin.name == "tcp_only" and pipe.proto == "tcp"
        peer = await server.accept()
        await pipe.send(b"ping")
        assert await peer.recv(timeout=5) == b"ping"
        await pipe.close()


async def test_it_races_the_built_ins():
    async with Node(interfaces=["lo"]) as server, Node(interfaces=["lo"]) as client:
        events = []
        pipe, _ = await auto_connect(client, server.address, timeout=5, on_event=events.append)
        assert "tcp_only" in {e.plugin for e in events}
        await pipe.close()
