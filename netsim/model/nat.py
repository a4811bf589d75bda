"""NAT routers built from RFC 4787 axes: each axis value is one nftables rule fragment.

A router is a ``Profile``: one ``NatBehaviour`` (mapping, filtering, port allocation) per transport.
``ruleset()`` composes its nftables ruleset from one fragment per axis value, per transport (the
way pion's vnet composes its NAT), following what was measured on this kernel
(``docs/nat-behaviour.md``):

- **Mapping** (RFC 4787 §4.1). EIM and ADM remember each mapping in a dynamic map keyed by the
  internal endpoint (ADM: and the remote address), learned after NAT from conntrack's original
  tuple, and reuse it for every new flow that matches the key; APDM reuses nothing, so every new
  flow gets a fresh allocation. (Plain Linux NAT is only EIM while no two LAN hosts share a port;
  the map makes it EIM always.)
- **Allocation** (§4.2.1), for a fresh mapping: preserving is plain ``snat`` (the kernel keeps the
  source port when the tuple is unique; under ADM/APDM an endpoint that already has a mapping
  gets a random port instead, or "preserving" would look like EIM); sequential takes ports from an
  ``numgen inc`` counter through a map (base, base + delta, ...; a plain ``numgen`` expression has
  a byte-order trap); random is ``snat ... random`` over the pool (``port_range``, else 1024-65535).
- **Filtering** (§5). APDF is conntrack alone; EIF DNATs new inbound flows through a map learned on
  egress (public port -> internal endpoint); ADF does too, but only from addresses in a permission
  set learned on egress. Without translation (``open``, ``firewall``) the same axis is a stateful
  forward filter. ``BLOCKED`` drops the transport both ways.
- Every router drops unsolicited traffic to itself: with INPUT open, an early inbound punch packet
  creates a conntrack entry that collides with the later outbound mapping (measured).
- Hairpinning (§6) is off unless asked for; on, a LAN-side DNAT from a learned map plus ``snat to
  PUB`` gives the sender's own public mapping as source (REQ-9).

The 8 classic names are presets (``PROFILES``); any other tuple is a ``Profile`` too, with a name
in RFC 4787 shorthand. ``ruleset()`` is pure: it returns the text for ``nft -f -``; ``sysctls()``
the mapping-lifetime settings. Both run inside the router's own network namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from netsim.errors import ScenarioError
from warpgate.proto.nat import PRESETS, Filtering, Mapping, NatBehaviour, PortAllocation, shorthand

SEQ_BASE = 40000
SEQ_SIZE = 1000
MAX_SEQ_PORTS = 16384
"""A sequential allocator's counter is an nft map with one element per port: bounded."""
EPHEMERAL = (1024, 65535)
TRANSPORTS = ("udp", "tcp")


@dataclass(frozen=True)
class Profile:
    """A router's NAT behaviour per transport, declared (and checked by self-validation)."""

    name: str
    udp: NatBehaviour
    tcp: NatBehaviour
    summary: str = ""

    def __post_init__(self) -> None:
        for proto, b in (("udp", self.udp), ("tcp", self.tcp)):
            where = f"NAT {self.name!r} ({proto})"
            if Mapping.UNKNOWN in (b.mapping,) or b.filtering is Filtering.UNKNOWN:
                raise ScenarioError(f"{where}: mapping and filtering must be declared, not unknown")
            if b.allocation is PortAllocation.UNKNOWN:
                raise ScenarioError(f"{where}: allocation must be declared, not unknown")
            if (b.allocation is PortAllocation.SEQUENTIAL) != (b.delta != 0):
                raise ScenarioError(f"{where}: a delta (non-zero) goes with sequential allocation only")
            if b.mapping is Mapping.NONE and b.allocation is not PortAllocation.PRESERVING:
                raise ScenarioError(f"{where}: without translation ports are kept (allocation preserving)")
        if (self.udp.mapping is Mapping.NONE) != (self.tcp.mapping is Mapping.NONE):
            raise ScenarioError(
                f"NAT {self.name!r}: translate both transports or neither (a LAN is private or public)"
            )

    @property
    def translates(self) -> bool:
        """False for ``open`` and ``firewall``: the LAN holds public addresses."""
        return self.udp.mapping is not Mapping.NONE

    def behaviour(self, proto: str) -> NatBehaviour:
        return self.udp if proto == "udp" else self.tcp

    def transports(self) -> Iterator[tuple[str, NatBehaviour]]:
        yield "udp", self.udp
        yield "tcp", self.tcp

    @classmethod
    def axes(cls, udp: NatBehaviour, tcp: NatBehaviour | None = None, name: str | None = None) -> Profile:
        """A router from a tuple; named in RFC 4787 shorthand unless given a name."""
        tcp = udp if tcp is None else tcp
        if name is None:
            name = describe(udp, tcp)
        return cls(name, udp, tcp, "declared as RFC 4787 axes")


