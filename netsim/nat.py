"""NAT profiles: RFC 4787 tuples with fixed names, and the nftables ruleset that makes each one.

The rulesets follow ``shared/research/nat-recipes.md`` (measured on this kernel):

- Linux conntrack NAT is endpoint-independent mapping + address-and-port-dependent filtering with
  port preservation out of the box (``port-restricted-cone``).
- ``full-cone`` / ``restricted-cone`` learn "proto . public port -> internal ip . port" in a dynamic
  map on egress and DNAT new inbound flows through it, so they work for any number of LAN hosts;
  ``restricted-cone`` also needs the remote IP in a permission set.
- ``symmetric`` is ``masquerade random``; ``symmetric-sequential`` takes ports from an nft
  ``numgen inc`` counter through a map (a plain ``numgen`` expression has a byte-order trap).
- Every router drops unsolicited traffic to itself: with INPUT open, an early inbound punch
  packet creates a conntrack entry that collides with the later outbound mapping (measured).
- Hairpinning (RFC 4787 §6) is off unless asked for; on, a LAN-side DNAT from a learned map plus
  ``snat to PUB`` gives the sender's own public mapping as source (REQ-9).

``ruleset()`` is pure: it returns the text for ``nft -f -``; ``sysctls()`` the mapping-lifetime
settings. Both run inside the router's own network namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from warpgate.proto.nat import PRESETS, NatBehaviour, PortAllocation

SEQ_BASE = 40000
SEQ_SIZE = 1000


@dataclass(frozen=True)
class Profile:
    name: str
    udp: NatBehaviour
    tcp: NatBehaviour
    translates: bool
    """False for ``open`` and ``firewall``: the LAN holds public addresses."""
    summary: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("open", PRESETS["open"], PRESETS["open"], False, "routed public addresses, no rules"),
        Profile("firewall", PRESETS["firewall"], PRESETS["firewall"], False, "stateful firewall, no NAT"),
        Profile("full-cone", PRESETS["full-cone"], PRESETS["full-cone"], True, "EIM + EIF (nft dynamic map)"),
        Profile(
            "restricted-cone",
            PRESETS["restricted-cone"],
            PRESETS["restricted-cone"],
            True,
            "EIM + address-dependent filtering",
        ),
        Profile(
            "port-restricted-cone",
            PRESETS["port-restricted-cone"],
            PRESETS["port-restricted-cone"],
            True,
            "EIM + APDF (plain Linux NAT)",
        ),
        Profile("symmetric", PRESETS["symmetric"], PRESETS["symmetric"], True, "APDM, random ports"),
        Profile(
            "symmetric-sequential",
            PRESETS["symmetric-sequential"],
            PRESETS["symmetric-sequential"],
            True,
            "APDM, ports from a counter (+1 per mapping)",
        ),
        Profile(
            "udp-blocked",
            PRESETS["udp-blocked"],
            PRESETS["port-restricted-cone"],
            True,
            "port-restricted cone that drops all UDP",
        ),
    )
}


def expected(profile: str, port_range: tuple[int, int] | None = None) -> tuple[NatBehaviour, NatBehaviour]:
    """What classification must measure for ``profile`` (UDP, TCP) given the router's knobs."""
    p = PROFILES[profile]
    udp, tcp = p.udp, p.tcp
    if port_range is not None and p.translates and udp.allocation is PortAllocation.PRESERVING:
        # SNAT into a range picks a random port in it: EIM stays, preservation goes (recipes §2.2)
        udp, tcp = (
            replace(udp, allocation=PortAllocation.RANDOM),
            replace(tcp, allocation=PortAllocation.RANDOM),
        )
    return udp, tcp


@dataclass(frozen=True)
class RouterConfig:
    """Everything the ruleset depends on, as values (no Mininet objects)."""

    profile: str
    wan: str
    lan: str
    pub: str
    hairpin: bool = False
    mapping_lifetime: int | None = None
    port_range: tuple[int, int] | None = None
    allow_stun_from: tuple[str, ...] = ()
    """Addresses whose STUN answers may reach the router itself (miniupnpd's ext_perform_stun)."""
    upnp: bool = False


def ruleset(cfg: RouterConfig) -> str:
    """The complete nftables ruleset for one router (after ``flush ruleset``)."""
    p = PROFILES[cfg.profile]
    timeout = f"{cfg.mapping_lifetime}s" if cfg.mapping_lifetime else "120s"
    parts = [_filter(cfg)]
    if p.translates:
        parts.append(_nat(cfg, timeout))
        if cfg.hairpin:
            parts.append(_hairpin(cfg, timeout))
    if cfg.upnp:
        parts.append(_miniupnpd_skeleton())
    return "flush ruleset\n" + "\n".join(parts)


def sysctls(cfg: RouterConfig) -> list[str]:
    """``key=value`` settings for the router namespace (conntrack timeouts are per namespace)."""
    out = [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ]
    if cfg.mapping_lifetime:
        out += [
            f"net.netfilter.nf_conntrack_udp_timeout={cfg.mapping_lifetime}",
            f"net.netfilter.nf_conntrack_udp_timeout_stream={cfg.mapping_lifetime}",
        ]
    return out


