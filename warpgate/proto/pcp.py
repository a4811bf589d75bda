"""PCP (RFC 6887) MAP requests and answers as pure functions of bytes.

Only the MAP opcode (§11) is spoken: a node asks for an inbound mapping of its own port. A random
12-byte nonce ties an answer to its request (§11.1); the answer is checked for it, the protocol,
the internal port and a sane lifetime (``check``), else a ``PortMapRejected`` names the reason.
Options after the opcode data are skipped, bounded by the 1100-byte message limit (§7).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from warpgate.proto.natpmp import MAX_LIFETIME, Mapped, PortMapRefused, PortMapRejected, Proto

VERSION = 2
OP_MAP = 1
MAX_MESSAGE = 1100  # RFC 6887 §7
HEADER = 24
MAP_DATA = 36
IANA = {"udp": 17, "tcp": 6}

RESULTS = {
    0: "success",
    1: "unsupported version",
    2: "not authorized",
    3: "malformed request",
    4: "unsupported opcode",
    5: "unsupported option",
    6: "malformed option",
    7: "network failure",
    8: "no resources",
    9: "unsupported protocol",
    10: "user exceeded quota",
    11: "cannot provide external",
    12: "address mismatch",
    13: "excessive remote peers",
}  # RFC 6887 §7.4


def _v6(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """Addresses travel as 16 bytes, IPv4 as IPv4-mapped IPv6 (§5)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def _ip(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    v6 = ipaddress.IPv6Address(raw)
    return v6.ipv4_mapped or v6


_ANY = ipaddress.IPv4Address(0)
ANY4 = _ANY
"""The suggested external address "any IPv4" (sent IPv4-mapped); ``IPv6Address(0)``: any IPv6."""


@dataclass(frozen=True, slots=True)
class MapRequest:
    """RFC 6887 §11.1: map our ``internal`` port, sent from ``client`` (the source address the
    server will see, §8.1); ``lifetime`` 0 deletes the mapping the same nonce made (§15)."""

    proto: Proto
    client: ipaddress.IPv4Address | ipaddress.IPv6Address
    internal: int
    nonce: bytes
    lifetime: int
    suggested: int = 0
    suggested_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = _ANY

    def __post_init__(self) -> None:
        if len(self.nonce) != 12:
            raise ValueError("a PCP nonce has 12 bytes")

    def encode(self) -> bytes:
        header = struct.pack("!BBHI", VERSION, OP_MAP, 0, self.lifetime) + _v6(self.client)
        body = self.nonce + struct.pack("!B3xHH", IANA[self.proto], self.internal, self.suggested)
        return header + body + _v6(self.suggested_ip)


@dataclass(frozen=True, slots=True)
class PcpMapped:
    """What a PCP server granted: the mapping and the external address it lives on."""

    mapped: Mapped
    external_ip: ipaddress.IPv4Address | ipaddress.IPv6Address


def check(req: MapRequest, data: bytes) -> PcpMapped:
    """The answer to ``req`` (RFC 6887 §7.2, §11.1), or a typed error naming what is wrong."""
    if len(data) > MAX_MESSAGE:
        raise PortMapRejected("malformed", f"{len(data)} bytes exceeds PCP's {MAX_MESSAGE}")
    if len(data) < 4:
        raise PortMapRejected("malformed", f"{len(data)} bytes is too short for a PCP answer")
    version, op, _, code = data[0], data[1], data[2], data[3]
    if version != VERSION:
        raise PortMapRejected("malformed", f"PCP version {version}, we speak {VERSION}")
    if op != 0x80 | OP_MAP:
        raise PortMapRejected("wrong_opcode", f"opcode {op:#x} is not a MAP answer")
    if len(data) < HEADER or len(data) % 4:
        raise PortMapRejected("malformed", f"a PCP answer of {len(data)} bytes (>= 24, a multiple of 4)")
    lifetime, epoch = struct.unpack("!II", data[4:12])
    if code:
        # §7.4: an error answer may carry no opcode data worth reading
        raise PortMapRefused("PCP", code, RESULTS.get(code, "unknown result"))
    if len(data) < HEADER + MAP_DATA:
        raise PortMapRejected("malformed", f"a MAP answer has >= {HEADER + MAP_DATA} bytes, not {len(data)}")
    body = data[HEADER : HEADER + MAP_DATA]
    nonce, proto, internal, external = body[:12], body[12], *struct.unpack("!HH", body[16:20])
    if nonce != req.nonce:
        raise PortMapRejected("wrong_nonce", "the answer's nonce is not our request's")
    if proto != IANA[req.proto]:
        raise PortMapRejected("wrong_protocol", f"protocol {proto} answers a {req.proto} request")
    if internal != req.internal:
        raise PortMapRejected(
            "wrong_port", f"the answer maps internal port {internal}, we asked for {req.internal}"
        )
    ext_ip = _ip(body[20:36])
    if req.lifetime == 0:
        return PcpMapped(Mapped(req.proto, internal, external, 0, epoch), ext_ip)
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise PortMapRejected("absurd_lifetime", f"lifetime {lifetime} s outside 1..{MAX_LIFETIME}")
    if external == 0 or ext_ip.is_unspecified:
        raise PortMapRejected("malformed", "a granted mapping without an external port or address")
    return PcpMapped(Mapped(req.proto, internal, external, lifetime, epoch), ext_ip)


OP_ANNOUNCE = 0


def announce(client: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """RFC 6887 §14.1: an ANNOUNCE request, which asks nothing and so maps nothing: a probe of
    whether the gateway speaks PCP."""
    return struct.pack("!BBHI", VERSION, OP_ANNOUNCE, 0, 0) + _v6(client)


def check_announce(data: bytes) -> int:
    """The answer to ``announce``: the server's epoch (§8.5), or a typed error."""
    if len(data) > MAX_MESSAGE or len(data) < HEADER or len(data) % 4:
        raise PortMapRejected("malformed", f"a PCP answer of {len(data)} bytes (24..1100, a multiple of 4)")
    if data[0] != VERSION:
        raise PortMapRejected("malformed", f"PCP version {data[0]}, we speak {VERSION}")
    if data[1] != 0x80 | OP_ANNOUNCE:
        raise PortMapRejected("wrong_opcode", f"opcode {data[1]:#x} is not an ANNOUNCE answer")
    if data[3]:
        raise PortMapRefused("PCP", data[3], RESULTS.get(data[3], "unknown result"))
    return int.from_bytes(data[8:12], "big")