def describe(udp: NatBehaviour, tcp: NatBehaviour) -> str:
    """``EIM APDF random`` (both transports alike), else ``udp: ...; tcp: ...``."""
    u, t = shorthand(udp), shorthand(tcp)
    return u if u == t else f"udp: {u}; tcp: {t}"


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("open", PRESETS["open"], PRESETS["open"], "routed public addresses, no rules"),
        Profile("firewall", PRESETS["firewall"], PRESETS["firewall"], "stateful firewall, no NAT"),
        Profile("full-cone", PRESETS["full-cone"], PRESETS["full-cone"], "EIM + EIF"),
        Profile(
            "restricted-cone",
            PRESETS["restricted-cone"],
            PRESETS["restricted-cone"],
            "EIM + address-dependent filtering",
        ),
        Profile(
            "port-restricted-cone",
            PRESETS["port-restricted-cone"],
            PRESETS["port-restricted-cone"],
            "EIM + APDF (Linux NAT)",
        ),
        Profile("symmetric", PRESETS["symmetric"], PRESETS["symmetric"], "APDM, random ports"),
        Profile(
            "symmetric-sequential",
            PRESETS["symmetric-sequential"],
            PRESETS["symmetric-sequential"],
            "APDM, ports from a counter (+1 per mapping)",
        ),
        Profile(
            "udp-blocked",
            PRESETS["udp-blocked"],
            PRESETS["port-restricted-cone"],
            "port-restricted cone that drops all UDP",
        ),
    )
}


def profile(spec: str | Profile) -> Profile:
    """A preset by name, or the profile itself."""
    if isinstance(spec, Profile):
        return spec
    try:
        return PROFILES[spec]
    except KeyError:
        raise ScenarioError(f"unknown profile {spec!r}; known: {', '.join(PROFILES)}") from None


def expected(
    spec: str | Profile, port_range: tuple[int, int] | None = None
) -> tuple[NatBehaviour, NatBehaviour]:
    """What classification must measure (UDP, TCP) for a router given its knobs."""
    p = profile(spec)

    def with_range(b: NatBehaviour) -> NatBehaviour:
        # SNAT into a range picks a random port in it: EIM stays, preservation goes (docs/nat-behaviour.md)
        if port_range is not None and p.translates and b.allocation is PortAllocation.PRESERVING:
            return replace(b, allocation=PortAllocation.RANDOM)
        return b

    return with_range(p.udp), with_range(p.tcp)


def compose(inner: NatBehaviour, outer: NatBehaviour) -> NatBehaviour:
    """What the internet sees of a NAT behind another (a carrier-grade NAT in front, RFC 6888).

    Mapping and filtering: the stricter of the two (a mapping is only as independent as both
    layers keep it; a packet must pass both filters). Allocation: the outer NAT chooses the public
    port, unless it preserves the inner one's."""
    if Filtering.BLOCKED in (inner.filtering, outer.filtering):
        return NatBehaviour(max(inner.mapping, outer.mapping), Filtering.BLOCKED, PortAllocation.PRESERVING)
    if inner.mapping is Mapping.NONE:
        return outer
    if outer.mapping is Mapping.NONE:
        return inner
    alloc, delta = (
        (inner.allocation, inner.delta)
        if outer.allocation is PortAllocation.PRESERVING
        else (outer.allocation, outer.delta)
    )
    return NatBehaviour(
        max(inner.mapping, outer.mapping), max(inner.filtering, outer.filtering), alloc, delta
    )