def _filter(cfg: RouterConfig) -> str:
    wan, lan = cfg.wan, cfg.lan
    inp = [f'iifname "{wan}" ct state established,related accept']
    if cfg.allow_stun_from:
        addrs = ", ".join(cfg.allow_stun_from)
        inp.append(f'iifname "{wan}" ip saddr {{ {addrs} }} udp sport {{ 3478, 3479 }} accept')
    inp.append(f'iifname "{wan}" drop')
    fwd: list[str] = []
    policy = "accept"
    if cfg.profile == "firewall":
        policy = "drop"
        fwd += ["ct state established,related accept", f'iifname "{lan}" accept']
    if cfg.profile == "udp-blocked":
        fwd += [
            f'iifname "{lan}" oifname "{wan}" meta l4proto udp drop',
            f'iifname "{wan}" meta l4proto udp drop',
        ]
    return _table(
        "inet wgfilter",
        {
            "input": ("type filter hook input priority filter; policy accept;", inp),
            "forward": (f"type filter hook forward priority filter; policy {policy};", fwd),
        },
    )


def _to(cfg: RouterConfig) -> str:
    if cfg.port_range:
        return f"{cfg.pub}:{cfg.port_range[0]}-{cfg.port_range[1]}"
    return cfg.pub


def _nat(cfg: RouterConfig, timeout: str) -> str:
    wan, pub = cfg.wan, cfg.pub
    sets: list[str] = []
    pre: list[str] = []
    learn: list[str] = []
    if cfg.profile == "symmetric":
        if cfg.port_range:  # a port range is only valid after a transport protocol match
            rng = f"{cfg.port_range[0]}-{cfg.port_range[1]}"
            post = [
                f'oifname "{wan}" meta l4proto {{ tcp, udp }} masquerade to :{rng} random',
                f'oifname "{wan}" masquerade random',
            ]
        else:
            post = [f'oifname "{wan}" masquerade random']
    elif cfg.profile == "symmetric-sequential":
        base, size = (
            (cfg.port_range[0], cfg.port_range[1] - cfg.port_range[0] + 1)
            if cfg.port_range
            else (SEQ_BASE, SEQ_SIZE)
        )
        elems = ", ".join(f"{i} : {base + i}" for i in range(size))
        counter = f"numgen inc mod {size} map {{ {elems} }}"
        post = [
            f'oifname "{wan}" meta l4proto {{ tcp, udp }} snat ip to {pub} : {counter}',
            f'oifname "{wan}" snat ip to {pub}',
        ]
    elif cfg.port_range:  # a port range is only valid after a transport protocol match
        post = [
            f'oifname "{wan}" meta l4proto {{ tcp, udp }} snat ip to {_to(cfg)}',
            f'oifname "{wan}" snat ip to {pub}',
        ]
    else:
        post = [f'oifname "{wan}" snat ip to {pub}']
    if cfg.profile in ("full-cone", "restricted-cone"):
        sets.append(
            "map fcmap { type inet_proto . inet_service : ipv4_addr . inet_service; "
            f"flags dynamic,timeout; timeout {timeout}; }}"
        )
        learn.append(
            f'oifname "{wan}" meta l4proto {{ tcp, udp }} ct direction original ct status snat '
            "update @fcmap { meta l4proto . th sport : ct original ip saddr . ct original proto-src }"
        )
        if cfg.profile == "full-cone":
            pre.append(
                f'iifname "{wan}" ip daddr {pub} meta l4proto {{ tcp, udp }} '
                "dnat ip to meta l4proto . th dport map @fcmap"
            )
        else:
            sets.append(
                "set perm { type inet_proto . inet_service . ipv4_addr; "
                f"flags dynamic,timeout; timeout {timeout}; }}"
            )
            permit = "update @perm { meta l4proto . th sport . ip daddr }"
            learn.append(f'oifname "{wan}" meta l4proto {{ tcp, udp }} {permit}')
            pre.append(
                f'iifname "{wan}" ip daddr {pub} meta l4proto {{ tcp, udp }} '
                "meta l4proto . th dport . ip saddr @perm dnat ip to meta l4proto . th dport map @fcmap"
            )
    chains: dict[str, tuple[str, list[str]]] = {
        "pre": ("type nat hook prerouting priority dstnat; policy accept;", pre),
        "post": ("type nat hook postrouting priority srcnat; policy accept;", post),
    }
    if learn:
        chains["learn"] = ("type filter hook postrouting priority srcnat + 10; policy accept;", learn)
    return _table("ip wgnat", chains, sets)


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


def _miniupnpd_skeleton() -> str:
    """The chains miniupnpd (nftables build) adds its rules to (recipes §6.3: all in ``inet filter``)."""
    return """table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}"""


def _table(name: str, chains: dict[str, tuple[str, list[str]]], sets: list[str] | None = None) -> str:
    lines = [f"table {name} {{"]
    lines += [f"  {s}" for s in sets or []]
    for chain, (hook, rules) in chains.items():
        lines.append(f"  chain {chain} {{")
        lines.append(f"    {hook}")
        lines += [f"    {r}" for r in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)
