"""netsim's pytest plugin as a user's suite meets it: the entry point loads it, the ``lab``
fixture builds and tears down, the ``scenario`` marker runs a scenario and checks its cells."""

import pytest

pytestmark = [pytest.mark.root, pytest.mark.lab]


def test_the_plugin_is_loaded_through_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("netsim")


def test_a_lab_from_a_spec(lab):
    net = lab("two-sites:full-cone,open")
    out = net.host("a").cmd("ping -c1 -W2 203.0.113.10")
    assert " 0% packet loss" in out, out


@pytest.mark.scenario("fault-broker", trials=1)
def test_a_scenario_by_marker(scenario_cells):
    assert len(scenario_cells) > 0 and (scenario_cells["errors"] == 0).all()
