"""``netsim expect``'s matrices: the runner's expectations, per run, without a lab."""

from netsim.model import expect, scenario, theory

SOLO = """
name = "t"
mode = "solo"
plugins = ["direct", "reverse"]
[matrix]
a = ["open", "symmetric"]
b = ["open", "symmetric"]
"""

RACE = """
name = "t"
mode = "race"
plugins = ["direct", "udp_punch", "turn"]
[matrix]
a = ["open", "symmetric"]
b = ["full-cone", "symmetric"]
[expect]
"open/full-cone" = []
"""


def test_a_solo_scenario_gives_one_matrix_per_plugin_from_its_rule():
    sc = scenario.parse(SOLO)
    found = expect.matrices(sc)
    assert [m.label for m in found] == ["direct", "reverse"]
    for m in found:
        plugin = m.label
        for (a, b), v in m.cells.items():
            assert v == {True: "yes", False: "no", None: "?"}[theory.expected(plugin, a, b)]
    assert found[0].cells[("open", "symmetric")] == "yes"  # anyone reaches an open callee
    assert found[1].cells[("open", "symmetric")] == "no"  # an open callee cannot reach a symmetric NAT


def test_a_race_with_a_relay_tells_direct_from_relayed_and_the_scenario_has_the_last_word():
    m = expect.matrices(scenario.parse(RACE))[0]
    assert m.cells[("symmetric", "symmetric")] == "relayed"  # no direct rule joins two symmetric NATs
    assert m.cells[("symmetric", "full-cone")] == "direct"
    assert m.cells[("open", "full-cone")] == "no"  # the [expect] table overrides the theory
