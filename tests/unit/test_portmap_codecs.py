"""NAT-PMP (RFC 6886), PCP (RFC 6887) and the SSDP answer: requests as the RFCs lay them out,
answers checked against the request they answer (every rejection named for its counter)."""

import ipaddress
import struct

import pytest

from warpgate.portmap import ssdp_location, ssdp_search
from warpgate.proto import natpmp, pcp
from warpgate.proto.natpmp import PortMapRefused, PortMapRejected

CLIENT = ipaddress.IPv4Address("10.1.0.11")
NONCE = bytes(range(12))


def pmp_answer(op=129, code=0, internal=7000, external=7000, lifetime=7200):
    return struct.pack("!BBHIHHI", 0, op, code, 1234, internal, external, lifetime)


def pcp_answer(
    req, *, code=0, lifetime=7200, nonce=NONCE, proto=17, internal=None, external=7000, ip="203.0.113.1"
):
    head = struct.pack("!BBBBII", 2, 0x81, 0, code, lifetime, 99) + bytes(12)
    ext = pcp._v6(ipaddress.ip_address(ip))
    body = (
        nonce + struct.pack("!B3xHH", proto, req.internal if internal is None else internal, external) + ext
    )
    return head + body


def test_natpmp_request_layout():
    """RFC 6886 §3.3: version 0, opcode 1 (UDP) or 2 (TCP), reserved, ports, lifetime."""
    req = natpmp.MapRequest("tcp", 7000, 7001, 3600)
    assert req.encode() == bytes([0, 2, 0, 0]) + struct.pack("!HHI", 7000, 7001, 3600)
    assert natpmp.external_request() == b"\x00\x00"


def test_natpmp_answer_is_checked_against_its_request():
    req = natpmp.MapRequest("udp", 7000, 7000, 7200)
    got = natpmp.check(req, pmp_answer(external=40001, lifetime=3600))
    assert (got.external, got.lifetime, got.epoch) == (40001, 3600, 1234)
    cases = {
        "wrong_port": pmp_answer(internal=7001),
        "absurd_lifetime": pmp_answer(lifetime=natpmp.MAX_LIFETIME + 1),
        "wrong_opcode": pmp_answer(op=130),  # a TCP answer to a UDP request
        "malformed": pmp_answer()[:15],
    }
    for reason, data in cases.items():
        with pytest.raises(PortMapRejected) as info:
            natpmp.check(req, data)
        assert info.value.reason == reason
    with pytest.raises(PortMapRefused, match="result 2: not authorized"):
        natpmp.check(req, pmp_answer(code=2))
    # a deletion's answer carries lifetime 0 and external port 0 (§3.4)
    assert (
        natpmp.check(natpmp.MapRequest("udp", 7000, 0, 0), pmp_answer(external=0, lifetime=0)).lifetime == 0
    )


def test_natpmp_external_address():
    data = struct.pack("!BBHI", 0, 128, 0, 5) + ipaddress.IPv4Address("203.0.113.9").packed
    assert str(natpmp.decode_external(data)) == "203.0.113.9"
    with pytest.raises(PortMapRejected):
        natpmp.decode_external(data[:11])


def test_pcp_map_request_layout():
    """RFC 6887 §7.1 header (24 bytes) and §11.1 MAP data (36 bytes); IPv4 as IPv4-mapped."""
    req = pcp.MapRequest("udp", CLIENT, 7000, NONCE, 7200, 7000)
    raw = req.encode()
    assert len(raw) == 60 and raw[:2] == b"\x02\x01"
    assert struct.unpack("!I", raw[4:8]) == (7200,)
    assert raw[8:24] == b"\0" * 10 + b"\xff\xff" + CLIENT.packed
    assert raw[24:36] == NONCE and raw[36] == 17
    assert struct.unpack("!HH", raw[40:44]) == (7000, 7000)
    assert len(pcp.announce(CLIENT)) == 24 and pcp.announce(CLIENT)[1] == 0


def test_pcp_answer_is_checked_against_its_request():
    req = pcp.MapRequest("udp", CLIENT, 7000, NONCE, 7200)
    got = pcp.check(req, pcp_answer(req, external=40002))
    assert (got.mapped.external, str(got.external_ip), got.mapped.lifetime) == (40002, "203.0.113.1", 7200)
    cases = {
        "wrong_nonce": pcp_answer(req, nonce=bytes(12)),
        "wrong_port": pcp_answer(req, internal=7001),
        "wrong_protocol": pcp_answer(req, proto=6),
        "absurd_lifetime": pcp_answer(req, lifetime=10**9),
        "malformed": pcp_answer(req)[:58],
    }
    for reason, data in cases.items():
        with pytest.raises(PortMapRejected) as info:
            pcp.check(req, data)
        assert info.value.reason == reason
    with pytest.raises(PortMapRefused, match="result 8: no resources"):
        pcp.check(req, pcp_answer(req, code=8))
    with pytest.raises(PortMapRejected, match="exceeds"):
        pcp.check(req, pcp_answer(req) + bytes(1100))
    assert pcp.check_announce(struct.pack("!BBBBII", 2, 0x80, 0, 0, 0, 7) + bytes(12)) == 7


def test_ssdp_search_and_location():
    assert ssdp_search(("10.1.0.1", 1900)).startswith(b"M-SEARCH * HTTP/1.1\r\nHOST: 10.1.0.1:1900\r\n")
    answer = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nLocation: http://10.1.0.1:5555/rootDesc.xml\r\n\r\n"
    assert ssdp_location(answer) == "http://10.1.0.1:5555/rootDesc.xml"
    for bad in (
        b"NOTIFY * HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"\xff\xfe",
        answer.replace(b"http:", b"file:"),
    ):
        with pytest.raises(PortMapRejected):
            ssdp_location(bad)
