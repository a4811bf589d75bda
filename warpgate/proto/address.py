"""The warpgate address: what a peer needs to reach a node, as compact bytes and paste-safe text.

Binary form, version 1 (all integers big-endian)::

    u8   version = 1
    33   public key (compressed P-256)
    u16  TCP listen port          u16  UDP listen port
    u8   interface count (1..8), then per interface:
         u8  flags: bit0 private IPv4, bit1 public IPv4, bit2 private IPv6, bit3 public IPv6,
                    bit4 public UDP port, bit5 public TCP port, bit6 gateway mapping, bit7 TCP NAT
         the present addresses in that order (4 or 16 bytes), then the present public ports (u16)
         4   NAT behaviour (``warpgate.proto.nat.pack``)
         with bit6: 4 external IPv4, u16 UDP port, u16 TCP port (0: not mapped): an inbound
             mapping the gateway granted (PCP, NAT-PMP, UPnP IGD), open to anyone; both ports 0
             (and 0.0.0.0): none is held, but the gateway answers a mapping protocol, so a peer
             may ask the node to map on demand (``Interface.maps``)
         with bit7: 4 the TCP NAT behaviour (``nat.pack``), when it differs from the UDP one
    u8   broker hint count (0..4), then per hint: u8 length (1..200), UTF-8 ``mqtt://host:port``

A one-interface dual-stack address with public and private IPv4 and IPv6 is 84 bytes.

Text form: ``wg1`` + lowercase RFC 4648 base32 without padding of (binary + first 4 bytes of its
SHA-256). Letters and digits only, so it survives chat clients, shells and URLs; the checksum
catches typos and truncation. The decoder accepts upper case and surrounding white space.

Every decode error is an ``AddressError`` whose message names the problem.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

from warpgate.errors import AddressError
from warpgate.identity import PUBLIC_KEY_SIZE, load_public_key, node_id_of
from warpgate.proto import nat as natcodec
from warpgate.proto.nat import NatBehaviour

VERSION = 1
TEXT_PREFIX = "wg1"
MAX_INTERFACES = 8
MAX_BROKERS = 4
MAX_BROKER_LEN = 200
CHECKSUM_SIZE = 4

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
Proto = Literal["tcp", "udp"]


@dataclass(frozen=True, slots=True)
class Interface:
    """One network interface of a node, as seen from inside (private) and outside (public)."""

    private4: IPv4 | None = None
    public4: IPv4 | None = None
    private6: IPv6 | None = None
    public6: IPv6 | None = None
    public_udp_port: int | None = None
    """External UDP port of the node's mapping, when measured (STUN) and different from the listen port."""
    public_tcp_port: int | None = None
    nat: NatBehaviour = field(default_factory=NatBehaviour)
    mapped4: IPv4 | None = None
    """External address of a mapping the gateway granted (``warpgate.portmap``); with it
    ``mapped_udp_port`` / ``mapped_tcp_port`` reach the node from anywhere."""
    mapped_udp_port: int | None = None
    mapped_tcp_port: int | None = None
    nat_tcp: NatBehaviour | None = None
    """The TCP NAT behaviour, when it differs from ``nat`` (UDP blocked, TCP mapped: tcp_punch
    reads it); None: the same as ``nat``."""
    maps: bool = False
    """No mapping is held, but the gateway answered a mapping protocol: it may grant one when a
    peer asks (the ``portmap`` plugin asks only then)."""

    def __post_init__(self) -> None:
        for name in ("private4", "public4"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), IPv4):
                raise AddressError(f"interface {name} must be an IPv4 address")
        for name in ("private6", "public6"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), IPv6):
                raise AddressError(f"interface {name} must be an IPv6 address")
        for name in ("public_udp_port", "public_tcp_port"):
            port = getattr(self, name)
            if port is not None and not 1 <= port <= 65535:
                raise AddressError(f"interface {name} {port} outside 1..65535")
        if not any((self.private4, self.public4, self.private6, self.public6)):
            raise AddressError("interface has no IP address")
        for name in ("mapped_udp_port", "mapped_tcp_port"):
            port = getattr(self, name)
            if port is not None and not 1 <= port <= 65535:
                raise AddressError(f"interface {name} {port} outside 1..65535")
        if self.mapped4 is not None and not isinstance(self.mapped4, IPv4):
            raise AddressError("interface mapped4 must be an IPv4 address")
        if (self.mapped4 is None) != (self.mapped_udp_port is None and self.mapped_tcp_port is None):
            raise AddressError("a gateway mapping needs its external address and at least one port")
        if self.maps and self.mapped4 is not None:
            raise AddressError("an interface holds a gateway mapping or may ask for one, not both")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to try to reach a peer: one IP, one port, one transport, and what kind of address it is."""

    proto: Proto
    host: str
    port: int
    kind: Literal["public", "private", "mapped"]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.proto}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Address:
    """A node's address: its key, listen ports, interfaces and signal-broker hints."""

    public_key: bytes
    tcp_port: int
    udp_port: int
    interfaces: tuple[Interface, ...]
    brokers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            load_public_key(self.public_key)
        except ValueError as exc:
            raise AddressError(f"wrong key: {exc}") from None
        for name in ("tcp_port", "udp_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise AddressError(f"{name} {getattr(self, name)} outside 1..65535")
        if not 1 <= len(self.interfaces) <= MAX_INTERFACES:
            raise AddressError(f"an address holds 1..{MAX_INTERFACES} interfaces, not {len(self.interfaces)}")
        if len(self.brokers) > MAX_BROKERS:
            raise AddressError(f"an address holds at most {MAX_BROKERS} broker hints")
        for b in self.brokers:
            size = len(b.encode("utf-8"))
            if not 1 <= size <= MAX_BROKER_LEN:
                raise AddressError(f"broker hint of {size} bytes outside 1..{MAX_BROKER_LEN}")

    @property
    def node_id(self) -> str:
        return node_id_of(self.public_key)

    @property
    def mapped(self) -> bool:
        """Does an interface carry an inbound mapping its gateway granted (``warpgate.portmap``)?"""
        return any(i.mapped4 is not None for i in self.interfaces)

    @property
    def maps(self) -> bool:
        """Does an interface's gateway answer a mapping protocol, none being held (``Interface.maps``)?"""
        return any(i.maps for i in self.interfaces)

    def only(self, families: Iterable[str]) -> Address:
        """This address without the IP addresses of the families not in ``families`` (a node
        started with ``families=("ipv4",)`` never dials the peer's IPv6 ones)."""
        keep = set(families)
        v4, v6 = "ipv4" in keep, "ipv6" in keep
        if v4 and v6:
            return self
        kept = tuple(
            replace(
                i,
                private4=i.private4 if v4 else None,
                public4=i.public4 if v4 else None,
                mapped4=i.mapped4 if v4 else None,
                mapped_udp_port=i.mapped_udp_port if v4 else None,
                mapped_tcp_port=i.mapped_tcp_port if v4 else None,
                private6=i.private6 if v6 else None,
                public6=i.public6 if v6 else None,
            )
            for i in self.interfaces
            if (v4 and (i.private4 or i.public4)) or (v6 and (i.private6 or i.public6))
        )
        if not kept:
            raise AddressError(f"the address has no {' or '.join(sorted(keep))} address")
        return replace(self, interfaces=kept)

    # -- encodings ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        out = bytearray((VERSION,))
        out += self.public_key
        out += self.tcp_port.to_bytes(2, "big") + self.udp_port.to_bytes(2, "big")
        out.append(len(self.interfaces))
        for iface in self.interfaces:
            addrs = (iface.private4, iface.public4, iface.private6, iface.public6)
            ports = (iface.public_udp_port, iface.public_tcp_port)
            flags = sum(1 << i for i, a in enumerate(addrs) if a is not None)
            flags |= sum(1 << (4 + i) for i, p in enumerate(ports) if p is not None)
            flags |= (iface.mapped4 is not None or iface.maps) << 6
            flags |= (iface.nat_tcp is not None) << 7
            out.append(flags)
            for a in addrs:
                if a is not None:
                    out += a.packed
            for p in ports:
                if p is not None:
                    out += p.to_bytes(2, "big")
            out += natcodec.pack(iface.nat)
            if iface.mapped4 is not None:
                out += iface.mapped4.packed
                out += (iface.mapped_udp_port or 0).to_bytes(2, "big")
                out += (iface.mapped_tcp_port or 0).to_bytes(2, "big")
            elif iface.maps:
                out += bytes(8)  # 0.0.0.0, no port: none held, one may be asked for
            if iface.nat_tcp is not None:
                out += natcodec.pack(iface.nat_tcp)
        out.append(len(self.brokers))
        for b in self.brokers:
            raw = b.encode("utf-8")
            out.append(len(raw))
            out += raw
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Address:
        return decode(data)

    def to_text(self) -> str:
        raw = self.to_bytes()
        raw += hashlib.sha256(raw).digest()[:CHECKSUM_SIZE]
        return TEXT_PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    @classmethod
    def from_text(cls, text: str) -> Address:
        return decode_text(text)

    def __str__(self) -> str:
        return self.to_text()

    # -- use ---------------------------------------------------------------------------------

    def endpoints(self, proto: Proto) -> Iterator[Endpoint]:
        """Every endpoint worth a direct try, public before private, IPv6 before IPv4 (RFC 8305 §4)."""
        seen: set[tuple[str, int]] = set()
        listen = self.tcp_port if proto == "tcp" else self.udp_port
        for iface in self.interfaces:
            mapped = iface.public_tcp_port if proto == "tcp" else iface.public_udp_port
            granted = iface.mapped_tcp_port if proto == "tcp" else iface.mapped_udp_port
            if (
                iface.mapped4 is not None
                and granted is not None
                and (str(iface.mapped4), granted) not in seen
            ):
                # a mapping the gateway granted is open to anyone: the surest public endpoint
                seen.add((str(iface.mapped4), granted))
                yield Endpoint(proto, str(iface.mapped4), granted, "mapped")
            candidates = (
                # IPv6 is not translated: its public endpoint is the listening port itself (a node
                # advertises ``public6`` only when a STUN server saw that port)
                (iface.public6, listen, "public"),
                (iface.public4, mapped or listen, "public"),
                (iface.private6, listen, "private"),
                (iface.private4, listen, "private"),
            )
            for ip, port, kind in candidates:
                if ip is None or (str(ip), port) in seen:
                    continue
                seen.add((str(ip), port))
                yield Endpoint(proto, str(ip), port, kind)  # type: ignore[arg-type]


class _Reader:
    """Bounds-checked cursor over bytes; every short read is an AddressError naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise AddressError(f"address truncated in {what} (byte {self.pos}, need {n} more)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")


def decode(data: bytes) -> Address:
    """Strict decoder of the binary form; any malformed input raises ``AddressError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AddressError(f"address bytes expected, got {type(data).__name__}")
    r = _Reader(bytes(data))
    version = r.u8("version")
    if version != VERSION:
        raise AddressError(f"unsupported address version {version} (this build reads {VERSION})")
    key = r.take(PUBLIC_KEY_SIZE, "public key")
    tcp_port, udp_port = r.u16("TCP port"), r.u16("UDP port")
    count = r.u8("interface count")
    if not 1 <= count <= MAX_INTERFACES:
        raise AddressError(f"interface count {count} outside 1..{MAX_INTERFACES}")
    interfaces = []
    for i in range(count):
        flags = r.u8(f"interface {i} flags")
        addrs: list[IPv4 | IPv6 | None] = []
        for bit, size in ((0, 4), (1, 4), (2, 16), (3, 16)):
            if flags & (1 << bit):
                raw = r.take(size, f"interface {i} address")
                addrs.append(IPv4(raw) if size == 4 else IPv6(raw))
            else:
                addrs.append(None)
        ports = [r.u16(f"interface {i} public port") if flags & (1 << b) else None for b in (4, 5)]
        try:
            nat = natcodec.unpack(r.take(4, f"interface {i} NAT behaviour"))
        except ValueError as exc:
            raise AddressError(f"interface {i}: {exc}") from None
        mapped: tuple[IPv4 | None, int | None, int | None] = (None, None, None)
        maps = False
        if flags & (1 << 6):
            ip = IPv4(r.take(4, f"interface {i} mapped address"))
            udp, tcp = r.u16(f"interface {i} mapped UDP port"), r.u16(f"interface {i} mapped TCP port")
            if udp or tcp:
                mapped = (ip, udp or None, tcp or None)
            elif int(ip):
                raise AddressError(f"interface {i}: a gateway that maps on demand has no address yet")
            else:
                maps = True
        nat_tcp = None
        if flags & (1 << 7):
            try:
                nat_tcp = natcodec.unpack(r.take(4, f"interface {i} TCP NAT behaviour"))
            except ValueError as exc:
                raise AddressError(f"interface {i}: TCP {exc}") from None
        interfaces.append(
            Interface(addrs[0], addrs[1], addrs[2], addrs[3], ports[0], ports[1], nat, *mapped, nat_tcp, maps)  # type: ignore[arg-type]
        )
    nbrokers = r.u8("broker count")
    if nbrokers > MAX_BROKERS:
        raise AddressError(f"broker count {nbrokers} above {MAX_BROKERS}")
    brokers = []
    for i in range(nbrokers):
        size = r.u8(f"broker {i} length")
        try:
            brokers.append(r.take(size, f"broker {i}").decode("utf-8"))
        except UnicodeDecodeError:
            raise AddressError(f"broker hint {i} is not UTF-8") from None
    if r.pos != len(r.data):
        raise AddressError(f"{len(r.data) - r.pos} trailing bytes after the address")
    return Address(key, tcp_port, udp_port, tuple(interfaces), tuple(brokers))


def decode_text(text: str) -> Address:
    """Decode the text form; a typo, truncation or wrong prefix raises ``AddressError``."""
    if not isinstance(text, str):
        raise AddressError(f"address text expected, got {type(text).__name__}")
    t = text.strip().lower()
    if not t.startswith(TEXT_PREFIX):
        raise AddressError(f"address text must start with {TEXT_PREFIX!r}")
    body = t[len(TEXT_PREFIX) :]
    if len(body) > 2000:
        raise AddressError(f"address text of {len(text)} characters is too long")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise AddressError("address text is not valid base32") from None
    if len(raw) <= CHECKSUM_SIZE:
        raise AddressError("address text is too short")
    payload, check = raw[:-CHECKSUM_SIZE], raw[-CHECKSUM_SIZE:]
    if hashlib.sha256(payload).digest()[:CHECKSUM_SIZE] != check:
        raise AddressError("address checksum mismatch (typo or truncated copy)")
    return decode(payload)


def parse(value: Address | bytes | str) -> Address:
    """Accept an ``Address``, its bytes or its text."""
    if isinstance(value, Address):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return decode(bytes(value))
    if isinstance(value, str):
        return decode_text(value)
    raise AddressError(f"cannot read an address from {type(value).__name__}")
