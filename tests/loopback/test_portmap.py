"""The port-mapping client against a hostile gateway on loopback: every answer that does not fit
the request (another port, an absurd lifetime, another sender, another nonce) is dropped and
counted, and the mapping still comes from the honest answer; no gateway ends in "none" at once."""

import asyncio
import socket
import struct

import pytest

from warpgate import Node
from warpgate.portmap import PortMapper
from warpgate.proto import pcp

GATEWAY = "127.0.0.1"
ELSEWHERE = "127.0.0.2"  # any of 127/8 is a local address on Linux


class Hostile(asyncio.DatagramProtocol):
    """Answers the first request of each kind with ``lies(request)`` then the truth; later copies
    (retransmissions) get nothing, so each lie is seen exactly once."""

    def __init__(self, lies, truth, side_channel):
        self.lies, self.truth, self.side = lies, truth, side_channel
        self.seen = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        key = data[:2] + data[36:37]  # version, opcode; PCP's protocol
        if key in self.seen:
            return
        self.seen.add(key)
        for sender, answer in self.lies(data):
            (self.side if sender == "elsewhere" else self.transport).sendto(answer, addr)
        self.transport.sendto(self.truth(data), addr)


async def hostile_gateway(lies, truth):
    loop = asyncio.get_running_loop()
    side, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(ELSEWHERE, 0))
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Hostile(lies, truth, side), local_addr=(GATEWAY, 0)
    )
    return transport, side, transport.get_extra_info("sockname")[1]


def pmp(op, internal, external, lifetime):
    return struct.pack("!BBHIHHI", 0, op, 0, 1, internal, external, lifetime)


async def test_natpmp_lies_are_dropped_and_counted():
    def truth(req):
        if req[1] == 0:  # external address
            return struct.pack("!BBHI", 0, 128, 0, 1) + socket.inet_aton("203.0.113.7")
        internal = struct.unpack("!H", req[4:6])[0]
        return pmp(128 + req[1], internal, 41000 + req[1], 600)

    def lies(req):
        if req[1] == 0:
            return [("elsewhere", struct.pack("!BBHI", 0, 128, 0, 1) + socket.inet_aton("198.51.100.66"))]
        internal = struct.unpack("!H", req[4:6])[0]
        return [
            ("elsewhere", pmp(128 + req[1], internal, 666, 600)),  # not from the gateway
            ("gateway", pmp(128 + req[1], internal + 1, 667, 600)),  # for another port
            ("gateway", pmp(128 + req[1], internal, 668, 10**9)),  # an absurd lifetime
        ]

    transport, side, port = await hostile_gateway(lies, truth)
    mapper = PortMapper(GATEWAY, GATEWAY, protocols=("natpmp",), pmp_port=port)
    mapper.set_port(7000)
    try:
        lease = await mapper.first_offer(deadline=1.0)
    finally:
        await mapper.close()
        transport.close()
        side.close()
    assert lease is not None
    assert (lease.external_ip, lease.udp, lease.tcp, lease.lifetime) == ("203.0.113.7", 41001, 41002, 600)
    # one external-address lie and two mapping lies from elsewhere; one of each kind per transport
    assert mapper.stats["not_gateway"] == 3
    assert mapper.stats["wrong_port"] == 2 and mapper.stats["absurd_lifetime"] == 2


async def test_pcp_answer_with_another_nonce_is_dropped():
    def answer(req, nonce, external):
        head = struct.pack("!BBBBII", 2, 0x80 | req[1], 0, 0, 600, 1) + bytes(12)
        if req[1] == 0:
            return head
        body = nonce + req[36:40] + req[40:42] + struct.pack("!H", external)
        return head + body + pcp._v6(__import__("ipaddress").IPv4Address("203.0.113.8"))

    transport, side, port = await hostile_gateway(
        lambda req: [("gateway", answer(req, bytes(12), 666))] if req[1] == 1 else [],
        lambda req: answer(req, req[24:36], 42000 + req[36] if len(req) > 36 else 0),
    )
    mapper = PortMapper(GATEWAY, GATEWAY, protocols=("pcp",), pmp_port=port)
    mapper.set_port(7000)
    try:
        lease = await mapper.first_offer(deadline=1.0)
    finally:
        await mapper.close()
        transport.close()
        side.close()
    assert lease is not None and (lease.udp, lease.tcp) == (42017, 42006)
    assert mapper.stats["wrong_nonce"] == 2


async def test_no_gateway_is_none_at_once_and_a_silent_one_within_the_deadline():
    """Nothing listens: ICMP port unreachable ends every probe in a moment. A gateway that
    swallows everything: the start waits the deadline (250 ms), not a retransmission schedule."""
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind((GATEWAY, 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    loop = asyncio.get_running_loop()
    mapper = PortMapper(GATEWAY, GATEWAY, pmp_port=dead_port, ssdp_port=dead_port)
    mapper.set_port(7000)
    t0 = loop.time()
    assert await mapper.first_offer() is None
    refused = loop.time() - t0
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((GATEWAY, 0))
    try:
        mapper = PortMapper(
            GATEWAY, GATEWAY, pmp_port=silent.getsockname()[1], ssdp_port=silent.getsockname()[1]
        )
        mapper.set_port(7000)
        t0 = loop.time()
        assert await mapper.first_offer(deadline=0.25) is None
        waited = loop.time() - t0
    finally:
        silent.close()
    assert refused < 0.2 < waited < 0.5, (refused, waited)


async def test_a_loopback_node_has_no_gateway_and_portmap_says_why():
    async with Node(interfaces=["lo"], families=["ipv4"]) as node:
        assert node.portmapper is None and not node.address.mapped
        with pytest.raises(Exception, match="no gateway"):
            await node.map_port()
    async with Node(interfaces=["lo"], families=["ipv4"], portmap="off") as node:
        with pytest.raises(Exception, match="port mapping is off"):
            await node.map_port()


async def test_an_endless_upnp_description_is_cut_at_64_kib():
    """A hostile gateway's HTTP answer is read at most UPNP_MAX_BODY bytes, then refused."""
    from warpgate.portmap import UPNP_MAX_BODY, PortMapError

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n")
        try:
            for _ in range(64):  # 4 MiB unless the client stops reading
                writer.write(b"<a>" + b"x" * 65536)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(serve, GATEWAY, 0)
    port = server.sockets[0].getsockname()[1]
    mapper = PortMapper(GATEWAY, GATEWAY, protocols=("upnp",))
    mapper._upnp_location = f"http://{GATEWAY}:{port}/rootDesc.xml"
    try:
        with pytest.raises(PortMapError, match=f"larger than {UPNP_MAX_BODY} bytes"):
            await mapper._upnp_service()
    finally:
        server.close()
        await server.wait_closed()
