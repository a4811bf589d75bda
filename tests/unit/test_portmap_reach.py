"""Reach rules with port mapping: a mapping the callee's gateway granted lets ``direct`` in, the
caller's lets ``reverse`` in, and ``portmap`` applies only where neither address holds one yet."""

import pytest

from warpgate import Node
from warpgate.errors import LocalProtocolError
from warpgate.plugins.direct import Direct
from warpgate.plugins.portmap import PortMap
from warpgate.plugins.reverse import Reverse
from warpgate.proto.nat import PRESETS, Behaviours

SYM = PRESETS["symmetric"]


def side(mapped=False, maps=False):
    return Behaviours(SYM, SYM, mapped=mapped, maps=maps)


def test_a_mapping_joins_two_symmetric_nats():
    assert not Direct.reach(side(), side()) and not Reverse.reach(side(), side())
    assert not PortMap.reach(side(), side())
    assert Direct.reach(side(), side(mapped=True, maps=True))  # caller, callee
    assert Reverse.reach(side(mapped=True, maps=True), side())
    # held from the start: direct / reverse dial it, portmap does not apply
    assert not PortMap.reach(side(), side(mapped=True, maps=True))
    # granted on request, by either side's gateway
    assert PortMap.reach(side(), side(maps=True)) and PortMap.reach(side(maps=True), side())
    assert not Direct.reach(side(), side(maps=True))


def test_node_refuses_bad_port_mapping_options():
    with pytest.raises(LocalProtocolError, match="portmap is one of start, demand, off"):
        Node(portmap="always")
    with pytest.raises(LocalProtocolError, match="portmap_lease must be 1..604800"):
        Node(portmap_lease=0)
