"""The lab's topology as plain data: sites behind routers, servers on an emulated internet.

Design rules (pion's vnet README states the same kind of rules):

- The internet is 203.0.113.0/24 (RFC 5737), a Linux bridge inside the hub host ``wgi``.
- Servers sit on the internet: ``wgs1`` (STUN/TURN, two addresses for RFC 5780), ``wgs2`` and
  ``wgs3`` (signal brokers, the names server).
- A site is one router and its LAN hosts. A NAT site's LAN is private (10.<k>.0.0/24); a site whose
  profile does not translate (``open``, ``firewall``) gets a routed public /29 from 198.51.100.0/24.
- A router's upstream is the internet, or a carrier router (double NAT); a carrier's LAN is
  172.16.<k>.0/24.
- Nothing links to the root namespace: every link joins two lab hosts.
- IPv6 (a site's ``ipv6``; none by default): the internet is also 2001:db8::/64 (RFC 3849), the
  servers' second addresses mirror their IPv4 ones (2001:db8::10, ...), router k's WAN is
  2001:db8::1:k and it routes the /64 2001:db8:k:: to its LAN (no NAT66: LAN hosts hold global
  addresses, behind the site's IPv6 firewall). A site behind a carrier has no IPv6.

Every name starts with ``wg`` so ``netsim clean`` can find leftovers and touch nothing else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netsim.errors import ScenarioError
from netsim.model.nat import PROFILES, Profile, profile

INTERNET = ipaddress.IPv4Network("203.0.113.0/24")
PUBLIC_LANS = ipaddress.IPv4Network("198.51.100.0/24")
HUB = "wgi"
STUN_HOST, STUN_IP, STUN_IP2 = "wgs1", "203.0.113.10", "203.0.113.11"
BROKER_HOSTS = (("wgs2", "203.0.113.20"), ("wgs3", "203.0.113.30"))
NAMES_HOST, NAMES_IP = "wgs2", "203.0.113.20"
MAX_ROUTERS = 99

INTERNET6 = ipaddress.IPv6Network("2001:db8::/64")
STUN_IP6, STUN_IP6_2 = "2001:db8::10", "2001:db8::11"


def mirror6(ip4: str) -> str:
    """A server's IPv6 address: its IPv4 one's last byte on the IPv6 internet (203.0.113.10 ->
    2001:db8::10, read as hex digits, so the two are easy to match by eye)."""
    return str(INTERNET6.network_address + int(ip4.rsplit(".", 1)[1], 16))


IPV6 = ("open6", "firewall6", "firewall6-eif", "blocked6")
"""A site's IPv6 behaviour: ``open6`` forwards everything; ``firewall6`` is a stateful firewall
(address-and-port-dependent filtering, as home routers ship, RFC 6092 §3); ``firewall6-eif``
lets in whatever reaches an address and port that has sent out (endpoint-independent filtering,
RFC 6092 REC-6's option); ``blocked6``: LAN hosts hold addresses but nothing IPv6 passes the
router (broken IPv6: a race must not wait for it)."""


@dataclass(frozen=True)
class Impairment:
    """What to do to one link's traffic (both directions)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    """Probability in 0..1 that a packet is dropped (iptables ``statistic``)."""
    rate_mbit: float | None = None
    """Bandwidth limit (``tbf``), or None."""

    def __post_init__(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.jitter_ms > self.delay_ms:
            raise ScenarioError(
                f"impairment: need 0 <= jitter_ms <= delay_ms, got {self.delay_ms}/{self.jitter_ms}"
            )
        if not 0 <= self.loss < 1:
            raise ScenarioError(f"impairment: loss {self.loss} outside [0, 1)")
        if self.rate_mbit is not None and self.rate_mbit <= 0:
            raise ScenarioError(f"impairment: rate_mbit {self.rate_mbit} must be positive")

    @property
    def any(self) -> bool:
        return bool(self.delay_ms or self.loss or self.rate_mbit)


@dataclass(frozen=True)
class Site:
    """A router with a NAT profile and its LAN hosts."""

    name: str
    profile: str | Profile
    """A preset's name (``netsim.model.nat.PROFILES``) or a router declared as RFC 4787 axes."""
    hosts: int = 1
    upstream: str | None = None
    """Name of a carrier site this router sits behind (double NAT); None: the internet."""
    hairpin: bool = False
    mapping_lifetime: int | None = None
    """UDP mapping lifetime in seconds (conntrack timeouts and map timeouts); None: kernel default."""
    port_range: tuple[int, int] | None = None
    """External ports the NAT allocates from; None: the profile's own choice."""
    upnp: bool = False
    """Run miniupnpd on this router with UPnP IGD on."""
    natpmp: bool = False
    """Answer NAT-PMP (RFC 6886) on this router (miniupnpd)."""
    pcp: bool = False
    """Answer PCP (RFC 6887) on this router (miniupnpd serves it with NAT-PMP on one switch; the
    router's input filter drops the version byte of the one that is off)."""
    wan: Impairment = field(default_factory=Impairment)
    ipv6: str | None = None
    """The site's IPv6 behaviour (``IPV6``); None: no IPv6 at all."""

    def __post_init__(self) -> None:
        try:
            profile(self.profile)
        except ScenarioError as exc:
            raise ScenarioError(f"site {self.name}: {exc}") from None
        if self.ipv6 is not None and self.ipv6 not in IPV6:
            raise ScenarioError(f"site {self.name}: ipv6 is one of {', '.join(IPV6)}, not {self.ipv6!r}")
        if self.ipv6 is not None and self.upstream is not None:
            raise ScenarioError(f"site {self.name}: a site behind a carrier has no IPv6 (not modelled)")
        if not 0 <= self.hosts <= 8:
            raise ScenarioError(f"site {self.name}: hosts must be 0..8")
        if self.port_range is not None and not 1024 <= self.port_range[0] <= self.port_range[1] <= 65535:
            raise ScenarioError(f"site {self.name}: bad port range {self.port_range}")
        if self.mapping_lifetime is not None and self.mapping_lifetime < 1:
            raise ScenarioError(f"site {self.name}: mapping_lifetime must be >= 1 s")

    @property
    def port_mapping(self) -> bool:
        return self.upnp or self.natpmp or self.pcp

    @property
    def mapping_protocols(self) -> tuple[str, ...]:
        """The port-mapping protocols this router answers, in ``warpgate.portmap`` names."""
        on = {"pcp": self.pcp, "natpmp": self.natpmp, "upnp": self.upnp}
        return tuple(p for p, v in on.items() if v)

    @property
    def nat(self) -> Profile:
        return profile(self.profile)

    @property
    def label(self) -> str:
        """The profile's name: a preset's, or the tuple in RFC 4787 shorthand."""
        return self.nat.name


@dataclass(frozen=True)
class Topology:
    name: str
    sites: tuple[Site, ...]
    servers: bool = True
    """Start the internet servers (STUN/TURN, brokers, names server hosts)."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ScenarioError(f"topology {self.name}: duplicate site names")
        if len(self.sites) > MAX_ROUTERS:
            raise ScenarioError(f"topology {self.name}: at most {MAX_ROUTERS} sites")
        by_name = {s.name: s for s in self.sites}
        for s in self.sites:
            if s.upstream is not None:
                up = by_name.get(s.upstream)
                if up is None:
                    raise ScenarioError(f"site {s.name}: upstream {s.upstream!r} is not a site")
                if up.upstream is not None:
                    raise ScenarioError(f"site {s.name}: only one level of carrier NAT is supported")
                if not s.nat.translates or not up.nat.translates:
                    raise ScenarioError(
                        f"site {s.name}: a site behind a carrier and its carrier must both NAT"
                    )
        for s in self.sites:
            if s.ipv6 is not None and any(o.upstream == s.name for o in self.sites):
                raise ScenarioError(f"site {s.name}: a carrier has no IPv6 (not modelled)")
        if sum(1 for s in self.sites if not s.nat.translates) > 32:
            raise ScenarioError(f"topology {self.name}: at most 32 sites with public LANs")

    # -- derived addressing (pure) -------------------------------------------------------------

    def index(self, site: str) -> int:
        names = [s.name for s in self.sites]
        if site not in names:
            raise ScenarioError(f"topology {self.name}: no site {site!r} (sites: {', '.join(names)})")
        return 1 + names.index(site)

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise ScenarioError(f"topology {self.name}: no site {name!r}")

    def router(self, site: str) -> str:
        return f"wgr{self.index(site)}"

    def host(self, site: str, i: int = 0) -> str:
        """Mininet name of LAN host ``i`` of ``site``."""
        return f"wgh{self.index(site)}x{i}"

    def wan_ip(self, site: str) -> str:
        s = self.site(site)
        if s.upstream is None:
            return str(INTERNET.network_address + 100 + self.index(site))
        return str(self.lan(s.upstream).network_address + 100 + self.index(site))

    def public_ip(self, site: str) -> str:
        """The site's address as seen from the internet (the outermost router's WAN address)."""
        s = self.site(site)
        return self.wan_ip(s.upstream if s.upstream else site)

    def lan(self, site: str) -> ipaddress.IPv4Network:
        s = self.site(site)
        k = self.index(site)
        if any(o.upstream == site for o in self.sites):  # a carrier: its LAN holds routers
            return ipaddress.IPv4Network(f"172.16.{k}.0/24")
        if s.nat.translates:
            return ipaddress.IPv4Network(f"10.{k}.0.0/24")
        public = [o.name for o in self.sites if not o.nat.translates]
        return list(PUBLIC_LANS.subnets(new_prefix=29))[public.index(site)]

    def gateway(self, site: str) -> str:
        return str(self.lan(site).network_address + 1)

    def host_ip(self, site: str, i: int = 0) -> str:
        net = self.lan(site)
        offset = 2 + i if net.prefixlen == 29 else 10 + i
        return str(net.network_address + offset)

    # -- IPv6 (sites with ``ipv6`` only) ---------------------------------------------------------

    @property
    def ipv6(self) -> bool:
        """Does any site have IPv6 (then the internet and its servers are dual stack)?"""
        return any(s.ipv6 is not None for s in self.sites)

    def wan6(self, site: str) -> str:
        return str(INTERNET6.network_address + (1 << 16) + self.index(site))

    def lan6(self, site: str) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(f"2001:db8:{self.index(site):x}::/64")

    def gateway6(self, site: str) -> str:
        return str(self.lan6(site).network_address + 1)

    def host_ip6(self, site: str, i: int = 0) -> str:
        return str(self.lan6(site).network_address + 0x10 + i)

    def hosts_of(self, site: str) -> list[str]:
        return [self.host(site, i) for i in range(self.site(site).hosts)]


# -- ready-made topologies -------------------------------------------------------------------


def two_sites(a: str = "port-restricted-cone", b: str = "symmetric", **site_opts: object) -> Topology:
    """Two sites, one host each, behind NAT profiles ``a`` and ``b``."""
    return Topology(f"two-{a}-{b}", (Site("a", a, **site_opts), Site("b", b, **site_opts)))  # type: ignore[arg-type]


def n_sites(profiles: list[str], hosts: int = 1) -> Topology:
    """One site per profile (repeat a profile to get several sites with it)."""
    return Topology("n-sites", tuple(Site(f"s{i + 1}", p, hosts=hosts) for i, p in enumerate(profiles)))


def double_nat(inner: str = "port-restricted-cone", carrier: str = "symmetric") -> Topology:
    """A home router behind a carrier-grade NAT, plus an open site to talk to."""
    return Topology(
        f"double-{inner}-{carrier}",
        (Site("cgn", carrier, hosts=0), Site("home", inner, upstream="cgn"), Site("pub", "open")),
    )


def hairpin_site(profile: str = "port-restricted-cone", hairpin: bool = True) -> Topology:
    """One site with two hosts, for hairpinning."""
    return Topology(f"hairpin-{profile}", (Site("a", profile, hosts=2, hairpin=hairpin),))


def zoo(profiles: list[str] | None = None) -> Topology:
    """Every profile once, one host each, each site named after its profile."""
    return Topology("zoo", tuple(Site(p, p) for p in profiles or list(PROFILES)))


READY: dict[str, object] = {
    "two-sites": two_sites,
    "n-sites": n_sites,
    "double-nat": double_nat,
    "hairpin": hairpin_site,
    "zoo": zoo,
}
