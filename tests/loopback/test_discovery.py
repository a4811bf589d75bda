"""NAT discovery against real servers on loopback: coturn (RFC 5780, two addresses), a silent
server and a lying one. Start-up never waits past the discovery deadline."""

import asyncio
import json
import subprocess
import sys
import time

import pytest

from warpgate import Node
from warpgate.proto.nat import Filtering, Mapping, PortAllocation


@pytest.fixture
def coturn(tmp_path):
    """coturn on 127.0.0.1 and 127.0.0.2, ports 3478/3479 (RFC 5780 needs two of each); stopped by PID."""
    from netsim.control.daemons import Daemon, coturn

    daemon = Daemon(coturn("127.0.0.1", "127.0.0.2"), tmp_path / "coturn")
    daemon.start()
    yield ("127.0.0.1", 3478)
    daemon.stop()
    assert not daemon.running


async def test_node_discovers_no_nat_on_loopback(coturn):
    async with Node(interfaces=["lo"], families=["ipv4"], stun=[f"{coturn[0]}:{coturn[1]}"]) as node:
        found = node.nat
        assert found is not None
        assert (found.udp.mapping, found.udp.filtering, found.udp.allocation) == (
            Mapping.NONE,
            Filtering.ENDPOINT_INDEPENDENT,
            PortAllocation.PRESERVING,
        )
        assert found.tcp.mapping is Mapping.NONE
        assert found.mapped_udp == ("127.0.0.1", node.port) == found.mapped_tcp
        assert found.other == ("127.0.0.2", 3479)
        assert node.address.interfaces[0].nat == found.udp  # the address carries it


def test_warpgate_nat_cli(coturn):
    out = subprocess.run(
        [sys.executable, "-m", "warpgate.cli", "nat", "--stun", "127.0.0.1", "-i", "lo", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["udp"]["name"] == "open" and got["tcp"]["mapping"] == "none"
    table = subprocess.run(
        [sys.executable, "-m", "warpgate.cli", "nat", "--stun", "127.0.0.1", "-i", "lo"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert table.returncode == 0 and "no-NAT EIF preserving" in table.stdout and "open" in table.stdout


class Silent(asyncio.DatagramProtocol):
    def __init__(self, lie: bool) -> None:
        self.lie = lie
        self.seen = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.seen += 1
        if self.lie:  # a STUN-looking answer with the right transaction id and garbage inside
            self.transport.sendto(b"\x01\x01\x00\x04" + data[4:20] + b"\xff\xff\x00\x00", addr)


@pytest.mark.parametrize("lie", [False, True])
async def test_a_silent_or_lying_server_costs_at_most_the_deadline(lie):
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(lambda: Silent(lie), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]

    async def hang(reader, writer):  # accepts STUN over TCP, never answers
        await reader.read()

    tcp = await asyncio.start_server(hang, "127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        node = Node(interfaces=["lo"], families=["ipv4"], stun=[f"127.0.0.1:{port}"], discovery_timeout=0.5)
        async with node:
            elapsed = time.perf_counter() - t0
            assert server.seen > 0
            assert elapsed < 0.5 + 0.4  # the deadline, plus binding the sockets
            assert node.nat is None  # nothing usable came back: no behaviour is claimed
            assert node.address.interfaces[0].nat.mapping is Mapping.UNKNOWN
            assert node.address.interfaces[0].public4 is None
    finally:
        transport.close()
        tcp.close()
        await tcp.wait_closed()