def behind(inner: Profile, outer: Profile) -> Profile:
    """The profile a site behind a carrier shows to the internet."""
    if not inner.translates or not outer.translates:
        raise ScenarioError("a site behind a carrier and its carrier must both NAT")
    return Profile(
        f"{inner.name} behind {outer.name}",
        compose(inner.udp, outer.udp),
        compose(inner.tcp, outer.tcp),
        "double NAT",
    )


_AXIS_NAMES: dict[str, dict[str, object]] = {
    "mapping": {
        "none": Mapping.NONE,
        "eim": Mapping.ENDPOINT_INDEPENDENT,
        "adm": Mapping.ADDRESS_DEPENDENT,
        "apdm": Mapping.ADDRESS_PORT_DEPENDENT,
    },
    "filtering": {
        "eif": Filtering.ENDPOINT_INDEPENDENT,
        "adf": Filtering.ADDRESS_DEPENDENT,
        "apdf": Filtering.ADDRESS_PORT_DEPENDENT,
        "blocked": Filtering.BLOCKED,
    },
    "allocation": {
        "preserving": PortAllocation.PRESERVING,
        "sequential": PortAllocation.SEQUENTIAL,
        "random": PortAllocation.RANDOM,
    },
}
for _axis in _AXIS_NAMES.values():  # the enum's own names are accepted too (endpoint_independent, ...)
    _axis.update({v.name.lower(): v for v in list(_axis.values())})  # type: ignore[attr-defined]
AXES = ("mapping", "filtering", "allocation", "delta")
"""Keys of an inline tuple; ``udp`` and ``tcp`` sub-tables override them per transport."""


def from_table(table: dict[str, object], name: str | None = None) -> Profile:
    """A router from a scenario's inline tuple, e.g. ``{ mapping = "ADM", filtering = "APDF",
    allocation = "sequential", delta = 2 }`` (``delta`` defaults to 1 for sequential), with
    optional ``udp = { ... }`` / ``tcp = { ... }`` overriding axes per transport. Raises
    ``ScenarioError`` naming the key."""

    def axes(t: dict[str, object], where: str, base: dict[str, object]) -> NatBehaviour:
        merged = {**base, **{k: v for k, v in t.items() if k in AXES}}
        values: dict[str, object] = {}
        for axis in ("mapping", "filtering", "allocation"):
            raw = merged.get(axis)
            if raw is None:
                raise ScenarioError(f"{where}{axis}: is required")
            choice = _AXIS_NAMES[axis].get(str(raw).lower()) if isinstance(raw, str) else None
            if choice is None:
                known = ", ".join(k for k in _AXIS_NAMES[axis] if "_" not in k)
                raise ScenarioError(f"{where}{axis}: {raw!r} is not one of {known}")
            values[axis] = choice
        delta = merged.get("delta", 1 if values["allocation"] is PortAllocation.SEQUENTIAL else 0)
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ScenarioError(f"{where}delta: must be an integer, got {delta!r}")
        if values["mapping"] is Mapping.NONE and "allocation" not in merged:
            values["allocation"] = PortAllocation.PRESERVING
        try:
            return NatBehaviour(
                values["mapping"],  # type: ignore[arg-type]
                values["filtering"],  # type: ignore[arg-type]
                values["allocation"],  # type: ignore[arg-type]
                delta,
            )
        except ValueError as exc:
            raise ScenarioError(f"{where}delta: {exc}") from None

    for key, value in table.items():
        if key not in (*AXES, "udp", "tcp", "name"):
            raise ScenarioError(f"{key}: unknown key (allowed: {', '.join((*AXES, 'udp', 'tcp', 'name'))})")
        if key in ("udp", "tcp"):
            if not isinstance(value, dict):
                raise ScenarioError(f"{key}: must be a table of axes")
            for sub in value:
                if sub not in AXES:
                    raise ScenarioError(f"{key}.{sub}: unknown key (allowed: {', '.join(AXES)})")
    base = {k: v for k, v in table.items() if k in AXES}
    if "mapping" in base and str(base["mapping"]).lower() == "none" and "allocation" not in base:
        base["allocation"] = "preserving"
    per = {
        proto: axes(table.get(proto, {}), f"{proto}." if proto in table else "", base)  # type: ignore[arg-type]
        for proto in TRANSPORTS
    }
    label = table.get("name", name)
    if label is not None and not isinstance(label, str):
        raise ScenarioError(f"name: must be a string, got {label!r}")
    return Profile.axes(per["udp"], per["tcp"], label)


