"""``netsim rules``: the scripts are valid shell, the nft one holds exactly the lab's ruleset, and
the iptables one says what it loses (the lab test measures both on real routers)."""

import subprocess

import pytest

from netsim.errors import UsageError
from netsim.model import rules
from netsim.model.nat import PROFILES, RouterConfig, ruleset
from netsim.model.scenario import SiteSpec
from warpgate.proto.nat import Filtering


@pytest.mark.parametrize("name", list(PROFILES))
@pytest.mark.parametrize("render", [rules.nft, rules.iptables])
def test_every_preset_renders_as_a_valid_shell_script(name, render):
    cfg = rules.site_config(SiteSpec(PROFILES[name], ipv6="firewall6"), "wan0", "lan0", "192.0.2.7")
    script = render(cfg).script
    assert script.startswith("#!/bin/sh\n")
    out = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_nft_script_is_the_lab_ruleset():
    cfg = RouterConfig("symmetric-sequential", "wan0", "lan0", "192.0.2.7", mapping_lifetime=30)
    script = rules.nft(cfg).script
    assert ruleset(cfg) in script
    assert "sysctl -q -w net.netfilter.nf_conntrack_udp_timeout=30" in script


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("wan", 'eth0"; reboot', "an interface name"),
        ("lan", "a" * 16, "an interface name"),
        ("wan", "", "an interface name"),
        ("pub", "192.0.2.7; reboot", "not an IPv4 address"),
        ("pub", "2001:db8::1", "not an IPv4 address"),
        ("lan", "wan0", "the same interface"),
    ],
)
def test_what_goes_into_the_script_is_checked(field, value, says):
    """The names and the address land in a root shell script: nothing but a plain name passes."""
    fields = {"wan": "wan0", "lan": "lan0", "pub": "192.0.2.7", field: value}
    for render in (rules.nft, rules.iptables):
        with pytest.raises(UsageError, match=says):
            render(RouterConfig("symmetric", **fields))


def test_iptables_says_what_it_cannot_express():
    def made(name, **knobs):
        return rules.iptables(RouterConfig(name, "wan0", "lan0", "192.0.2.7", **knobs))

    assert made("symmetric").lost == ()  # --random-fully is the lab's symmetric NAT
    assert made("firewall").lost == ()
    cone = made("full-cone")
    assert cone.udp.filtering is Filtering.ADDRESS_PORT_DEPENDENT
    assert any("endpoint-independent filtering" in line for line in cone.lost)
    assert all(f"# lost: {line}" in cone.script for line in cone.lost)
    assert any("sequential" in line for line in made("symmetric-sequential").lost)
    assert any("hairpinning" in line for line in made("port-restricted-cone", hairpin=True).lost)
    assert any("miniupnpd" in line for line in made("port-restricted-cone", upnp=True).lost)
    eif6 = made("port-restricted-cone", ipv6="firewall6-eif")
    assert eif6.ipv6 == "firewall6" and "ip6tables-restore" in eif6.script
