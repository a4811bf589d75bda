"""The lab's pure parts: topology addressing and validation, NAT rulesets, plans, parsers."""

import pytest

from netsim.control.verify import parse_natdiscovery
from netsim.errors import ScenarioError
from netsim.model.nat import PROFILES, RouterConfig, expected, ruleset
from netsim.model.plan import build_plan, loss_table
from netsim.model.topology import INTERNET, PUBLIC_LANS, Impairment, Site, Topology, double_nat, two_sites


def test_addresses_stay_in_documentation_and_private_ranges():
    import ipaddress

    topo = Topology(
        "t",
        (
            Site("a", "full-cone", hosts=2),
            Site("b", "open"),
            Site("c", "firewall"),
            Site("cgn", "symmetric", hosts=0),
            Site("d", "port-restricted-cone", upstream="cgn"),
        ),
    )
    for s in topo.sites:
        wan = ipaddress.IPv4Address(topo.wan_ip(s.name))
        assert wan in INTERNET or wan.is_private
        for i in range(s.hosts):
            ip = ipaddress.IPv4Address(topo.host_ip(s.name, i))
            assert ip in PUBLIC_LANS or ip.is_private
    assert topo.lan("b") != topo.lan("c") and topo.lan("b").subnet_of(PUBLIC_LANS)
    assert topo.public_ip("d") == topo.wan_ip("cgn")


def test_plan_links_never_touch_the_root_namespace():
    plan = build_plan(double_nat())
    for link in plan.links:
        assert link.a in plan.hosts and link.b in plan.hosts
        assert all(len(i) <= 15 for i in (link.a_intf, link.b_intf))
    assert all(h.startswith("wg") for h in plan.hosts)


@pytest.mark.parametrize(
    "site, match",
    [
        (dict(name="x", profile="nope"), "unknown profile"),
        (dict(name="x", profile="open", hosts=9), "hosts"),
        (dict(name="x", profile="open", port_range=(10, 5)), "port range"),
    ],
)
def test_bad_sites(site, match):
    with pytest.raises(ScenarioError, match=match):
        Site(**site)


def test_bad_topologies():
    with pytest.raises(ScenarioError, match="duplicate"):
        Topology("t", (Site("a", "open"), Site("a", "open")))
    with pytest.raises(ScenarioError, match="not a site"):
        Topology("t", (Site("a", "full-cone", upstream="zz"),))
    with pytest.raises(ScenarioError, match="must both NAT"):
        Topology("t", (Site("c", "symmetric"), Site("a", "open", upstream="c")))
    with pytest.raises(ScenarioError, match="jitter"):
        Impairment(delay_ms=1, jitter_ms=5)


def test_rulesets_follow_the_recipes():
    cfg = RouterConfig("full-cone", "w", "l", "203.0.113.101")
    rules = ruleset(cfg)
    assert rules.startswith("flush ruleset")
    assert 'iifname "w" drop' in rules  # routers drop unsolicited traffic to themselves
    assert "dnat ip to th dport map @in_udp" in rules and "dnat ip to th dport map @in_tcp" in rules
    assert "snat ip to 1.2.3.4:1024-65535 random" in ruleset(RouterConfig("symmetric", "w", "l", "1.2.3.4"))
    seq = ruleset(RouterConfig("symmetric-sequential", "w", "l", "1.2.3.4", port_range=(50000, 50009)))
    assert "numgen inc mod 10 map { 0 : 50000" in seq and "9 : 50009" in seq
    assert "wghairpin" in ruleset(RouterConfig("port-restricted-cone", "w", "l", "1.2.3.4", hairpin=True))
    assert "wghairpin" not in ruleset(RouterConfig("port-restricted-cone", "w", "l", "1.2.3.4"))
    assert "wgnat" not in ruleset(RouterConfig("open", "w", "l", "1.2.3.4"))
    assert "timeout 7s" in ruleset(RouterConfig("full-cone", "w", "l", "1.2.3.4", mapping_lifetime=7))
    fw = ruleset(RouterConfig("firewall", "w", "l", "1.2.3.4"))
    assert "policy drop" in fw and "ct state established,related accept" in fw and "wgnat" not in fw
    blocked = ruleset(RouterConfig("udp-blocked", "w", "l", "1.2.3.4"))
    assert 'iifname "w" meta l4proto udp drop' in blocked and "map_udp" not in blocked
    assert "numgen random mod 1000000 < 250000 drop" in loss_table("w", 0.25)
    assert "meta protocol { ip, ip6 }" in loss_table("w", 0.25)  # ARP passes: no neighbour failures


