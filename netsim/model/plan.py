"""Topology -> plan: the hosts, the links and every command, as data. Nothing here runs anything.

A ``Step`` is one argv (with optional stdin) for one host, in a phase; the executor runs the phases
in order, hosts in parallel within a phase, each host's steps in order, and checks every exit
status. Most hosts need three processes: ``ip -batch -`` (stops at the first failing line and says
which), one ``sysctl -w`` with every key, and one ``nft -f -`` with the whole ruleset (atomic).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netsim.model import topology as T
from netsim.model.nat import RouterConfig, ruleset, sysctls
from netsim.model.topology import Impairment, Topology

NO_IPV6 = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
IPV6_ON = ("net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0")
BASE_SYSCTLS = (
    *NO_IPV6,
    # br_netfilter is on in every namespace: without this, frames bridged inside a router would
    # traverse that router's conntrack (docs/nat-behaviour.md).
    "net.bridge.bridge-nf-call-iptables=0",
    "net.bridge.bridge-nf-call-ip6tables=0",
    "net.bridge.bridge-nf-call-arptables=0",
)


@dataclass(frozen=True)
class Link:
    a: str
    a_intf: str
    b: str
    b_intf: str


@dataclass(frozen=True)
class Step:
    host: str
    argv: tuple[str, ...]
    stdin: str | None = None
    phase: int = 0


@dataclass(frozen=True)
class Relay:
    """A userspace delay wire: a host forwarding frames between two interfaces after a delay."""

    host: str
    a: str
    b: str
    impairment: Impairment


@dataclass
class Plan:
    hosts: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)
    impairments: list[Step] = field(default_factory=list)
    """Loss tables and rate limits: applied by ``Lab.impair()`` after the routers are validated
    (with the relays' delay), so self-validation measures the NAT and not the bad wire."""
    routers: dict[str, RouterConfig] = field(default_factory=dict)
    uplinks: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Router host -> (host, interface) of the far end of its WAN link: the hub's bridge port, or
    its carrier's LAN port. Taking that end down is a carrier loss on the router (a link flap)
    without touching the router's own routes."""
    """Router host -> its NAT configuration (to re-apply or change a profile later)."""
    applied: list[dict[str, object]] = field(default_factory=list)
    """Impairments, as the run metadata will report them."""

    def for_host(self, host: str) -> list[Step]:
        return [s for s in self.steps if s.host == host]


def base_sysctls(ipv6: bool) -> tuple[str, ...]:
    """Every host's settings: IPv6 off, unless the host is on the dual-stack side of the lab."""
    return (*IPV6_ON, *BASE_SYSCTLS[len(NO_IPV6) :]) if ipv6 else BASE_SYSCTLS


def router_steps(host: str, cfg: RouterConfig, loss: float = 0.0, phase: int = 1) -> list[Step]:
    """Sysctls and the whole nft ruleset of one router (also used to change its profile later)."""
    rules = ruleset(cfg)
    if loss:
        rules += "\n" + loss_table(cfg.wan, loss)
    return [
        Step(host, ("sysctl", "-q", "-w", *base_sysctls(cfg.ipv6 is not None), *sysctls(cfg)), phase=phase),
        Step(host, ("nft", "-f", "-"), rules, phase=phase),
    ]


def loss_table(intf: str, loss: float) -> str:
    """Random loss of IP packets on one interface, both directions: nft's equivalent of
    ``-m statistic --mode random``. ARP passes: a WAN's loss is its packets', and a lost ARP
    exchange fails the neighbour entry for seconds (every packet then errors, a burst no real
    path shows)."""
    threshold = round(loss * 1_000_000)
    chains = []
    for hook in ("ingress", "egress"):
        chains.append(
            f"  chain {hook} {{\n"
            f'    type filter hook {hook} device "{intf}" priority -500; policy accept;\n'
            f"    meta protocol {{ ip, ip6 }} numgen random mod 1000000 < {threshold} drop\n"
            "  }"
        )
    return "table netdev wgloss {\n" + "\n".join(chains) + "\n}"


def _no_link_local(line: str) -> tuple[str, ...]:
    """After ``link add NAME type bridge``: the same for the new bridge."""
    words = line.split()
    return (f"link set {words[2]} addrgenmode none",) if words[:2] == ["link", "add"] else ()


def build_plan(topo: Topology) -> Plan:
    plan = Plan()
    ip: dict[str, list[str]] = {}

    def batch(host: str, *lines: str) -> None:
        ip.setdefault(host, ["link set lo up"]).extend(lines)

    def add_host(name: str) -> None:
        plan.hosts.append(name)
        ip.setdefault(name, ["link set lo up"])

    # -- the internet ---------------------------------------------------------------------------
    add_host(T.HUB)
    batch(T.HUB, "link add wgi-br type bridge mcast_snooping 0", "link set wgi-br up")

    def hub_port(peer: str, peer_intf: str) -> str:
        port = f"wgi-{peer[2:]}"
        plan.links.append(Link(peer, peer_intf, T.HUB, port))
        batch(T.HUB, f"link set {port} master wgi-br", f"link set {port} up")
        return port

    public_routes = [
        f"route add {topo.lan(s.name)} via {topo.wan_ip(s.name)}" for s in topo.sites if not s.nat.translates
    ]
    # IPv6: every site's /64 is routed to its router (no NAT66); DAD off, so addresses work at once
    routes6 = {s.name: f"route add {topo.lan6(s.name)} via {topo.wan6(s.name)}" for s in topo.sites if s.ipv6}
    v6_hosts: set[str] = set()
    if topo.servers:
        servers = [(T.STUN_HOST, [T.STUN_IP, T.STUN_IP2]), *[(h, [a]) for h, a in T.BROKER_HOSTS]]
        for name, addrs in servers:
            add_host(name)
            intf = f"{name}-eth0"
            hub_port(name, intf)
            batch(
                name, *[f"addr add {a}/24 dev {intf}" for a in addrs], f"link set {intf} up", *public_routes
            )
            if topo.ipv6:
                v6_hosts.add(name)
                batch(
                    name,
                    *[f"addr add {T.mirror6(a)}/64 dev {intf} nodad" for a in addrs],
                    *routes6.values(),
                )

    # -- sites ----------------------------------------------------------------------------------
    late: list[tuple[str, str]] = []
    for site in topo.sites:
        k = topo.index(site.name)
        r = topo.router(site.name)
        add_host(r)
        wan, lan = f"{r}-wan", f"{r}-br"
        if site.upstream is None:
            if site.wan.delay_ms:
                relay = f"wgd{k}"
                add_host(relay)
                plan.links.append(Link(r, wan, relay, f"{relay}-a"))
                hub_port(relay, f"{relay}-b")
                plan.uplinks[r] = (relay, f"{relay}-a")
                batch(relay, f"link set {relay}-a up", f"link set {relay}-b up")
                plan.relays.append(Relay(relay, f"{relay}-a", f"{relay}-b", site.wan))
            else:
                plan.uplinks[r] = (T.HUB, hub_port(r, wan))
            prefix = T.INTERNET.prefixlen
            routes = [x for x in public_routes if f"via {topo.wan_ip(site.name)}" not in x]
        else:
            up = topo.router(site.upstream)
            plan.links.append(Link(r, wan, up, f"{up}-c{k}"))
            plan.uplinks[r] = (up, f"{up}-c{k}")
            late.append((up, f"link set {up}-c{k} master {up}-br"))  # after the carrier made its bridge
            late.append((up, f"link set {up}-c{k} up"))
            prefix = topo.lan(site.upstream).prefixlen
            routes = [f"route add default via {topo.gateway(site.upstream)}"]
        gw = topo.gateway(site.name)
        batch(
            r,
            f"addr add {topo.wan_ip(site.name)}/{prefix} dev {wan}",
            f"link set {wan} up",
            f"link add {lan} type bridge mcast_snooping 0",
            f"link set {lan} up",
            f"addr add {gw}/{topo.lan(site.name).prefixlen} dev {lan}",
            *routes,
        )
        if site.ipv6:
            v6_hosts.add(r)
            batch(
                r,
                f"addr add {topo.wan6(site.name)}/{T.INTERNET6.prefixlen} dev {wan} nodad",
                f"addr add {topo.gateway6(site.name)}/64 dev {lan} nodad",
                # a router solicits neighbours for forwarded packets from its link-local address
                # (RFC 4861 §7.2.2; Linux sends no solicitation without one): given, not generated
                f"addr add fe80::1:{k:x}/64 dev {wan} nodad",
                f"addr add fe80::1/64 dev {lan} nodad",
                *[line for other, line in routes6.items() if other != site.name],
            )
        cfg = RouterConfig(
            profile=site.profile,
            wan=wan,
            lan=lan,
            pub=topo.wan_ip(site.name),
            hairpin=site.hairpin,
            mapping_lifetime=site.mapping_lifetime,
            port_range=site.port_range,
            upnp=site.port_mapping,
            natpmp=site.natpmp,
            pcp=site.pcp,
            allow_stun_from=(T.STUN_IP, T.STUN_IP2) if site.port_mapping else (),
            ipv6=site.ipv6,
            lan6=str(topo.lan6(site.name)) if site.ipv6 else "",
        )
        plan.routers[r] = cfg
        plan.steps += router_steps(r, cfg)
        if site.wan.loss:
            plan.impairments.append(Step(r, ("nft", "-f", "-"), loss_table(wan, site.wan.loss)))
        for i in range(site.hosts):
            h = topo.host(site.name, i)
            add_host(h)
            plan.links.append(Link(h, f"{h}-eth0", r, f"{r}-l{i}"))
            batch(r, f"link set {r}-l{i} master {lan}", f"link set {r}-l{i} up")
            batch(
                h,
                f"addr add {topo.host_ip(site.name, i)}/{topo.lan(site.name).prefixlen} dev {h}-eth0",
                f"link set {h}-eth0 up",
                f"route add default via {gw}",
            )
            if site.ipv6:
                v6_hosts.add(h)
                batch(
                    h,
                    f"addr add {topo.host_ip6(site.name, i)}/64 dev {h}-eth0 nodad",
                    f"route add default via {topo.gateway6(site.name)}",
                )
        if site.wan.any:
            plan.applied.append(
                {
                    "link": f"{site.name} WAN",
                    "delay_ms": site.wan.delay_ms,
                    "jitter_ms": site.wan.jitter_ms,
                    "loss": site.wan.loss,
                    "rate_mbit": site.wan.rate_mbit,
                }
            )
        if site.wan.rate_mbit:
            rate = f"{site.wan.rate_mbit}mbit"
            plan.impairments.append(
                Step(
                    r,
                    (
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        wan,
                        "root",
                        "tbf",
                        "rate",
                        rate,
                        "burst",
                        "32kb",
                        "latency",
                        "100ms",
                    ),
                )
            )

    for host, line in late:
        batch(host, line)
    # Every host: sysctls first (phase 0, with the addresses), routers' rules in phase 1.
    for host in plan.hosts:
        if host not in plan.routers:
            plan.steps.append(Step(host, ("sysctl", "-q", "-w", *base_sysctls(host in v6_hosts)), phase=0))
        lines = ip[host]
        if host in v6_hosts:
            # no generated link-local addresses, so no duplicate address detection to wait for:
            # every address is added ``nodad`` and works the moment its link is up
            lines = [x for line in lines for x in (line, *_no_link_local(line))]
            intfs = [x.a_intf for x in plan.links if x.a == host] + [
                x.b_intf for x in plan.links if x.b == host
            ]
            lines = [f"link set {i} addrgenmode none" for i in intfs] + lines
        plan.steps.append(Step(host, ("ip", "-batch", "-"), "\n".join(lines) + "\n", phase=0))
    if plan.relays:
        # The relay re-sends frames as they are: CHECKSUM_PARTIAL frames and TSO super-frames from
        # veth would arrive broken (docs/nat-behaviour.md), so every lab interface computes checksums itself.
        for link in plan.links:
            for host, intf in ((link.a, link.a_intf), (link.b, link.b_intf)):
                plan.steps.append(
                    Step(
                        host,
                        ("ethtool", "-K", intf, "tx", "off", "tso", "off", "gso", "off", "gro", "off"),
                        phase=2,
                    )
                )
    for site in topo.sites:
        if not site.ipv6:
            continue
        # IPv6 works before the lab is called up: one echo from each LAN host, to a server (to
        # its router when nothing IPv6 passes), with its exit status checked like any step
        far = T.STUN_IP6 if topo.servers and site.ipv6 != "blocked6" else topo.gateway6(site.name)
        for h in topo.hosts_of(site.name):
            plan.steps.append(Step(h, ("ping", "-q", "-n", "-c", "1", "-w", "5", far), phase=3))
    plan.steps.sort(key=lambda s: s.phase)
    return plan