def as_table(p: Profile) -> dict[str, object]:
    """The inverse of :func:`from_table` (what ``warpgate nat --export`` writes)."""

    def one(b: NatBehaviour) -> dict[str, object]:
        out: dict[str, object] = {
            "mapping": _short_name("mapping", b.mapping),
            "filtering": _short_name("filtering", b.filtering),
            "allocation": _short_name("allocation", b.allocation),
        }
        if b.allocation is PortAllocation.SEQUENTIAL:
            out["delta"] = b.delta
        return out

    udp, tcp = one(p.udp), one(p.tcp)
    if udp == tcp:
        return udp
    return udp | {"tcp": {k: v for k, v in tcp.items() if udp.get(k) != v}}


def _short_name(axis: str, value: object) -> str:
    names = [k for k, v in _AXIS_NAMES[axis].items() if v == value and "_" not in k]
    return names[0].upper() if axis != "allocation" and names[0] not in ("none", "blocked") else names[0]


@dataclass(frozen=True)
class RouterConfig:
    """Everything the ruleset depends on, as values (no Mininet objects)."""

    profile: str | Profile
    wan: str
    lan: str
    pub: str
    hairpin: bool = False
    mapping_lifetime: int | None = None
    port_range: tuple[int, int] | None = None
    allow_stun_from: tuple[str, ...] = ()
    """Addresses whose STUN answers may reach the router itself (miniupnpd's ext_perform_stun)."""
    upnp: bool = False
    """miniupnpd runs here: its chains are part of the ruleset."""
    natpmp: bool = True
    pcp: bool = True
    """miniupnpd answers both on port 5351 when either is on; the one that is off is dropped by
    its version byte (0: NAT-PMP, RFC 6886 §3; 2: PCP, RFC 6887 §7)."""
    ipv6: str | None = None
    """The site's IPv6 behaviour (``netsim.model.topology.IPV6``); None: no IPv6."""
    lan6: str = ""
    """The LAN's IPv6 prefix (routed, not translated)."""


def ruleset(cfg: RouterConfig) -> str:
    """The complete nftables ruleset for one router (after ``flush ruleset``)."""
    p = profile(cfg.profile)
    timeout = f"{cfg.mapping_lifetime}s" if cfg.mapping_lifetime else "120s"
    parts = [_filter(cfg, p)]
    if p.translates:
        parts.append(_nat(cfg, p, timeout))
        if cfg.hairpin:
            parts.append(_hairpin(cfg, timeout))
    if cfg.upnp:
        parts.append(_miniupnpd_skeleton(cfg))
    elif cfg.ipv6:
        parts.append(
            _table(
                "inet wgfw6",
                {"forward": ("type filter hook forward priority filter; policy accept;", firewall6(cfg))},
                _sets6(cfg),
            )
        )
    return "flush ruleset\n" + "\n".join(parts)


def firewall6(cfg: RouterConfig) -> list[str]:
    """The IPv6 forward filter (RFC 6092): no translation, only which flows may come in.

    With miniupnpd these rules follow its chain in one base chain, so a pinhole it opens (PCP,
    UPnP IGD v2 ``AddPinhole``) accepts before the filter drops; every rule names IPv6, as that
    chain sees IPv4 too."""
    v6, lan, wan = "meta nfproto ipv6", cfg.lan, cfg.wan
    if cfg.ipv6 == "blocked6":
        return [f"{v6} drop"]
    if cfg.ipv6 not in ("firewall6", "firewall6-eif"):
        return []
    rules = []
    if cfg.ipv6 == "firewall6-eif":
        # an address and port that sends out is open to everyone (REC-6's option), while it does
        rules.append(
            f'{v6} iifname "{lan}" meta l4proto {{ tcp, udp }} '
            "update @eif6 { ip6 saddr . meta l4proto . th sport }"
        )
    rules.append(f"{v6} ct state established,related accept")
    if cfg.ipv6 == "firewall6-eif":
        rules.append(
            f'{v6} iifname "{wan}" meta l4proto {{ tcp, udp }} '
            "ip6 daddr . meta l4proto . th dport @eif6 accept"
        )
    rules += [f'{v6} iifname "{lan}" accept', f'{v6} iifname "{wan}" drop']
    return rules


