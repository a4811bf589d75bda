"""A lab router's rules as a script for a real Linux router: nftables, or iptables where it can.

The lab renders every router with nftables (``netsim.model.nat.ruleset``). A researcher who wants
to compare with a router of their own loads the same ruleset there; or the classic iptables
recipe closest to it, which is only part of the story: iptables cannot remember a mapping across
destinations for more than one LAN host, nor DNAT an inbound flow to "whoever holds this public
port" (docs/nat-behaviour.md). ``iptables()`` therefore says, per transport, what the rendering
produces (as RFC 4787 axes, measured in the lab by ``tests/lab/test_rules.py``) and what is lost.

Both renderings are pure: a ``RouterConfig`` in, the text of a POSIX shell script out.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, replace

from netsim.errors import UsageError
from netsim.model.nat import RouterConfig, _pool, _sequence, expected, profile, ruleset, sysctls
from netsim.model.scenario import SiteSpec
from warpgate.proto.nat import Filtering, Mapping, NatBehaviour, PortAllocation, shorthand

IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
"""A Linux interface name (IFNAMSIZ - 1 characters): what may go into a rule unquoted."""


@dataclass(frozen=True)
class Rendering:
    """One router as a script, with what it produces per transport and what it cannot express."""

    script: str
    udp: NatBehaviour
    tcp: NatBehaviour
    lost: tuple[str, ...] = ()
    ipv6: str | None = None
    """The IPv6 behaviour it produces (``netsim.model.topology.IPV6``); None: no IPv6."""


def router(cfg: RouterConfig) -> RouterConfig:
    """The config with its interface names and public address checked: they go into a shell
    script and into rules, so nothing but a plain name and an IPv4 address passes."""
    for what, name in (("--wan", cfg.wan), ("--lan", cfg.lan)):
        if not IFNAME.fullmatch(name):
            raise UsageError(f"{what} {name!r}: an interface name is 1-15 of A-Z a-z 0-9 _ . -")
    try:
        pub = ipaddress.IPv4Address(cfg.pub)
    except ValueError:
        raise UsageError(f"--public {cfg.pub!r}: not an IPv4 address") from None
    if cfg.wan == cfg.lan:
        raise UsageError("--wan and --lan name the same interface")
    return replace(cfg, pub=str(pub))


def site_config(spec: SiteSpec, wan: str, lan: str, pub: str) -> RouterConfig:
    """The router of a scenario's site (or a preset's), on a real router's interfaces."""
    return router(
        RouterConfig(
            profile=spec.nat,
            wan=wan,
            lan=lan,
            pub=pub,
            hairpin=spec.hairpin,
            mapping_lifetime=spec.mapping_lifetime,
            port_range=spec.port_range,
            upnp=spec.upnp or spec.natpmp or spec.pcp,
            natpmp=spec.natpmp,
            pcp=spec.pcp,
            ipv6=spec.ipv6,
        )
    )


REPLACES = {
    "nftables": "the whole ruleset (flush ruleset), iptables-nft's tables too",
    "iptables": "the filter and nat tables (iptables-restore flushes what it restores)",
}


def _header(cfg: RouterConfig, tool: str) -> list[str]:
    p = profile(cfg.profile)
    return [
        "#!/bin/sh",
        f"# netsim rules: router {p.name!r} ({shorthand(p.udp)} UDP, {shorthand(p.tcp)} TCP) as {tool}",
        f"# WAN {cfg.wan} with {cfg.pub}, LAN {cfg.lan}. Run as root on the router, from a console:",
        f"# it replaces {REPLACES[tool]}.",
        "set -e",
        *(f"sysctl -q -w {shlex.quote(s)}" for s in sysctls(cfg)),
    ]


def nft(cfg: RouterConfig) -> Rendering:
    """The lab's own ruleset: the router is exactly what the lab measured."""
    cfg = router(cfg)
    p = profile(cfg.profile)
    lines = [*_header(cfg, "nftables"), "nft -f - <<'EOF'", ruleset(cfg), "EOF", ""]
    return Rendering("\n".join(lines), *expected(p, cfg.port_range), ipv6=cfg.ipv6)


# -- iptables ---------------------------------------------------------------------------------------

