"""NAT behaviour as RFC 4787 axes, not one integer.

RFC 4787 §4.1 (mapping), §5 (filtering), §4.2.1 (port assignment), §6 (hairpinning). The classic
RFC 3489 names are presets of these axes; ``NatBehaviour.name`` gives the closest one back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mapping(enum.IntEnum):
    """How the NAT reuses a mapping for new destinations (RFC 4787 §4.1)."""

    UNKNOWN = 0
    NONE = 1  #: no translation at all (open internet, or a firewall without NAT)
    ENDPOINT_INDEPENDENT = 2
    ADDRESS_DEPENDENT = 3
    ADDRESS_PORT_DEPENDENT = 4


class Filtering(enum.IntEnum):
    """Which inbound packets a mapping lets in (RFC 4787 §5)."""

    UNKNOWN = 0
    ENDPOINT_INDEPENDENT = 1
    ADDRESS_DEPENDENT = 2
    ADDRESS_PORT_DEPENDENT = 3
    BLOCKED = 4  #: the protocol does not pass at all (e.g. UDP blocked)


class PortAllocation(enum.IntEnum):
    """How the external port is chosen (RFC 4787 §4.2.1)."""

    UNKNOWN = 0
    PRESERVING = 1  #: external port = internal port when free
    SEQUENTIAL = 2  #: each new mapping gets the previous port + ``delta``
    RANDOM = 3


@dataclass(frozen=True, slots=True)
class NatBehaviour:
    """One NAT's measured or declared behaviour; every axis may be ``UNKNOWN``."""

    mapping: Mapping = Mapping.UNKNOWN
    filtering: Filtering = Filtering.UNKNOWN
    allocation: PortAllocation = PortAllocation.UNKNOWN
    delta: int = 0
    """Port step between consecutive mappings when ``allocation`` is SEQUENTIAL (RFC 4787 §4.2.1)."""
    hairpin: bool | None = None
    """Whether the NAT loops back traffic between two internal hosts (RFC 4787 §6); None if unknown."""

    def __post_init__(self) -> None:
        if not -32768 <= self.delta <= 32767:
            raise ValueError(f"port delta {self.delta} outside -32768..32767")

    @property
    def known(self) -> bool:
        return self.mapping is not Mapping.UNKNOWN and self.filtering is not Filtering.UNKNOWN

    @property
    def endpoint_independent_mapping(self) -> bool:
        return self.mapping in (Mapping.NONE, Mapping.ENDPOINT_INDEPENDENT)

    @property
    def reachable_unsolicited(self) -> bool:
        """True when anyone may open a connection to our advertised endpoint (EIM + EIF)."""
        return self.endpoint_independent_mapping and self.filtering is Filtering.ENDPOINT_INDEPENDENT

    @property
    def name(self) -> str:
        """The closest classic name, or a description of the axes."""
        for name, preset in PRESETS.items():
            if (preset.mapping, preset.filtering, preset.allocation) == (
                self.mapping,
                self.filtering,
                self.allocation,
            ):
                return name
        return f"{self.mapping.name.lower()}/{self.filtering.name.lower()}/{self.allocation.name.lower()}"


def as_dict(b: NatBehaviour) -> dict[str, object]:
    """The axes as lowercase names (JSON for ``warpgate nat --json`` and the lab's verifier)."""
    return {
        "mapping": b.mapping.name.lower(),
        "filtering": b.filtering.name.lower(),
        "allocation": b.allocation.name.lower(),
        "delta": b.delta,
        "name": b.name,
    }


_SHORT_MAPPING = {
    Mapping.UNKNOWN: "?",
    Mapping.NONE: "no-NAT",
    Mapping.ENDPOINT_INDEPENDENT: "EIM",
    Mapping.ADDRESS_DEPENDENT: "ADM",
    Mapping.ADDRESS_PORT_DEPENDENT: "APDM",
}
_SHORT_FILTERING = {
    Filtering.UNKNOWN: "?",
    Filtering.ENDPOINT_INDEPENDENT: "EIF",
    Filtering.ADDRESS_DEPENDENT: "ADF",
    Filtering.ADDRESS_PORT_DEPENDENT: "APDF",
}


