"""tcp_punch's reach over the TCP axes, and what the engine knows of its own TCP NAT."""

from warpgate.plugins.tcp_punch import TcpPunch, tcp_behaviour
from warpgate.proto.discovery import Discovery
from warpgate.proto.nat import PRESETS, Behaviours, Filtering, Mapping, NatBehaviour, PortAllocation


def side(name, tcp=None):
    return Behaviours(PRESETS[name], PRESETS[tcp or name])


def test_the_issue_pairs_and_the_impossible_ones():
    joins = [
        ("firewall", "firewall"),
        ("port-restricted-cone", "port-restricted-cone"),
        ("restricted-cone", "port-restricted-cone"),
        ("port-restricted-cone", "symmetric-sequential"),  # by prediction
        ("symmetric-sequential", "port-restricted-cone"),
    ]
    for a, b in joins:
        assert TcpPunch.reach(side(a), side(b)), (a, b)
    # UDP blocked, TCP a port-restricted cone: TCP punching does not care
    blocked = side("udp-blocked", "port-restricted-cone")
    assert TcpPunch.reach(blocked, blocked) and TcpPunch.reach(blocked, side("port-restricted-cone"))
    impossible = [
        ("port-restricted-cone", "symmetric"),
        ("symmetric", "symmetric"),
        ("firewall", "symmetric"),
    ]
    for a, b in impossible:
        assert not TcpPunch.reach(side(a), side(b)), (a, b)


def test_tcp_behaviour_takes_filtering_and_delta_from_udp():
    udp = PRESETS["symmetric-sequential"]
    tcp = NatBehaviour(Mapping.ADDRESS_PORT_DEPENDENT, Filtering.UNKNOWN, PortAllocation.UNKNOWN)
    got = tcp_behaviour(Discovery(udp, tcp, None, None, None, None))
    assert (got.mapping, got.filtering, got.allocation, got.delta) == (
        Mapping.ADDRESS_PORT_DEPENDENT,
        Filtering.ADDRESS_PORT_DEPENDENT,
        PortAllocation.SEQUENTIAL,
        1,
    )
    # UDP blocked: TCP's own mapping, and a filter assumed to be by port (a conservative guess)
    blocked = NatBehaviour(Mapping.UNKNOWN, Filtering.BLOCKED)
    kept = NatBehaviour(Mapping.ENDPOINT_INDEPENDENT, Filtering.UNKNOWN, PortAllocation.PRESERVING)
    got = tcp_behaviour(Discovery(blocked, kept, None, None, None, None))
    assert got.endpoint_independent_mapping and got.filtering is Filtering.ADDRESS_PORT_DEPENDENT