EIF_LOST = (
    "endpoint-independent filtering needs a map from public port to internal endpoint;"
    " the nearest iptables recipe, DNAT of every inbound flow to one host, works for that host only:"
    " rendered as address-and-port-dependent filtering"
)
ADF_LOST = (
    "address-dependent filtering needs a permission per mapping; xt_recent keeps one per host"
    " (once a host sent to an address, every mapping of that host is open to it):"
    " rendered as address-and-port-dependent filtering"
)


def _axis(value: object) -> str:
    return str(getattr(value, "name", value)).lower().replace("_", "-")


def _snat(cfg: RouterConfig, proto: str, b: NatBehaviour) -> tuple[str, NatBehaviour, list[str]]:
    """The POSTROUTING rule for one transport, the mapping and allocation it really gives, and
    what is lost. The kernel's SNAT keeps the source port while the 5-tuple stays unique and the
    port lies in the range, else it picks a random one of the range; ``--random-fully`` picks a
    random port per flow. So plain SNAT is EIM (for one LAN host per source port), a range makes
    its ports random, ``--random-fully`` is APDM, and nothing else can be said."""
    rule = f"-A POSTROUTING -o {cfg.wan} -p {proto} -j SNAT --to-source {cfg.pub}"
    if b.mapping is not Mapping.ENDPOINT_INDEPENDENT and b.allocation is not PortAllocation.PRESERVING:
        lo, hi = _pool(cfg)
        rule += f":{lo}-{hi} --random-fully"
        made = NatBehaviour(Mapping.ADDRESS_PORT_DEPENDENT, b.filtering, PortAllocation.RANDOM)
    else:
        made = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, b.filtering, PortAllocation.PRESERVING)
        span = _pool(cfg) if cfg.port_range else None
        if b.allocation is PortAllocation.SEQUENTIAL and span is None:
            ports = _sequence(cfg, b.delta)
            span = (min(ports), max(ports))
        if span is not None:
            rule += f":{span[0]}-{span[1]}"
            made = replace(made, allocation=PortAllocation.RANDOM)
    lost = []
    if made.mapping is not b.mapping:
        why = {
            Mapping.ENDPOINT_INDEPENDENT: "SNAT keeps a port across destinations only while it keeps it",
            Mapping.ADDRESS_DEPENDENT: "SNAT remembers no mapping per destination address",
            Mapping.ADDRESS_PORT_DEPENDENT: "SNAT keeps the source port across destinations",
        }[b.mapping]
        lost.append(f"{proto}: {_axis(b.mapping)} mapping: {why}; rendered as {_axis(made.mapping)}")
    if (made.allocation, made.delta) != (b.allocation, b.delta):
        why = {
            PortAllocation.PRESERVING: "SNAT into a range keeps no port outside it",
            PortAllocation.SEQUENTIAL: "the kernel has no sequential port rover",
            PortAllocation.RANDOM: "SNAT keeps a source port that lies in the range",
        }[b.allocation]
        lost.append(f"{proto}: {_axis(b.allocation)} ports: {why}; rendered as {_axis(made.allocation)}")
    if made.mapping is Mapping.ENDPOINT_INDEPENDENT:
        lost.append(
            f"{proto}: the mapping is endpoint-independent for one LAN host per source port: a second"
            " host on the same port gets a port of its own per destination"
        )
    return rule, made, lost


@dataclass(frozen=True)
class _Part:
    """One transport's share of the iptables rules."""

    drops: tuple[str, ...]
    accepts: tuple[str, ...]
    snat: tuple[str, ...]
    made: NatBehaviour
    lost: tuple[str, ...]


def _transport(cfg: RouterConfig, proto: str, b: NatBehaviour, translates: bool) -> _Part:
    wan, lan = cfg.wan, cfg.lan
    if b.filtering is Filtering.BLOCKED:
        drops = (
            f"-A FORWARD -i {lan} -o {wan} -p {proto} -j DROP",
            f"-A FORWARD -i {wan} -p {proto} -j DROP",
        )
        return _Part(drops, (), (), b, ())
    accepts: tuple[str, ...] = ()
    lost: list[str] = []
    filtering = b.filtering
    if filtering is Filtering.ENDPOINT_INDEPENDENT and not translates:
        accepts = (f"-A FORWARD -i {wan} -p {proto} -j ACCEPT",)  # a public LAN, open as it is
    elif filtering is not Filtering.ADDRESS_PORT_DEPENDENT:
        lost.append(f"{proto}: " + (EIF_LOST if filtering is Filtering.ENDPOINT_INDEPENDENT else ADF_LOST))
        filtering = Filtering.ADDRESS_PORT_DEPENDENT
    if not translates:
        return _Part((), accepts, (), replace(b, filtering=filtering), tuple(lost))
    rule, made, more = _snat(cfg, proto, replace(b, filtering=filtering))
    return _Part((), accepts, (rule,), made, tuple(lost + more))