def shorthand(b: NatBehaviour, *, allocation: bool = True) -> str:
    """RFC 4787 shorthand: ``EIM APDF preserving``, ``APDM APDF sequential+1``; ``blocked``."""
    if b.filtering is Filtering.BLOCKED:
        return "blocked"
    text = f"{_SHORT_MAPPING[b.mapping]} {_SHORT_FILTERING[b.filtering]}"
    if not allocation:
        return text
    alloc = b.allocation.name.lower()
    if b.allocation is PortAllocation.SEQUENTIAL:
        alloc += f"{b.delta:+d}"
    return f"{text} {alloc}"


_EI, _AD, _APD = Mapping.ENDPOINT_INDEPENDENT, Mapping.ADDRESS_DEPENDENT, Mapping.ADDRESS_PORT_DEPENDENT

#: The profile names used by the lab, scenarios and reports, as RFC 4787 tuples.
PRESETS: dict[str, NatBehaviour] = {
    "open": NatBehaviour(Mapping.NONE, Filtering.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVING),
    "firewall": NatBehaviour(Mapping.NONE, Filtering.ADDRESS_PORT_DEPENDENT, PortAllocation.PRESERVING),
    "full-cone": NatBehaviour(_EI, Filtering.ENDPOINT_INDEPENDENT, PortAllocation.PRESERVING),
    "restricted-cone": NatBehaviour(_EI, Filtering.ADDRESS_DEPENDENT, PortAllocation.PRESERVING),
    "port-restricted-cone": NatBehaviour(_EI, Filtering.ADDRESS_PORT_DEPENDENT, PortAllocation.PRESERVING),
    "symmetric": NatBehaviour(_APD, Filtering.ADDRESS_PORT_DEPENDENT, PortAllocation.RANDOM),
    "symmetric-sequential": NatBehaviour(
        _APD, Filtering.ADDRESS_PORT_DEPENDENT, PortAllocation.SEQUENTIAL, delta=1
    ),
    "udp-blocked": NatBehaviour(_EI, Filtering.BLOCKED, PortAllocation.PRESERVING),
}

UNKNOWN = NatBehaviour()

FIREWALLS6: dict[str, NatBehaviour] = {
    "open6": PRESETS["open"],
    "firewall6": PRESETS["firewall"],
    "firewall6-eif": PRESETS["open"],
    "blocked6": NatBehaviour(Mapping.NONE, Filtering.BLOCKED, PortAllocation.PRESERVING),
}
"""The lab's IPv6 behaviours as RFC 4787 axes (no translation, RFC 6092 filtering). A node sends
from its listening port at start (STUN), so an endpoint-independent firewall lets anyone reach it,
as an open one does."""


@dataclass(frozen=True, slots=True)
class Behaviours:
    """A site's NAT per transport: what plugin reach rules (``Plugin.reach``) are written over."""

    udp: NatBehaviour = UNKNOWN
    tcp: NatBehaviour = UNKNOWN
    mapped: bool = False
    """The side's address carries an inbound mapping its gateway granted (PCP, NAT-PMP, UPnP
    IGD; ``warpgate.portmap``): open to anyone, whatever the axes say."""
    maps: bool = False
    """The side's gateway grants mappings when asked (the ``portmap`` plugin asks on demand)."""
    ipv6: Behaviours | None = None
    """The side's IPv6 path as the same rules see it: a firewall is a NAT that does not translate
    (mapping ``NONE``; ``mapped``: a pinhole its gateway granted). None: no working IPv6."""


def pack(nat: NatBehaviour) -> bytes:
    """Four bytes: mapping(3 bits) | filtering(3) | hairpin(2); allocation; delta (int16, BE)."""
    hairpin = 0 if nat.hairpin is None else (1 if nat.hairpin else 2)
    head = int(nat.mapping) | (int(nat.filtering) << 3) | (hairpin << 6)
    return bytes((head, int(nat.allocation))) + nat.delta.to_bytes(2, "big", signed=True)


