"""Mutation fuzzing of every decoder that reads bytes from the network (the targets and the
engine; ``bench/fuzz.py`` is the script that runs them, ``tests/unit/test_fuzz.py`` a short run).

Each target is a decoder and the one exception type it may raise (its typed error). Inputs are
valid encodings mutated (bytes flipped, set to 0x00/0xff, inserted, deleted, truncated,
extended, length fields broken), random bytes of random length, and the seeds themselves. Any
other exception is a finding, kept with the first input that raised it.
"""

from __future__ import annotations

import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from warpgate.errors import AddressError, RemoteProtocolError
from warpgate.identity import Identity
from warpgate.portmap import ssdp_location
from warpgate.proto import address, frames, handshake, names, natpmp, pcp, record
from warpgate.proto.address import Address, Interface
from warpgate.proto.envelope import MsgType, ReplayCache, SignalRejected, open_envelope, seal
from warpgate.proto.frames import Kind
from warpgate.proto.natpmp import PortMapRefused, PortMapRejected
from warpgate.stun import StunError, _parse, _request

PortMapError = (PortMapRejected, PortMapRefused)

NOW = 1_800_000_000.0


@dataclass
class Target:
    name: str
    decode: Callable[[bytes], object]
    typed: type[BaseException] | tuple[type[BaseException], ...]
    seeds: list[bytes]


@dataclass
class Result:
    name: str
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    examples: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    seconds: float = 0.0


def targets() -> list[Target]:
    a, b = Identity.generate(), Identity.generate()
    ip = __import__("ipaddress")
    iface = Interface(private4=ip.IPv4Address("192.168.1.2"), public4=ip.IPv4Address("203.0.113.5"))
    addr_a = Address(a.public_key, 4000, 4001, (iface,), ("mqtt://198.51.100.1:1883",))
    addr_b = Address(b.public_key, 5000, 5001, (iface,))
    env = seal(a, addr_a, addr_b, MsgType.REQUEST, b'{"kind":"x","rid":"1","body":{}}', now=NOW)

    def open_env(data: bytes) -> object:
        return open_envelope(data, b, now=NOW, replay=ReplayCache())

    init = handshake.Initiator(a, b.public_key, os.urandom(16), "direct")
    resp = handshake.Responder(b)
    challenge = resp.receive(init.last)
    proof = init.receive(challenge) or b""
    done = resp.receive(proof)

    key = os.urandom(32)
    sealer = record.UdpSealer(key)
    sealed = [sealer.seal(Kind.DATA, b"payload"), sealer.seal(Kind.CLOSE), sealer.seal(Kind.PING)]

    def open_record(data: bytes) -> object:
        return record.UdpOpener(key).open(data)

    record_name = names.sign(a, names.Op.CLAIM, "alice", addr_a, seq=1, expires=int(NOW) + 60)

    from aioice import stun

    answer = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=_request(0).transaction_id,
    )
    answer.attributes["XOR-MAPPED-ADDRESS"] = ("203.0.113.5", 4000)
    answer.attributes["OTHER-ADDRESS"] = ("203.0.113.6", 3479)

    def parse_stun(data: bytes) -> object:
        return _parse(data, ("203.0.113.10", 3478), 0.0)

    def tcp_header(data: bytes) -> object:
        return frames.tcp_header(data[: frames.HEADER_SIZE].ljust(frames.HEADER_SIZE, b"\0"))

    pmp_req = natpmp.MapRequest("udp", 7000, 7000, 7200)
    pmp_seed = bytes([0, 129, 0, 0, 0, 0, 0, 1]) + bytes([27, 88, 27, 88, 0, 0, 28, 32])
    pcp_req = pcp.MapRequest("udp", ip.IPv4Address("10.0.1.11"), 7000, bytes(range(12)), 7200)
    pcp_seed = (
        bytes([2, 0x81, 0, 0, 0, 0, 28, 32])
        + bytes(16)
        + bytes(range(12))
        + bytes([17, 0, 0, 0, 27, 88, 27, 88])
        + pcp._v6(ip.IPv4Address("203.0.113.1"))
    )
    ssdp_seed = b"HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: http://10.0.1.1:5555/rootDesc.xml\r\n\r\n"
    return [
        Target("address", address.decode, AddressError, [addr_a.to_bytes(), addr_b.to_bytes()]),
        Target("envelope", open_env, SignalRejected, [env]),
        Target(
            "udp frame", frames.udp_parse, RemoteProtocolError, [frames.udp_frame(Kind.HANDSHAKE, init.last)]
        ),
        Target("tcp frame", tcp_header, RemoteProtocolError, [frames.tcp_frame(Kind.DATA, b"x")]),
        Target("handshake", handshake.decode, RemoteProtocolError, [init.last, challenge, proof, done]),
        Target("record", open_record, RemoteProtocolError, sealed),
        Target("stun", parse_stun, StunError, [bytes(answer)]),
        Target("names", names.decode, names.NameServiceError, [record_name.to_bytes()]),
        Target("nat-pmp", lambda d: natpmp.check(pmp_req, d), PortMapError, [pmp_seed]),
        Target("pcp", lambda d: pcp.check(pcp_req, d), PortMapError, [pcp_seed]),
        Target("pcp announce", pcp.check_announce, PortMapError, [pcp_seed[:24]]),
        Target("ssdp", ssdp_location, PortMapError, [ssdp_seed]),
    ]


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        op = rng.randrange(8)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[pos % len(data)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[pos % len(data)] = rng.choice((0, 0xFF, 0x7F, 0x80, 1))
        elif op == 2:
            data[pos:pos] = os.urandom(rng.randrange(1, 16))
        elif op == 3:
            del data[pos : pos + rng.randrange(1, 16)]
        elif op == 4:
            del data[pos:]
        elif op == 5:
            data += os.urandom(rng.randrange(1, 64))
        elif op == 6 and len(data) >= 2:  # a length-like field: two bytes set to an extreme
            p = pos % (len(data) - 1)
            data[p : p + 2] = rng.choice((b"\xff\xff", b"\x00\x00", b"\x00\x01", b"\x7f\xff"))
        elif op == 7 and data:
            data[pos % len(data) :] = bytes(len(data) - pos % len(data))
    return bytes(data)


def run(target: Target, n: int, seed: int = 1) -> Result:
    rng = random.Random(seed)
    result = Result(target.name)
    started = time.perf_counter()
    for i in range(n):
        if i < len(target.seeds):
            data = target.seeds[i]
        elif rng.random() < 0.1:
            data = rng.randbytes(rng.randrange(0, 600))
        else:
            data = mutate(rng, rng.choice(target.seeds))
        result.inputs += 1
        try:
            target.decode(data)
            result.accepted += 1
        except target.typed:
            result.rejected += 1
        except Exception as exc:  # noqa: BLE001  the finding: an untyped exception from hostile bytes
            kind = f"{type(exc).__name__} at {traceback.extract_tb(exc.__traceback__)[-1].name}"
            result.findings[kind] += 1
            result.examples.setdefault(kind, (data, repr(exc)))
    result.seconds = time.perf_counter() - started
    return result