def test_port_range_changes_expected_allocation():
    udp, _ = expected("port-restricted-cone", (40000, 40999))
    assert udp.allocation.name == "RANDOM"
    assert expected("port-restricted-cone")[0].allocation.name == "PRESERVING"
    assert set(PROFILES) == {
        "open",
        "firewall",
        "full-cone",
        "restricted-cone",
        "port-restricted-cone",
        "symmetric",
        "symmetric-sequential",
        "udp-blocked",
    }


def test_natdiscovery_parser():
    text = (
        "junk\nNAT with Endpoint Independent Mapping!\nSTUN receive timeout..\n"
        "NAT with Address Dependent Filtering!\n"
    )
    assert parse_natdiscovery(text) == "EIM ADF"
    assert parse_natdiscovery("STUN receive timeout..\n") == "blocked"


def test_two_sites_plan_has_one_ruleset_per_router():
    plan = build_plan(two_sites("full-cone", "symmetric"))
    nft = [s for s in plan.steps if s.argv[0] == "nft"]
    assert [s.host for s in nft] == ["wgr1", "wgr2"]
    assert all(s.phase == 1 for s in nft)


def test_impairments_wait_for_validation_and_every_router_has_an_uplink():
    """Loss and rate limits are not part of the build: Lab.impair() applies them after the routers
    were validated on a clean wire; the relays start held (see netsim.hosts.delay --hold)."""
    bad = Impairment(delay_ms=30, jitter_ms=5, loss=0.02, rate_mbit=10)
    topo = Topology("t", (Site("a", "full-cone", wan=bad), Site("b", "open")))
    plan = build_plan(topo)
    assert not any("wgloss" in (s.stdin or "") or s.argv[0] == "tc" for s in plan.steps)
    assert [(s.host, s.argv[0]) for s in plan.impairments] == [("wgr1", "nft"), ("wgr1", "tc")]
    assert "wgloss" in (plan.impairments[0].stdin or "")
    assert [r.host for r in plan.relays] == ["wgd1"]
    # a link flap pulls the far end of each router's WAN cable: the relay's side, or the hub's port
    assert plan.uplinks == {"wgr1": ("wgd1", "wgd1-a"), "wgr2": ("wgi", "wgi-r2")}
    carrier = build_plan(double_nat())
    assert carrier.uplinks["wgr2"] == ("wgr1", "wgr1-c2")


def _axes(mapping, filtering, allocation, delta=0):
    from warpgate.proto.nat import Filtering, Mapping, NatBehaviour, PortAllocation

    return NatBehaviour(Mapping[mapping], Filtering[filtering], PortAllocation[allocation], delta)


