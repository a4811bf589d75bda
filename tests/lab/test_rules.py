"""``netsim rules``: a router's script, loaded on a lab router in place of the lab's own rules,
makes the router it claims. The nftables script is the router the label says; the iptables one is
what the rendering says it produces (its "lost" lines), measured with the same RFC 5780 tests."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from netsim.control import services, verify
from netsim.control.lab import Lab
from netsim.model import rules
from netsim.model.nat import PROFILES, Profile
from netsim.model.topology import IPV6, Site, Topology
from warpgate.proto.nat import Filtering, Mapping, NatBehaviour, PortAllocation

pytestmark = [pytest.mark.root, pytest.mark.lab]

WILD = Profile.axes(
    NatBehaviour(Mapping.ADDRESS_DEPENDENT, Filtering.ADDRESS_DEPENDENT, PortAllocation.SEQUENTIAL, 2)
)
SITES = (
    *(Site(p, p) for p in PROFILES),
    Site("port-range", "port-restricted-cone", port_range=(40000, 40999)),
    Site("wild", WILD),
    *(Site(f"v6-{b}", "port-restricted-cone", ipv6=b) for b in IPV6),
)


def load(lab, render):
    """Each router's rules replaced by the script ``render`` makes of its config; no state left."""
    made = {}
    for s in SITES:
        r = lab.topology.router(s.name)
        rendering = render(lab.plan.routers[r])
        lab.run(r, ["nft", "flush", "ruleset"])
        lab.run(r, ["sh", "-s"], input=rendering.script)
        lab.run(r, ["conntrack", "-F"], check=False)
        made[s.name] = rendering
    return made


def measure(lab, infra, made):
    """Per site: (what the rendering claims, what was measured), UDP and TCP, and IPv6."""

    def one(s):
        got = verify.classify(lab, infra, s.name)
        tcp_alloc = s.port_range is None
        pairs = [
            (
                verify.describe(made[s.name].udp, "udp"),
                verify.describe(verify.measured_behaviour(got["udp"]), "udp"),
            ),
            (
                verify.describe(made[s.name].tcp, "tcp", allocation=tcp_alloc),
                verify.describe(verify.measured_behaviour(got["tcp"]), "tcp", allocation=tcp_alloc),
            ),
        ]
        if s.ipv6:
            check = verify.check_ipv6(lab, infra, replace(s, ipv6=made[s.name].ipv6))
            pairs.append((check.expected, check.measured))
        return s.name, pairs

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, SITES))


def test_each_script_makes_the_router_it_claims():
    with Lab(Topology("rules", SITES)) as lab:
        infra = services.start(lab, brokers=False, names=False)
        nft = measure(lab, infra, load(lab, rules.nft))
        made = load(lab, rules.iptables)
        ipt = measure(lab, infra, made)
    wrong = {k: v for k, v in nft.items() if any(want != got for want, got in v)}
    assert not wrong, f"nft scripts: {wrong}"
    wrong = {k: v for k, v in ipt.items() if any(want != got for want, got in v)}
    assert not wrong, f"iptables scripts: {wrong}"
    # the classic recipes lose what the docs say they lose
    assert made["full-cone"].lost and made["restricted-cone"].lost and made["symmetric-sequential"].lost
    assert not any("filtering" in line or "ports:" in line for line in made["port-restricted-cone"].lost)
    assert not made["symmetric"].lost
