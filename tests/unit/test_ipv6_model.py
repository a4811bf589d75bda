"""IPv6 in the lab's pure parts and the theory: addressing, firewall rules, plans, reach."""

import ipaddress

import pytest

from netsim.errors import ScenarioError
from netsim.model import scenario, theory
from netsim.model.nat import RouterConfig, forget, ruleset
from netsim.model.plan import build_plan
from netsim.model.topology import INTERNET6, IPV6, Site, Topology, mirror6

RACE = ("direct", "reverse", "udp_punch")


def _topo() -> Topology:
    return Topology(
        "t",
        (
            Site("a", "symmetric", ipv6="firewall6"),
            Site("b", "port-restricted-cone", ipv6="open6", hosts=2),
            Site("c", "port-restricted-cone"),
        ),
    )


def test_ipv6_addresses_are_documentation_prefixes_and_distinct():
    topo = _topo()
    doc = ipaddress.IPv6Network("2001:db8::/32")
    lans = [topo.lan6(s.name) for s in topo.sites]
    assert len(set(lans)) == len(lans) and all(n.subnet_of(doc) and n.prefixlen == 64 for n in lans)
    assert not any(n.overlaps(INTERNET6) for n in lans)
    assert ipaddress.IPv6Address(topo.wan6("a")) in INTERNET6
    assert ipaddress.IPv6Address(topo.host_ip6("b", 1)) in topo.lan6("b")
    assert mirror6("203.0.113.10") == "2001:db8::10"


def test_only_ipv6_sites_and_the_servers_get_ipv6():
    plan = build_plan(_topo())
    sysctl = {s.host: s.argv for s in plan.steps if s.argv[0] == "sysctl" and s.phase == 0}
    on = "net.ipv6.conf.all.disable_ipv6=0"
    topo = _topo()
    assert on in sysctl[topo.host("a")] and on in sysctl["wgs1"]
    assert on not in sysctl[topo.host("c")] and "net.ipv6.conf.all.disable_ipv6=1" in sysctl[topo.host("c")]
    batch = {s.host: s.stdin or "" for s in plan.steps if s.argv[:2] == ("ip", "-batch")}
    assert f"route add {topo.lan6('a')} via {topo.wan6('a')}" in batch["wgs1"]
    assert "fe80::1/64" in batch[topo.router("a")]  # the router can solicit for forwarded packets
    assert "2001:db8" not in batch[topo.host("c")] and "2001:db8" not in batch[topo.router("c")]
    # every IPv6 host proves its path before the lab is handed over (a checked step)
    pings = [s for s in plan.steps if s.argv[0] == "ping"]
    assert {s.host for s in pings} == {topo.host("a"), topo.host("b", 0), topo.host("b", 1)}
    assert max(s.phase for s in plan.steps) == pings[0].phase


def test_a_plain_ipv4_topology_plans_exactly_as_before():
    plan = build_plan(Topology("t", (Site("c", "port-restricted-cone"),)))
    text = "\n".join((s.stdin or "") + " ".join(s.argv) for s in plan.steps)
    assert "2001:db8" not in text and "disable_ipv6=0" not in text
    assert not any(s.argv[0] == "ping" for s in plan.steps)


@pytest.mark.parametrize(
    ("behaviour", "present", "absent"),
    [
        ("open6", [], ['ipv6 iifname "w" drop', "@eif6"]),
        ("firewall6", ["ipv6 ct state established,related accept", 'ipv6 iifname "w" drop'], ["@eif6"]),
        ("firewall6-eif", ["update @eif6", "th dport @eif6 accept", 'ipv6 iifname "w" drop'], []),
        ("blocked6", ["meta nfproto ipv6 drop"], ["@eif6"]),
    ],
)
def test_each_ipv6_behaviour_is_its_own_rules(behaviour, present, absent):
    for upnp in (False, True):
        text = ruleset(
            RouterConfig("port-restricted-cone", "w", "l", "203.0.113.101", upnp=upnp, ipv6=behaviour)
        )
        for fragment in present:
            assert fragment in text
        for fragment in absent:
            assert fragment not in text
        if upnp and present:  # after miniupnpd's chain, in one base chain: a pinhole accepts before the drop
            chain = text[text.index("table inet filter") :]
            assert chain.index("jump miniupnpd") < chain.index("meta nfproto ipv6")
    eif = RouterConfig("symmetric", "w", "l", "203.0.113.101", ipv6="firewall6-eif")
    assert "flush set inet wgfw6 eif6" in forget(eif)  # a trial starts with nothing let in


