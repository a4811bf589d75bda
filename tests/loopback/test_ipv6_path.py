"""A node's IPv6 path check against a hostile STUN server on ::1, and a hostile UPnP pinhole
answer: what a node advertises as its public IPv6 endpoint is only ever its own socket's."""

import asyncio

import pytest
from aioice import stun

from warpgate import Node
from warpgate.portmap import PortMapError, PortMapper


class Stun(asyncio.DatagramProtocol):
    """Answers every binding request with ``seen(addr)`` as the mapped address."""

    def __init__(self, seen):
        self.seen = seen

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        req = stun.parse_message(data)
        answer = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=req.transaction_id,
        )
        answer.attributes["XOR-MAPPED-ADDRESS"] = self.seen(addr)
        self.transport.sendto(bytes(answer), addr)


async def stun_server(seen):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: Stun(seen), local_addr=("::1", 0))
    return transport, transport.get_extra_info("sockname")[1]


@pytest.mark.parametrize(
    ("seen", "advertised"),
    [
        (lambda addr: (addr[0], addr[1]), True),  # the socket's own address and port: a firewall
        (lambda addr: ("2001:db8::66", addr[1]), False),  # someone else's address
        (lambda addr: (addr[0], addr[1] + 1), False),  # another port: a NAT66, not modelled
    ],
)
async def test_only_the_sockets_own_ipv6_endpoint_is_advertised(seen, advertised):
    transport, port = await stun_server(seen)
    try:
        async with Node(interfaces=["lo"], stun=[f"[::1]:{port}"], portmap="off") as node:
            public6 = [i.public6 for i in node.address.interfaces if i.public6 is not None]
            if advertised:
                assert [str(ip) for ip in public6] == ["::1"]
                assert node.public6 == {"::1": ("::1", node.port)}
            else:
                assert public6 == [] and node.public6 == {}
                assert node.stats["ipv6_translated"] == 1
    finally:
        transport.close()


@pytest.mark.parametrize("unique_id", ["70000", "-1", "pinhole", None])
async def test_a_pinhole_answer_without_a_valid_unique_id_is_refused(unique_id):
    """IGD v2's UniqueID is a ui2: anything else is refused and counted, never stored."""
    mapper = PortMapper("::1", "::1", protocols=("upnp",))
    mapper.set_port(7000)

    async def hostile(action, **args):  # the gateway's SOAP answer, as async-upnp-client parsed it
        return {} if unique_id is None else {"UniqueID": unique_id}

    mapper._upnp_call = hostile
    with pytest.raises(PortMapError, match="valid UniqueID"):
        await mapper._upnp_pinholes(60)
    assert mapper._pinhole_ids == {} and mapper.stats["bad_unique_id"] == 1
