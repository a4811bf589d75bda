"""Typed, versioned signal messages between plugins (frozen dataclasses, as h11 does events).

A plugin sends and answers these, never raw dicts. On the wire each is the ``body`` of a signal
request (``{"kind", "rid", "body"}`` inside a sealed envelope): ``{"v": 1, ...fields}``. Decoding
is strict: an unknown kind or version, a missing or extra field, a wrong type, a port outside
1..65535, a non-literal IP, or too many candidates raise ``MessageError`` naming the reason, and
the handler never runs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, TypeVar

from warpgate.errors import RemoteProtocolError

VERSION = 1
MAX_CANDIDATES = 16
CONN_ID_SIZE = 16
MAX_INT = 2**31 - 1
MAX_PAD = 12 * 1024
"""Characters of padding an offer may carry (a sealed envelope stays under 16 KiB)."""

M = TypeVar("M", bound="Message")


class MessageError(RemoteProtocolError):
    """A signal message that does not decode; ``reason`` is a short name for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Candidate:
    """A transport address to try (RFC 8445 §5.1.1 calls these candidates)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise MessageError("bad_port", f"port {self.port!r} outside 1..65535")
        try:
            ipaddress.ip_address(self.host)
        except (ValueError, TypeError):
            raise MessageError("bad_host", f"{str(self.host)[:64]!r} is not an IP address") from None

    @property
    def hostport(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_REGISTRY: dict[str, type[Message]] = {}


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every signal message. Subclasses set ``kind`` and declare their fields."""

    kind: ClassVar[str] = ""

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"v": VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                value = value.hex()
            elif isinstance(value, tuple):
                value = [[c.host, c.port] for c in value]
            body[f.name] = value
        return body

    @classmethod
    def from_body(cls: type[M], body: Any) -> M:
        if not isinstance(body, dict):
            raise MessageError("malformed", f"{cls.kind} body is not an object")
        if body.get("v") != VERSION:
            raise MessageError("bad_version", f"{cls.kind} version {body.get('v')!r} not supported")
        names = {f.name for f in fields(cls)}
        extra = set(body) - names - {"v"}
        if extra:
            raise MessageError("malformed", f"{cls.kind} has unknown fields {sorted(extra)[:4]}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in body and f.default is not MISSING:
                continue  # an optional field (padding): its default
            if f.name not in body:
                raise MessageError("malformed", f"{cls.kind} lacks {f.name!r}")
            values[f.name] = _field(cls.kind, f.name, str(f.type), body[f.name])
        return cls(**values)


def _field(kind: str, name: str, type_: str, raw: Any) -> Any:
    if type_ == "bytes":
        if not isinstance(raw, str) or len(raw) != 2 * CONN_ID_SIZE:
            raise MessageError("malformed", f"{kind}.{name} is not {CONN_ID_SIZE} hex bytes")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise MessageError("malformed", f"{kind}.{name} is not hex") from None
    if type_ == "tuple[Candidate, ...]":
        if not isinstance(raw, list):
            raise MessageError("malformed", f"{kind}.{name} is not a list")
        if len(raw) > MAX_CANDIDATES:
            raise MessageError("too_many_candidates", f"{len(raw)} candidates, at most {MAX_CANDIDATES}")
        out = []
        for item in raw:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise MessageError("malformed", f"{kind}.{name} holds a malformed candidate")
            out.append(Candidate(item[0], item[1]))
        return tuple(out)
    if type_ == "str":
        if not isinstance(raw, str) or len(raw) > MAX_PAD:
            raise MessageError("malformed", f"{kind}.{name} is not a string of at most {MAX_PAD}")
        return raw
    if type_ == "int":
        if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_INT:
            raise MessageError("bad_int", f"{kind}.{name} is not an integer in 0..{MAX_INT}")
        return raw
    raise MessageError("malformed", f"{kind}.{name}: no decoder for {type_}")  # pragma: no cover


def message(cls: type[M]) -> type[M]:
    """Class decorator: register a message kind (names are unique)."""
    if not cls.kind or cls.kind in _REGISTRY:
        raise ValueError(f"message kind {cls.kind!r} is empty or taken")
    _REGISTRY[cls.kind] = cls
    return cls


def decode(kind: str, body: Any) -> Message:
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise MessageError("unknown_kind", f"no message kind {kind[:40]!r}")
    return cls.from_body(body)


# -- the built-in plugins' messages ----------------------------------------------------------------


@message
@dataclass(frozen=True, slots=True)
class ReverseConnect(Message):
    """Caller -> callee: dial me back; the handshake carries ``conn_id``."""

    kind: ClassVar[str] = "reverse.connect"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class ReverseCancel(Message):
    """Caller -> callee: the race is decided, stop dialling back for ``conn_id``."""

    kind: ClassVar[str] = "reverse.cancel"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class PunchOffer(Message):
    """Caller -> callee: punch towards these candidates of mine (UDP, from my node socket)."""

    kind: ClassVar[str] = "udp_punch.offer"
    conn_id: bytes
    public: tuple[Candidate, ...]
    """My mapping(s) as the internet sees them, predicted ports included."""
    private: tuple[Candidate, ...]
    """My socket's own address: worth a try only from behind the same NAT."""
    pad: str = ""
    """Padding, as QUIC pads its first packet: the callee may send an unproven address 3 times
    the offer's bytes (``warpgate.proto.reflection``), so the caller pays a third of the punch
    it asks for."""


@message
@dataclass(frozen=True, slots=True)
class PunchAnswer(Message):
    """Callee -> caller (the offer's acknowledgement): my candidates; I am already punching."""

    kind: ClassVar[str] = "udp_punch.answer"
    conn_id: bytes
    public: tuple[Candidate, ...]
    private: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class PunchCancel(Message):
    """Caller -> callee: stop punching for ``conn_id``."""

    kind: ClassVar[str] = "udp_punch.cancel"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class RelayOffer(Message):
    """Caller -> callee: my relayed address (a TURN allocation); relay yours and dial mine."""

    kind: ClassVar[str] = "turn.offer"
    conn_id: bytes
    relayed: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class RelayAnswer(Message):
    """Callee -> caller (the offer's acknowledgement): my relayed address; I am dialling yours."""

    kind: ClassVar[str] = "turn.answer"
    conn_id: bytes
    relayed: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class RelayCancel(Message):
    """Caller -> callee: the race is decided; release the allocation made for ``conn_id``."""

    kind: ClassVar[str] = "turn.cancel"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class MapRequest(Message):
    """Caller -> callee: ask your gateway for an inbound mapping of your port (PCP, NAT-PMP, UPnP
    IGD) and tell me where it is; I will dial it with ``conn_id``."""

    kind: ClassVar[str] = "portmap.request"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class MapAnswer(Message):
    """Callee -> caller: the mapping my gateway granted, per transport (at most one each)."""

    kind: ClassVar[str] = "portmap.answer"
    conn_id: bytes
    udp: tuple[Candidate, ...]
    tcp: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class TcpPunchOffer(Message):
    """Caller -> callee: connect to these TCP candidates of mine, from your node's TCP port."""

    kind: ClassVar[str] = "tcp_punch.offer"
    conn_id: bytes
    public: tuple[Candidate, ...]
    """My TCP mapping as the internet sees it, predicted ports included."""
    private: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class TcpPunchAnswer(Message):
    """Callee -> caller (the offer's acknowledgement): my candidates; I am already connecting."""

    kind: ClassVar[str] = "tcp_punch.answer"
    conn_id: bytes
    public: tuple[Candidate, ...]
    private: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class TcpPunchCancel(Message):
    """Caller -> callee: stop connecting for ``conn_id``."""

    kind: ClassVar[str] = "tcp_punch.cancel"
    conn_id: bytes


@message
@dataclass(frozen=True, slots=True)
class ProbeOffer(Message):
    """Caller -> callee: random probing between a cone and a random-port NAT. ``public``: my UDP
    mapping; ``sockets``, ``budget``, ``rate``, ``low``..``high``: the run's options (the side with
    the random-port NAT opens ``sockets``, the cone side sends ``budget`` probes at ``rate`` per
    second to ports ``low``..``high`` of the other's address)."""

    kind: ClassVar[str] = "random_probe.offer"
    conn_id: bytes
    public: tuple[Candidate, ...]
    sockets: int
    budget: int
    rate: int
    low: int
    high: int


@message
@dataclass(frozen=True, slots=True)
class ProbeAnswer(Message):
    """Callee -> caller: my UDP mapping; I have started my part."""

    kind: ClassVar[str] = "random_probe.answer"
    conn_id: bytes
    public: tuple[Candidate, ...]


@message
@dataclass(frozen=True, slots=True)
class ProbeCancel(Message):
    """Caller -> callee: stop probing (or close the sockets) for ``conn_id``."""

    kind: ClassVar[str] = "random_probe.cancel"
    conn_id: bytes