def unpack(data: bytes) -> NatBehaviour:
    """Inverse of :func:`pack`; raises ``ValueError`` naming the bad field."""
    if len(data) != 4:
        raise ValueError(f"NAT behaviour takes 4 bytes, got {len(data)}")
    head, alloc = data[0], data[1]
    try:
        mapping = Mapping(head & 0b111)
        filtering = Filtering((head >> 3) & 0b111)
        allocation = PortAllocation(alloc)
    except ValueError as exc:
        raise ValueError(f"NAT behaviour has an unknown value: {exc}") from None
    hairpin_bits = head >> 6
    if hairpin_bits == 3:
        raise ValueError("NAT behaviour has an unknown hairpin value 3")
    hairpin = None if hairpin_bits == 0 else hairpin_bits == 1
    return NatBehaviour(mapping, filtering, allocation, int.from_bytes(data[2:], "big", signed=True), hairpin)


_SITE_MAPPING = {Mapping.NONE: "none", _EI: "EIM", _AD: "ADM", _APD: "APDM"}
_SITE_FILTERING = {
    Filtering.ENDPOINT_INDEPENDENT: "EIF",
    Filtering.ADDRESS_DEPENDENT: "ADF",
    Filtering.ADDRESS_PORT_DEPENDENT: "APDF",
    Filtering.BLOCKED: "blocked",
}


def site_toml(udp: NatBehaviour, tcp: NatBehaviour, name: str = "measured", note: str = "") -> str:
    """A measured NAT as a lab site (``[sites.NAME]`` of a netsim scenario), to replay it there.

    RFC 5780 cannot observe TCP filtering, nor TCP allocation beyond "the port was kept": those
    are taken from UDP (the file says so). Raises ``ValueError`` naming an axis that is unknown."""
    blocked = udp.filtering is Filtering.BLOCKED
    if tcp.mapping is Mapping.UNKNOWN:
        raise ValueError("cannot export: the TCP mapping is unknown")
    if not blocked:
        for axis in (udp.mapping, udp.filtering, udp.allocation):
            if axis.name == "UNKNOWN":
                raise ValueError(
                    f"cannot export: the UDP {type(axis).__name__.lower()} is unknown "
                    "(a STUN server with two addresses decides it)"
                )
    if tcp.allocation is PortAllocation.PRESERVING or tcp.mapping is Mapping.NONE:
        tcp_alloc = (PortAllocation.PRESERVING, 0)
    elif blocked or udp.allocation is PortAllocation.PRESERVING:
        tcp_alloc = (PortAllocation.RANDOM, 0)  # the port was not kept; nothing tells more
    else:
        tcp_alloc = (udp.allocation, udp.delta)
    tcp_filtering = Filtering.ADDRESS_PORT_DEPENDENT if blocked else udp.filtering
    tcp = NatBehaviour(tcp.mapping, tcp_filtering, *tcp_alloc)
    if blocked:  # nothing passes: the rest of UDP's axes are TCP's
        udp = NatBehaviour(tcp.mapping, Filtering.BLOCKED, *tcp_alloc)
    u, t = _site_axes(udp), _site_axes(tcp)
    diff = {k: v for k, v in t.items() if u.get(k) != v}
    if t["allocation"] != "sequential":
        diff.pop("delta", None)
    profile: dict[str, object] = {**u, **({"tcp": diff} if diff else {})}
    lines = [f"# {line}" for line in note.splitlines()]
    lines += [
        "# TCP filtering is not observable with RFC 5780: taken to be UDP's.",
        f"[sites.{name}]",
        f"profile = {_toml(profile)}",
    ]
    return "\n".join(lines) + "\n"


def _site_axes(b: NatBehaviour) -> dict[str, object]:
    out: dict[str, object] = {
        "mapping": _SITE_MAPPING[b.mapping],
        "filtering": _SITE_FILTERING[b.filtering],
        "allocation": b.allocation.name.lower(),
    }
    if b.allocation is PortAllocation.SEQUENTIAL:
        out["delta"] = b.delta
    return out


def _toml(value: object) -> str:
    """An inline TOML value: tables, strings and integers are all a site needs."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
