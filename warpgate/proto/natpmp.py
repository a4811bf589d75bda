"""NAT-PMP (RFC 6886) as pure functions of bytes: requests to build, answers to check.

No maintained Python codec exists, so this one is small, strict and fuzzed (``tests/fuzz.py``).
An answer is checked against the request it answers (``check``): the opcode, the internal port and
a sane lifetime; anything else is a ``PortMapRejected`` naming the reason, which the client counts.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Literal

from warpgate.errors import RemoteProtocolError

PORT = 5351
"""The gateway's NAT-PMP (and PCP) server port (RFC 6886 §3.1, RFC 6887 §19.1)."""
VERSION = 0
OP_EXTERNAL = 0
OP_MAP = {"udp": 1, "tcp": 2}
MAX_LIFETIME = 7 * 24 * 3600
"""Longer grants are absurd for a lease we refresh anyway; refused (a week; RFC 6886 §3.3
recommends 7200 s)."""

RESULTS = {
    0: "success",
    1: "unsupported version",
    2: "not authorized / refused",
    3: "network failure",
    4: "out of resources",
    5: "unsupported opcode",
}  # RFC 6886 §3.5

Proto = Literal["udp", "tcp"]


class PortMapRejected(RemoteProtocolError):
    """An answer from a gateway that is malformed or does not fit our request; ``reason`` is the
    counter name (``wrong_port``, ``absurd_lifetime``, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class PortMapRefused(RemoteProtocolError):
    """A well-formed answer whose result code says no (``code``, ``text``)."""

    def __init__(self, protocol: str, code: int, text: str) -> None:
        super().__init__(f"{protocol} result {code}: {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class MapRequest:
    """RFC 6886 §3.3: map ``internal`` (our port) for ``lifetime`` seconds; lifetime 0 deletes."""

    proto: Proto
    internal: int
    suggested: int
    lifetime: int

    def encode(self) -> bytes:
        return struct.pack(
            "!BBHHHI", VERSION, OP_MAP[self.proto], 0, self.internal, self.suggested, self.lifetime
        )


@dataclass(frozen=True, slots=True)
class Mapped:
    """A granted mapping: ``external`` port for ``internal`` on our side, for ``lifetime`` seconds."""

    proto: Proto
    internal: int
    external: int
    lifetime: int
    epoch: int


def external_request() -> bytes:
    """RFC 6886 §3.2: ask for the gateway's external IPv4 address."""
    return bytes((VERSION, OP_EXTERNAL))


def decode_external(data: bytes) -> ipaddress.IPv4Address:
    """The answer to ``external_request`` (12 bytes, RFC 6886 §3.2)."""
    _answer(data, OP_EXTERNAL, "an external-address request", 12)
    return ipaddress.IPv4Address(data[8:12])


def _answer(data: bytes, op: int, what: str, size: int) -> None:
    """Version, opcode (128 + the request's, §3.5), result code and size of an answer."""
    if len(data) < 4 or data[0] != VERSION:
        raise PortMapRejected("malformed", f"not a NAT-PMP version 0 answer ({len(data)} bytes)")
    if data[1] != 128 + op:
        raise PortMapRejected("wrong_opcode", f"opcode {data[1]} does not answer {what}")
    code = int.from_bytes(data[2:4], "big")
    if code:
        raise PortMapRefused("NAT-PMP", code, RESULTS.get(code, "unknown result"))
    if len(data) != size:
        raise PortMapRejected("malformed", f"an answer to {what} has {size} bytes, not {len(data)}")


def check(req: MapRequest, data: bytes) -> Mapped:
    """The answer to ``req`` (16 bytes, RFC 6886 §3.3), or a typed error naming what is wrong."""
    _answer(data, OP_MAP[req.proto], f"a {req.proto} mapping", 16)
    epoch, internal, external, lifetime = struct.unpack("!IHHI", data[4:16])
    if internal != req.internal:
        raise PortMapRejected(
            "wrong_port", f"the answer maps internal port {internal}, we asked for {req.internal}"
        )
    if req.lifetime == 0:
        return Mapped(req.proto, internal, external, 0, epoch)  # a deletion: external is 0 (§3.4)
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise PortMapRejected("absurd_lifetime", f"lifetime {lifetime} s outside 1..{MAX_LIFETIME}")
    if external == 0:
        raise PortMapRejected("malformed", "a granted mapping with external port 0")
    return Mapped(req.proto, internal, external, lifetime, epoch)