def _sets6(cfg: RouterConfig) -> list[str]:
    if cfg.ipv6 != "firewall6-eif":
        return []
    timeout = f"{cfg.mapping_lifetime}s" if cfg.mapping_lifetime else "120s"
    elements = "type ipv6_addr . inet_proto . inet_service"
    return [f"set eif6 {{ {elements}; flags dynamic,timeout; timeout {timeout}; }}"]


def forget(cfg: RouterConfig) -> str:
    """``nft -f -`` text that empties the router's learned state (mappings, permissions): with
    ``conntrack -F`` a trial starts from a router that remembers nothing, as a real NAT whose
    mappings expired. (A stale ``used`` entry would make a preserving APDM NAT look random.)"""
    out, table = [], ""
    for line in ruleset(cfg).splitlines():
        words = line.split()
        if line.startswith("table "):
            table = " ".join(words[1:3])
        elif len(words) > 2 and words[0] in ("map", "set") and "dynamic" in line:
            out.append(f"flush {words[0]} {table} {words[1]}")
    return "\n".join(out) + "\n" if out else ""


def sysctls(cfg: RouterConfig) -> list[str]:
    """``key=value`` settings for the router namespace (conntrack timeouts are per namespace)."""
    out = [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        # every "port unreachable" is sent: a node's start-up probe for a port-mapping service
        # the router lacks then ends in a millisecond, however many trials ran this second
        "net.ipv4.icmp_ratelimit=0",
    ]
    if cfg.ipv6:
        out.append("net.ipv6.conf.all.forwarding=1")
    if cfg.mapping_lifetime:
        out += [
            f"net.netfilter.nf_conntrack_udp_timeout={cfg.mapping_lifetime}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={cfg.mapping_lifetime}",
        ]
    return out


def _filter(cfg: RouterConfig, p: Profile) -> str:
    """The router's own INPUT, and the forward filter: blocked transports; without translation,
    the filtering axis as a stateful firewall."""
    wan, lan = cfg.wan, cfg.lan
    inp = [f'iifname "{wan}" ct state established,related accept']
    if cfg.allow_stun_from:
        addrs = ", ".join(cfg.allow_stun_from)
        inp.append(f'iifname "{wan}" ip saddr {{ {addrs} }} udp sport {{ 3478, 3479 }} accept')
    if cfg.ipv6:
        inp.append("meta l4proto ipv6-icmp accept")  # neighbour discovery: the router's IPv6 works
    inp.append(f'iifname "{wan}" drop')
    if cfg.upnp and not cfg.natpmp:
        inp.append(f'iifname "{cfg.lan}" udp dport 5351 @th,64,8 0 drop')
    if cfg.upnp and not cfg.pcp:
        inp.append(f'iifname "{cfg.lan}" udp dport 5351 @th,64,8 != 0 drop')
    fwd: list[str] = []
    sets: list[str] = []
    policy = "accept"
    for proto, b in p.transports():
        if b.filtering is Filtering.BLOCKED:
            fwd += [
                f'meta nfproto ipv4 iifname "{lan}" oifname "{wan}" meta l4proto {proto} drop',
                f'meta nfproto ipv4 iifname "{wan}" meta l4proto {proto} drop',
            ]
    passing = [(proto, b) for proto, b in p.transports() if b.filtering is not Filtering.BLOCKED]
    if not p.translates and any(b.filtering is not Filtering.ENDPOINT_INDEPENDENT for _, b in passing):
        policy = "drop"
        fwd.append("meta nfproto ipv6 accept")  # IPv6 has its own filter (``firewall6``)
        fwd.append("ct state established,related accept")
        for proto, b in passing:
            if b.filtering is Filtering.ADDRESS_DEPENDENT:
                sets.append(
                    f"set fwperm_{proto} {{ type ipv4_addr . inet_service . ipv4_addr; "
                    "flags dynamic,timeout; timeout 120s; }"
                )
                fwd += [
                    f'iifname "{lan}" meta l4proto {proto} '
                    f"update @fwperm_{proto} {{ ip saddr . th sport . ip daddr }}",
                    f'iifname "{wan}" meta l4proto {proto} '
                    f"ip daddr . th dport . ip saddr @fwperm_{proto} accept",
                ]
            elif b.filtering is Filtering.ENDPOINT_INDEPENDENT:
                fwd.append(f'iifname "{wan}" meta l4proto {proto} accept')
        fwd.append(f'iifname "{lan}" accept')
    return _table(
        "inet wgfilter",
        {
            "input": ("type filter hook input priority filter; policy accept;", inp),
            "forward": (f"type filter hook forward priority filter; policy {policy};", fwd),
        },
        sets,
    )