def iptables(cfg: RouterConfig) -> Rendering:
    """The classic recipe closest to the router: ``iptables-restore`` (and ``ip6tables-restore``
    for its IPv6 firewall), with what it produces and what it loses."""
    cfg = router(cfg)
    p = profile(cfg.profile)
    wan, lan = cfg.wan, cfg.lan
    stateful = "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
    # the router's own INPUT: unsolicited traffic to it is dropped, as the lab's routers do
    inp = [f"-A INPUT -i {wan} {stateful}", f"-A INPUT -i {wan} -j DROP"]
    parts = {proto: _transport(cfg, proto, b, p.translates) for proto, b in p.transports()}
    made = {proto: part.made for proto, part in parts.items()}
    lost = [line for part in parts.values() for line in part.lost]
    fwd = [r for part in parts.values() for r in part.drops]
    post = [r for part in parts.values() for r in part.snat]
    policy = "ACCEPT"
    passing = [m for m in made.values() if m.filtering is not Filtering.BLOCKED]
    if not p.translates and any(m.filtering is not Filtering.ENDPOINT_INDEPENDENT for m in passing):
        # a public LAN behind a stateful firewall: what came back, what is open, what goes out
        policy = "DROP"
        fwd += [f"-A FORWARD {stateful}", *(r for part in parts.values() for r in part.accepts)]
        fwd.append(f"-A FORWARD -i {lan} -j ACCEPT")
    if p.translates:
        post.append(f"-A POSTROUTING -o {wan} -j SNAT --to-source {cfg.pub}")  # anything else (ICMP)
    if cfg.hairpin:
        lost.append(
            "hairpinning: the loop-back DNAT needs the learned map from public port to host; left off"
        )
    if cfg.upnp:
        lost.append(
            "port mapping: miniupnpd's iptables build makes its own chains (MINIUPNPD); run it with its"
            " iptables scripts"
        )
    tables = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        f":FORWARD {policy} [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        *inp,
        *fwd,
    ]
    tables.append("COMMIT")
    tables += ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    tables += [":POSTROUTING ACCEPT [0:0]", *post, "COMMIT"]
    lines = _header(cfg, "iptables")
    lines += [f"# lost: {line}" for line in lost]
    lines += ["iptables-restore <<'EOF'", *tables, "EOF"]
    six, gone6 = _ip6tables(cfg)
    lost += gone6
    lines += [f"# lost: {line}" for line in gone6]
    if six:
        lines += ["ip6tables-restore <<'EOF'", *six, "EOF"]
    lines.append("")
    six6 = "firewall6" if cfg.ipv6 == "firewall6-eif" else cfg.ipv6
    return Rendering("\n".join(lines), made["udp"], made["tcp"], tuple(lost), six6)


def _ip6tables(cfg: RouterConfig) -> tuple[list[str], list[str]]:
    """The site's IPv6 firewall (RFC 6092), no translation: ``firewall6`` is conntrack alone."""
    if cfg.ipv6 is None:
        return [], []
    head = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if cfg.ipv6 == "open6":
        return [*head, "COMMIT"], []
    if cfg.ipv6 == "blocked6":
        return [*head, "-A FORWARD -j DROP", "COMMIT"], []
    lost = []
    if cfg.ipv6 == "firewall6-eif":
        lost.append(
            "ipv6: endpoint-independent filtering needs a set of internal endpoints that sent out;"
            " rendered as firewall6 (address-and-port-dependent)"
        )
    rules = [
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A FORWARD -i {cfg.lan} -j ACCEPT",
        f"-A FORWARD -i {cfg.wan} -j DROP",
    ]
    return [*head, *rules, "COMMIT"], lost