@pytest.mark.parametrize(
    "axes, present, absent",
    [
        # mapping: what a new flow reuses
        (
            ("ENDPOINT_INDEPENDENT", "ADDRESS_PORT_DEPENDENT", "RANDOM"),
            ["ip saddr . th sport map @map_udp"],
            ["ip daddr map"],
        ),
        (
            ("ADDRESS_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "RANDOM"),
            ["ip saddr . th sport . ip daddr map @map_udp"],
            [],
        ),
        (("ADDRESS_PORT_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "RANDOM"), [], ["map_udp"]),
        # allocation: the port of a fresh mapping
        (
            ("ENDPOINT_INDEPENDENT", "ADDRESS_PORT_DEPENDENT", "PRESERVING"),
            ["udp snat ip to 1.2.3.4\n"],
            ["@used_udp", "random"],
        ),
        (
            ("ADDRESS_PORT_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "PRESERVING"),
            ["@used_udp snat ip to 1.2.3.4:1024-65535 random"],
            [],
        ),
        # filtering: which inbound flows are let in
        (
            ("ENDPOINT_INDEPENDENT", "ENDPOINT_INDEPENDENT", "RANDOM"),
            ["dnat ip to th dport map @in_udp"],
            ["perm_udp"],
        ),
        (("ENDPOINT_INDEPENDENT", "ADDRESS_DEPENDENT", "RANDOM"), ["th dport . ip saddr @perm_udp dnat"], []),
        (("ENDPOINT_INDEPENDENT", "ADDRESS_PORT_DEPENDENT", "RANDOM"), [], ["in_udp", "perm_udp"]),
    ],
)
def test_each_axis_value_is_one_fragment(axes, present, absent):
    from netsim.model.nat import Profile

    rules = ruleset(RouterConfig(Profile.axes(_axes(*axes)), "w", "l", "1.2.3.4"))
    for text in present:
        assert text in rules, text
    for text in absent:
        assert text not in rules, text


def test_sequential_allocation_steps_by_its_delta_within_the_pool():
    from netsim.model.nat import Profile

    up = ruleset(
        RouterConfig(
            Profile.axes(_axes("ADDRESS_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "SEQUENTIAL", 2)),
            "w",
            "l",
            "1.2.3.4",
            port_range=(50000, 50009),
        )
    )
    assert "numgen inc mod 5 map { 0 : 50000, 1 : 50002, 2 : 50004, 3 : 50006, 4 : 50008 }" in up
    down = ruleset(
        RouterConfig(
            Profile.axes(_axes("ADDRESS_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "SEQUENTIAL", -3)),
            "w",
            "l",
            "1.2.3.4",
            port_range=(50000, 50009),
        )
    )
    assert "map { 0 : 50009, 1 : 50006, 2 : 50003, 3 : 50000 }" in down
    with pytest.raises(ScenarioError, match="at most"):
        ruleset(
            RouterConfig(
                Profile.axes(_axes("ADDRESS_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "SEQUENTIAL", 1)),
                "w",
                "l",
                "1.2.3.4",
                port_range=(1024, 65535),
            )
        )


def test_profiles_reject_what_no_router_can_be():
    from netsim.model.nat import Profile

    with pytest.raises(ScenarioError, match="delta"):
        Profile.axes(_axes("ADDRESS_DEPENDENT", "ADDRESS_PORT_DEPENDENT", "RANDOM", 2))
    with pytest.raises(ScenarioError, match="unknown"):
        Profile.axes(_axes("UNKNOWN", "ADDRESS_PORT_DEPENDENT", "RANDOM"))
    with pytest.raises(ScenarioError, match="translate both"):
        Profile.axes(
            _axes("NONE", "ENDPOINT_INDEPENDENT", "PRESERVING"),
            _axes("ENDPOINT_INDEPENDENT", "ENDPOINT_INDEPENDENT", "PRESERVING"),
        )


def test_presets_are_tuples_and_round_trip_through_the_site_syntax():
    from netsim.model.nat import as_table, from_table

    for p in PROFILES.values():
        back = from_table(as_table(p))
        assert (back.udp, back.tcp) == (p.udp, p.tcp), p.name
    assert from_table({"mapping": "adm", "filtering": "APDF", "allocation": "sequential"}).udp.delta == 1
    for table, match in [
        ({"mapping": "EIM", "filtering": "APDF"}, "allocation: is required"),
        ({"mapping": "XIM", "filtering": "APDF", "allocation": "random"}, "mapping: 'XIM' is not one of"),
        ({"mapping": "EIM", "filtering": "APDF", "allocation": "random", "colour": 1}, "colour: unknown key"),
        (
            {"mapping": "EIM", "filtering": "APDF", "allocation": "random", "udp": {"delta": "x"}},
            "udp.delta: must be an integer",
        ),
    ]:
        with pytest.raises(ScenarioError, match=match):
            from_table(table)


def test_a_nat_behind_a_carrier_shows_the_stricter_of_both():
    from netsim.model.nat import behind

    home, cgn = PROFILES["full-cone"], PROFILES["symmetric"]
    seen = behind(home, cgn)
    assert (seen.udp.mapping.name, seen.udp.filtering.name, seen.udp.allocation.name) == (
        "ADDRESS_PORT_DEPENDENT",
        "ADDRESS_PORT_DEPENDENT",
        "RANDOM",
    )
    # a preserving carrier keeps the home router's allocation
    seq = behind(PROFILES["symmetric-sequential"], PROFILES["full-cone"])
    assert (seq.udp.allocation.name, seq.udp.delta, seq.udp.filtering.name) == (
        "SEQUENTIAL",
        1,
        "ADDRESS_PORT_DEPENDENT",
    )
    with pytest.raises(ScenarioError, match="must both NAT"):
        behind(PROFILES["open"], cgn)
