"""Which local IP addresses a node listens on (the ``ifaddr`` package lists them)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ifaddr

from warpgate.errors import WarpgateError


@dataclass(frozen=True, slots=True)
class LocalInterface:
    name: str
    ipv4: tuple[ipaddress.IPv4Address, ...]
    ipv6: tuple[ipaddress.IPv6Address, ...]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """The on-link networks of those addresses (address and prefix length)."""

    def on_link(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Is ``ip`` on one of this interface's links (reached without a router, so no NAT)?"""
        return any(ip in net for net in self.networks if net.version == ip.version)


def list_interfaces(
    names: Sequence[str] | None = None, families: Iterable[str] = ("ipv4", "ipv6")
) -> list[LocalInterface]:
    """Interfaces with usable addresses. ``names=None`` means every non-loopback interface.

    Link-local IPv6 (fe80::/10) is left out: it needs a scope id that an address cannot carry.
    """
    fams = set(families)
    wanted = None if names is None else list(names)
    found: list[LocalInterface] = []
    for adapter in ifaddr.get_adapters():
        name = adapter.nice_name
        if wanted is not None and name not in wanted:
            continue
        v4: list[ipaddress.IPv4Address] = []
        v6: list[ipaddress.IPv6Address] = []
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and "ipv4" in fams:
                a4 = ipaddress.IPv4Address(ip.ip)
                if wanted is None and a4.is_loopback:
                    continue
                v4.append(a4)
                nets.append(ipaddress.IPv4Network(f"{a4}/{ip.network_prefix}", strict=False))
            elif isinstance(ip.ip, tuple) and "ipv6" in fams:
                a6 = ipaddress.IPv6Address(ip.ip[0].split("%")[0])
                if a6.is_link_local or (wanted is None and a6.is_loopback):
                    continue
                v6.append(a6)
                nets.append(ipaddress.IPv6Network(f"{a6}/{ip.network_prefix}", strict=False))
        if v4 or v6:
            found.append(LocalInterface(name, tuple(v4), tuple(v6), tuple(nets)))
    if wanted is not None:
        missing = [n for n in wanted if n not in {i.name for i in found}]
        if missing:
            raise WarpgateError(f"no usable address on interface(s) {', '.join(missing)}")
    if not found:
        raise WarpgateError("no interface with a usable IP address")
    return found