def _pool(cfg: RouterConfig) -> tuple[int, int]:
    return cfg.port_range or EPHEMERAL


def _sequence(cfg: RouterConfig, delta: int) -> list[int]:
    """The ports a sequential allocator hands out in turn: from the pool's start by ``delta``
    (from its end when ``delta`` is negative); without a port range, ``SEQ_SIZE`` ports from
    ``SEQ_BASE``."""
    lo, hi = cfg.port_range or (SEQ_BASE, SEQ_BASE + SEQ_SIZE * abs(delta) - 1)
    count = (hi - lo) // abs(delta) + 1
    if count > MAX_SEQ_PORTS:
        raise ScenarioError(
            f"a sequential allocator over {count} ports: at most {MAX_SEQ_PORTS} (narrow port_range)"
        )
    start = lo if delta > 0 else hi
    return [start + i * delta for i in range(count)]


def _nat(cfg: RouterConfig, p: Profile, timeout: str) -> str:
    wan, pub = cfg.wan, cfg.pub
    sets: list[str] = []
    pre: list[str] = []
    post: list[str] = []
    learn: list[str] = []
    dyn = f"flags dynamic,timeout; timeout {timeout};"
    endpoint = "ipv4_addr . inet_service"
    # the router's own packets (miniupnpd's STUN check) leave untranslated, as a real router's do:
    # else a symmetric ruleset makes miniupnpd think it sits behind a NAT and refuse to map
    post.append(f'oifname "{wan}" ip saddr {pub} accept')
    for proto, b in p.transports():
        if b.filtering is Filtering.BLOCKED:
            continue
        out = f'oifname "{wan}" meta l4proto {proto}'
        new = f"{out} ct direction original ct status snat"
        original = "ct original ip saddr . ct original proto-src"
        # mapping: reuse a remembered mapping for a new flow with the same key
        if b.mapping in (Mapping.ENDPOINT_INDEPENDENT, Mapping.ADDRESS_DEPENDENT):
            ad = b.mapping is Mapping.ADDRESS_DEPENDENT
            sets.append(
                f"map map_{proto} {{ type {endpoint}{' . ipv4_addr' if ad else ''} : inet_service; {dyn} }}"
            )
            key = "ip saddr . th sport" + (" . ip daddr" if ad else "")
            post.append(f"{out} snat ip to {pub} : {key} map @map_{proto}")
            learn.append(
                f"{new} update @map_{proto} {{ {original}{' . ip daddr' if ad else ''} : th sport }}"
            )
        # allocation: the port of a fresh mapping
        lo, hi = _pool(cfg)
        if b.allocation is PortAllocation.PRESERVING:
            if b.mapping is not Mapping.ENDPOINT_INDEPENDENT:
                # an endpoint's second mapping cannot keep the port its first one holds
                sets.append(f"set used_{proto} {{ type {endpoint}; {dyn} }}")
                post.append(f"{out} ip saddr . th sport @used_{proto} snat ip to {pub}:{lo}-{hi} random")
                learn.append(f"{new} update @used_{proto} {{ {original} }}")
            post.append(f"{out} snat ip to {_to(cfg)}")
        elif b.allocation is PortAllocation.SEQUENTIAL:
            ports = _sequence(cfg, b.delta)
            elems = ", ".join(f"{i} : {port}" for i, port in enumerate(ports))
            post.append(f"{out} snat ip to {pub} : numgen inc mod {len(ports)} map {{ {elems} }}")
        else:
            post.append(f"{out} snat ip to {pub}:{lo}-{hi} random")
        # filtering: which new inbound flows reach the mapping's internal endpoint
        if b.filtering in (Filtering.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_DEPENDENT):
            sets.append(f"map in_{proto} {{ type inet_service : {endpoint}; {dyn} }}")
            learn.append(f"{new} update @in_{proto} {{ th sport : {original} }}")
            inbound = f'iifname "{wan}" ip daddr {pub} meta l4proto {proto}'
            if b.filtering is Filtering.ADDRESS_DEPENDENT:
                sets.append(f"set perm_{proto} {{ type inet_service . ipv4_addr; {dyn} }}")
                learn.append(f"{new} update @perm_{proto} {{ th sport . ip daddr }}")
                inbound += f" th dport . ip saddr @perm_{proto}"
            pre.append(f"{inbound} dnat ip to th dport map @in_{proto}")
    post.append(f'oifname "{wan}" snat ip to {pub}')  # anything else (ICMP)
    chains: dict[str, tuple[str, list[str]]] = {
        "pre": ("type nat hook prerouting priority dstnat; policy accept;", pre),
        "post": ("type nat hook postrouting priority srcnat; policy accept;", post),
    }
    if learn:
        chains["learn"] = ("type filter hook postrouting priority srcnat + 10; policy accept;", learn)
    return _table("ip wgnat", chains, sets)