def test_ipv4_rules_do_not_touch_ipv6():
    fw = ruleset(RouterConfig("firewall", "w", "l", "203.0.113.101", ipv6="open6"))
    assert "meta nfproto ipv6 accept" in fw  # the IPv4 firewall's drop policy leaves IPv6 alone
    blocked = ruleset(RouterConfig("udp-blocked", "w", "l", "203.0.113.101", ipv6="open6"))
    assert 'meta nfproto ipv4 iifname "w" meta l4proto udp drop' in blocked


def test_bad_ipv6_behaviour():
    with pytest.raises(ScenarioError, match="ipv6 is one of"):
        Site("x", "open", ipv6="firewall7")


def test_a_carrier_or_a_site_behind_one_has_no_ipv6():
    with pytest.raises(ScenarioError, match="behind a carrier"):
        Site("x", "symmetric", upstream="cgn", ipv6="firewall6")
    with pytest.raises(ScenarioError, match="carrier has no IPv6"):
        Topology(
            "t", (Site("cgn", "symmetric", hosts=0, ipv6="open6"), Site("h", "symmetric", upstream="cgn"))
        )
    with pytest.raises(ScenarioError, match="sites.x.ipv6"):
        scenario.parse(
            'name = "s"\n[sites.x]\nprofile = "symmetric"\nipv6 = "on"\n[matrix]\na = ["x"]\nb = ["x"]\n'
        )


def _sites(**ipv6: str | None) -> dict[str, scenario.SiteSpec]:
    text = 'name = "s"\nplugins = ["direct"]\n'
    for name, v6 in ipv6.items():
        profile = "symmetric" if name.startswith("sym") else "port-restricted-cone"
        text += f'[sites.{name}]\nprofile = "{profile}"\n' + (f'ipv6 = "{v6}"\n' if v6 else "")
    names = ", ".join(f'"{n}"' for n in ipv6)
    return scenario.parse(text + f"[matrix]\na = [{names}]\nb = [{names}]\n").sites


def test_theory_joins_firewalled_ipv6_where_ipv4_cannot():
    s = _sites(sym1="firewall6", sym2="firewall6", symeif="firewall6-eif", sym4=None, symbroken="blocked6")

    def race(a: str, b: str, ipv6: bool = True) -> bool | None:
        return theory.expected_race(RACE, s[a].behaviours(), s[b].behaviours(), ipv6=ipv6)

    assert race("sym1", "sym2") is True and race("sym1", "sym2", ipv6=False) is False  # rescued
    assert theory.expected("udp_punch", s["sym1"].behaviours(), s["sym2"].behaviours()) is True
    assert theory.expected("direct", s["sym1"].behaviours(), s["sym2"].behaviours()) is False  # APDF
    assert theory.expected("direct", s["symeif"].behaviours(), s["sym1"].behaviours()) is True  # EIF
    assert theory.expected("reverse", s["sym1"].behaviours(), s["sym2"].behaviours()) is False  # IPv4 only
    assert race("sym1", "sym4") is False  # an IPv4-only peer gains nothing
    assert race("sym1", "symbroken") is False and race("symbroken", "symbroken") is False
    assert set(IPV6) == {"open6", "firewall6", "firewall6-eif", "blocked6"}


def test_punch_targets_take_ipv6_only_from_a_side_whose_ipv6_works():
    from warpgate.plugins.udp_punch import targets
    from warpgate.proto.messages import Candidate

    peer_public = (Candidate("2001:db8:2::10", 4000), Candidate("203.0.113.102", 4000))
    peer_private = (Candidate("10.2.0.10", 4000),)
    with6 = (Candidate("2001:db8:1::10", 5000), Candidate("203.0.113.101", 5000))
    without6 = (Candidate("203.0.113.101", 5000),)
    assert [c.host for c in targets(peer_public, peer_private, with6)] == ["2001:db8:2::10", "203.0.113.102"]
    assert [c.host for c in targets(peer_public, peer_private, without6)] == ["203.0.113.102"]
    # a side that only answers over IPv4 (its NAT lets the peer in) still dials IPv6
    assert [c.host for c in targets(peer_public, peer_private, with6, answer_only=True)] == ["2001:db8:2::10"]
    # behind the same NAT (same public IPv4): the private candidate too
    same = (Candidate("2001:db8:1::10", 5000), Candidate("203.0.113.102", 5000))
    assert "10.2.0.10" in [c.host for c in targets(peer_public, peer_private, same)]
