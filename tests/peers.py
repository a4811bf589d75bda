"""Nodes as a lab router would have shown them, forged addresses, and a bystander that counts
what reaches it: helpers of the loopback tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import os
from collections.abc import AsyncIterator
from pathlib import Path

from warpgate import Node, Pipe
from warpgate.channels import tcp_connect
from warpgate.identity import Identity
from warpgate.proto.address import Address
from warpgate.proto.discovery import Discovery
from warpgate.proto.nat import PRESETS


def behind(node: Node, preset: str) -> None:
    """As if discovery had found ``preset`` in front of the node (its mapping: its own socket)."""
    mine = ("127.0.0.1", node.port)
    node.discovered["127.0.0.1"] = Discovery(PRESETS[preset], PRESETS[preset], mine, None, None)
    node.public["127.0.0.1"] = mine
    node._address = None  # rebuilt from what discovery "found"


def claim(node: Node, host: str, preset: str | None = None) -> None:
    """Make ``node`` sign an address whose public IPv4 is ``host`` (someone else's: a sender's
    address is only its own claim), behind ``preset`` if given."""
    real = node.address
    iface = real.interfaces[0]
    if preset is not None:
        iface = dataclasses.replace(iface, nat=PRESETS[preset])
    forged = dataclasses.replace(
        real, interfaces=(dataclasses.replace(iface, public4=ipaddress.IPv4Address(host)),)
    )
    node.signal._address = lambda: forged


async def channel(address: Address, who: Identity) -> Pipe:
    """An authenticated TCP channel from ``who`` to ``address``'s IPv4 TCP endpoint on loopback,
    not nominated (what any key can open to a node)."""
    ep = next(e for e in address.endpoints("tcp") if e.host == "127.0.0.1")
    return await tcp_connect(
        ep.host, ep.port, who, expected_key=address.public_key, conn_id=os.urandom(16), purpose="direct"
    )


def snmp(proto: str, field: str) -> int:
    """A kernel counter of /proc/net/snmp (this network namespace): ``Tcp ActiveOpens`` counts
    the SYNs connects start, ``Udp NoPorts`` the datagrams that found no socket."""
    text = Path("/proc/net/snmp").read_text().splitlines()
    lines = [line.split() for line in text if line.startswith(f"{proto}:")]
    return int(lines[1][lines[0].index(field)])


class Counted(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.bytes = 0
        self.datagrams = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.bytes += len(data)
        self.datagrams += 1


@contextlib.asynccontextmanager
async def bystander(host: str = "127.0.0.77", ports: int = 1) -> AsyncIterator[tuple[list[int], Counted]]:
    """(ports, counter): ``ports`` UDP ports on ``host`` that count what arrives (all in one
    counter) and never answer: a third party an attacker names as its own address."""
    loop = asyncio.get_running_loop()
    counted = Counted()
    transports = []
    try:
        for _ in range(ports):
            transport, _ = await loop.create_datagram_endpoint(lambda: counted, local_addr=(host, 0))
            transports.append(transport)
        yield [t.get_extra_info("sockname")[1] for t in transports], counted
    finally:
        for transport in transports:
            transport.close()
