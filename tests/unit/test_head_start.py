"""Head starts come from the plugins' own reach rules: a plugin waits behind a cheaper one only
where that one's rule says it connects, and only when it races."""

import ipaddress

import pytest

from warpgate import PRESETS, Address, Identity, Interface
from warpgate.plugins.base import HANDSHAKE_FLOOR, AttemptContext
from warpgate.plugins.reverse import Reverse
from warpgate.plugins.turn import Turn
from warpgate.plugins.udp_punch import UdpPunch
from warpgate.proto.discovery import Discovery

RACE = ("direct", "reverse", "udp_punch", "turn")


class Host:
    """Only what head starts read: the NAT this node measured at start, its address."""

    relay_head_start = 1.0
    local_interfaces: list = []  # the peer is never on our link

    def __init__(self, profile, rtt=0.002):
        nat = PRESETS[profile]
        self.nat = Discovery(nat, nat, None, None, None, rtt)
        self.address = peer(profile)  # no gateway mapping


def peer(profile):
    iface = Interface(
        private4=ipaddress.IPv4Address("10.0.1.11"),
        public4=ipaddress.IPv4Address("203.0.113.101"),
        nat=PRESETS[profile],
    )
    return Address(Identity.generate().public_key, 4000, 4000, (iface,), ("mqtt://203.0.113.20:1883",))


def ctx(caller, callee, racing=RACE, rtt=0.002, plugin="reverse"):
    return AttemptContext(Host(caller, rtt), peer(callee), plugin, deadline=10.0, racing=racing)


@pytest.mark.parametrize(
    ("caller", "callee", "reverse", "punch"),
    [
        # an open caller, a filtering callee: udp_punch and reverse both connect; reverse yields
        ("open", "port-restricted-cone", HANDSHAKE_FLOOR, 0.0),
        # a reachable callee: direct goes first, both signalling plugins wait
        ("port-restricted-cone", "full-cone", HANDSHAKE_FLOOR, HANDSHAKE_FLOOR),
        # udp_punch cannot join these: reverse has no one to wait for (and direct cannot either)
        ("open", "udp-blocked", 0.0, 0.0),
    ],
)
def test_who_waits_for_whom(caller, callee, reverse, punch):
    c = ctx(caller, callee)
    assert Reverse().head_start(c) == pytest.approx(reverse)
    assert UdpPunch().head_start(c) == pytest.approx(punch)


def test_no_head_start_behind_a_plugin_that_does_not_race():
    assert Reverse().head_start(ctx("open", "port-restricted-cone", racing=("direct", "reverse"))) == 0.0


def test_head_starts_scale_with_the_round_trip_within_bounds():
    assert Reverse().head_start(ctx("open", "port-restricted-cone", rtt=0.02)) == pytest.approx(0.08)
    assert Reverse().head_start(ctx("open", "port-restricted-cone", rtt=0.5)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("caller", "callee", "wait"),
    [
        ("port-restricted-cone", "port-restricted-cone", 1.0),  # udp_punch's rule says it connects
        ("open", "symmetric", 1.0),  # reverse's rule does: the callee dials back to an open caller
        ("symmetric", "symmetric", 0.0),  # no rule but the relay's: it starts at once
        ("udp-blocked", "port-restricted-cone", 0.0),
    ],
)
def test_a_relay_waits_while_another_plugin_is_likely_to_connect(caller, callee, wait):
    assert Turn().head_start(ctx(caller, callee, plugin="turn")) == wait
    assert Turn().head_start(ctx(caller, callee, racing=("turn",), plugin="turn")) == 0.0