def _to(cfg: RouterConfig) -> str:
    if cfg.port_range:
        return f"{cfg.pub}:{cfg.port_range[0]}-{cfg.port_range[1]}"
    return cfg.pub


def _hairpin(cfg: RouterConfig, timeout: str) -> str:
    wan, lan, pub = cfg.wan, cfg.lan, cfg.pub
    return _table(
        "ip wghairpin",
        {
            "pre": (
                "type nat hook prerouting priority dstnat; policy accept;",
                [
                    f'iifname "{lan}" ip daddr {pub} meta l4proto {{ tcp, udp }} '
                    "dnat ip to meta l4proto . th dport map @hpmap"
                ],
            ),
            "post": (
                "type nat hook postrouting priority srcnat - 5; policy accept;",
                [f'iifname "{lan}" oifname "{lan}" ct status dnat snat ip to {pub}'],
            ),
            "learn": (
                "type filter hook postrouting priority srcnat + 10; policy accept;",
                [
                    f'oifname "{wan}" meta l4proto {{ tcp, udp }} ct direction original ct status snat '
                    "update @hpmap { meta l4proto . th sport : ct original ip saddr . ct original proto-src }"
                ],
            ),
        },
        [
            "map hpmap { type inet_proto . inet_service : ipv4_addr . inet_service; "
            f"flags dynamic,timeout; timeout {timeout}; }}"
        ],
    )


def _miniupnpd_skeleton(cfg: RouterConfig) -> str:
    """The chains miniupnpd (nftables build) adds its rules to (all in ``inet filter``, which it
    does not create: docs/nat-behaviour.md), with the IPv6 filter after its forward chain (what
    its pinholes open)."""
    return _table(
        "inet filter",
        {
            "forward": (
                "type filter hook forward priority 0; policy accept;",
                ["jump miniupnpd", *firewall6(cfg)],
            ),
            "miniupnpd": ("", []),
            "prerouting": (
                "type nat hook prerouting priority -100; policy accept;",
                ["jump prerouting_miniupnpd"],
            ),
            "postrouting": (
                "type nat hook postrouting priority 100; policy accept;",
                ["jump postrouting_miniupnpd"],
            ),
            "prerouting_miniupnpd": ("", []),
            "postrouting_miniupnpd": ("", []),
        },
        _sets6(cfg),
    )


def _table(name: str, chains: dict[str, tuple[str, list[str]]], sets: list[str] | None = None) -> str:
    lines = [f"table {name} {{"]
    lines += [f"  {s}" for s in sets or []]
    for chain, (hook, rules) in chains.items():
        lines.append(f"  chain {chain} {{")
        if hook:
            lines.append(f"    {hook}")
        lines += [f"    {r}" for r in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)
