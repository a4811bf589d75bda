"""The emulated internet's infrastructure, started from code inside the lab's server hosts.

- ``wgs1``: coturn (STUN on 203.0.113.10 and .11, ports 3478/3479, and on 2001:db8::10 and ::11
  when a site has IPv6; TURN as ``wg``/``wgpass``) and netsim's prober;
- ``wgs2``: mosquitto and the names server; ``wgs3``: a second mosquitto;
- miniupnpd on the router of every site with ``upnp`` or ``natpmp`` (NAT-PMP and PCP) on.

Each daemon runs with a generated config, logs into the lab's work directory, and is stopped by PID.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.control import daemons
from netsim.control.lab import PYTHON, Lab
from netsim.model import topology as T

PROBER_PORT = 7100
NAMES_PORT = 5300
BROKER_PORT = 1883
TURN_USER, TURN_PASSWORD = "wg", "wgpass"


@dataclass(frozen=True)
class Infrastructure:
    stun: tuple[str, str]
    prober: str
    brokers: tuple[str, ...]
    names: str
    turn: str
    stun6: tuple[str, str] | None = None
    """The STUN server's IPv6 addresses, when a site has IPv6."""

    def as_dict(self) -> dict[str, object]:
        return {
            "stun": list(self.stun),
            "stun6": list(self.stun6) if self.stun6 else None,
            "prober": self.prober,
            "brokers": list(self.brokers),
            "names": self.names,
            # credentials never go into records or reports
            "turn": "turn://***@" + self.turn.split("@", 1)[-1],
        }


def start(lab: Lab, *, brokers: bool = True, names: bool = True) -> Infrastructure:
    """Start what the lab's scenarios and checks need; a daemon that fails stops with its log."""
    v6 = (T.STUN_IP6, T.STUN_IP6_2) if lab.topology.ipv6 else ()
    lab.start_daemon(
        T.STUN_HOST,
        daemons.coturn(T.STUN_IP, T.STUN_IP2, user=TURN_USER, password=TURN_PASSWORD, ipv6=v6),
    )
    lab.start_daemon(T.STUN_HOST, daemons.prober(PYTHON, [T.STUN_IP, T.STUN_IP2, *v6], PROBER_PORT))
    urls = []
    if brokers:
        for host, ip in T.BROKER_HOSTS:
            lab.start_daemon(host, daemons.mosquitto(ip, BROKER_PORT))
            urls.append(f"mqtt://{ip}:{BROKER_PORT}")
    if names:
        lab.start_daemon(T.NAMES_HOST, daemons.names_server(PYTHON, T.NAMES_IP, NAMES_PORT))
    topo = lab.topology
    for site in topo.sites:
        if site.port_mapping:
            r = topo.router(site.name)
            cfg = lab.plan.routers[r]
            lab.start_daemon(
                r,
                daemons.miniupnpd(
                    cfg.wan,
                    cfg.lan,
                    str(topo.lan(site.name)),
                    T.STUN_IP,
                    topo.index(site.name),
                    upnp=site.upnp,
                    natpmp=site.natpmp or site.pcp,
                    ipv6=topo.gateway6(site.name) if site.ipv6 is not None else None,
                ),
            )
    return Infrastructure(
        stun=(T.STUN_IP, T.STUN_IP2),
        prober=f"{T.STUN_IP}:{PROBER_PORT}",
        brokers=tuple(urls),
        names=f"{T.NAMES_IP}:{NAMES_PORT}",
        turn=f"turn://{TURN_USER}:{TURN_PASSWORD}@{T.STUN_IP}:3478",
        stun6=(T.STUN_IP6, T.STUN_IP6_2) if v6 else None,
    )
