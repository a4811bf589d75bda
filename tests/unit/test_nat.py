import pytest

from warpgate import PRESETS, Filtering, Mapping, NatBehaviour, PortAllocation
from warpgate.proto import nat


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_and_name_themselves(name):
    behaviour = PRESETS[name]
    assert nat.unpack(nat.pack(behaviour)) == behaviour
    assert behaviour.name == name


def test_axes_are_independent():
    # EIM + APDF is not expressible on a one-integer scale; here it is port-restricted cone.
    b = NatBehaviour(
        Mapping.ENDPOINT_INDEPENDENT, Filtering.ADDRESS_PORT_DEPENDENT, PortAllocation.PRESERVING
    )
    assert b.name == "port-restricted-cone"
    assert b.endpoint_independent_mapping and not b.reachable_unsolicited
    assert PRESETS["full-cone"].reachable_unsolicited
    assert not PRESETS["symmetric"].endpoint_independent_mapping


def test_hairpin_and_delta_survive():
    b = NatBehaviour(
        Mapping.ADDRESS_PORT_DEPENDENT,
        Filtering.ADDRESS_PORT_DEPENDENT,
        PortAllocation.SEQUENTIAL,
        delta=-3,
        hairpin=False,
    )
    assert nat.unpack(nat.pack(b)) == b


def test_bad_values():
    with pytest.raises(ValueError, match="unknown value"):
        nat.unpack(bytes((7, 0, 0, 0)))
    with pytest.raises(ValueError, match="hairpin"):
        nat.unpack(bytes((0b1100_0000, 0, 0, 0)))
    with pytest.raises(ValueError):
        NatBehaviour(delta=70000)
