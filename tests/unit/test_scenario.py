"""Scenario files are strict: every error names the file, the line and the key."""

from pathlib import Path

import pytest

from netsim.control import runner
from netsim.errors import ScenarioError
from netsim.model import expect, theory
from netsim.model.scenario import load, parse

GOOD = """name = "t"
trials = 2
timeout = 1.0
plugins = ["direct", "reverse"]

[matrix]
a = ["open", "symmetric"]
b = ["full-cone"]
"""


def test_shipped_scenarios_parse():
    for path in sorted(Path(__file__).resolve().parents[2].glob("scenarios/*.toml")):
        sc = load(path)
        assert sc.cells and sc.plugins


def test_good_scenario():
    sc = parse(GOOD, "t.toml")
    assert sc.cells == [("open", "full-cone"), ("symmetric", "full-cone")]
    assert sc.runs() == [("direct", "reverse")]


@pytest.mark.parametrize(
    "change, match",
    [
        ("trials = 2", "t.toml:2: trials: must be 1..10000"),
        ('plugins = ["direct", "reverse"]', "t.toml:4: plugins: unknown plugin"),
        ('a = ["open", "symmetric"]', "t.toml:7: matrix.a: unknown profile"),
        ("timeout = 1.0", "t.toml:3: timeout: must be"),
    ],
)
def test_bad_values_name_file_line_and_key(change, match):
    bad = {
        "trials = 2": "trials = 0",
        'plugins = ["direct", "reverse"]': 'plugins = ["direct", "teleport"]',
        'a = ["open", "symmetric"]': 'a = ["open", "cgnat"]',
        "timeout = 1.0": 'timeout = "soon"',
    }[change]
    with pytest.raises(ScenarioError, match=match.replace("(", r"\(").replace("[", r"\[")):
        parse(GOOD.replace(change, bad), "t.toml")


def test_unknown_keys_are_errors():
    with pytest.raises(ScenarioError, match="t.toml:2: trails: unknown key"):
        parse(GOOD.replace("trials = 2", "trails = 2"), "t.toml")
    with pytest.raises(ScenarioError, match=r"matrix.c: unknown key"):
        parse(GOOD + 'c = ["open"]\n', "t.toml")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse("name = ", "t.toml")
    with pytest.raises(ScenarioError, match="cannot read"):
        load("/nonexistent/x.toml")


def test_expect_overrides_must_name_cells_and_plugins():
    with pytest.raises(ScenarioError, match="must be"):
        parse(GOOD + '[expect]\n"open/open" = ["direct"]\n', "t.toml")
    sc = parse(GOOD + '[expect]\n"open/full-cone" = ["reverse"]\n', "t.toml")
    assert sc.expect[("open", "full-cone")] == frozenset({"reverse"})


def test_theory_follows_the_axes():
    assert theory.expected("direct", "open", "symmetric") is True
    assert theory.expected("direct", "full-cone", "symmetric") is True
    # a full cone forwards TCP to the listener too: discovery's STUN over TCP opened the mapping
    assert theory.expected("direct", "full-cone", "udp-blocked") is True
    assert theory.expected("direct", "port-restricted-cone", "udp-blocked") is False
    assert theory.expected("udp_punch", "port-restricted-cone", "port-restricted-cone") is True
    assert theory.expected("udp_punch", "symmetric-sequential", "restricted-cone") is True  # prediction
    assert theory.expected("udp_punch", "symmetric", "restricted-cone") is True  # peer-reflexive
    assert theory.expected("udp_punch", "symmetric", "port-restricted-cone") is False
    assert theory.expected("udp_punch", "symmetric-sequential", "symmetric-sequential") is False
    assert theory.expected("udp_punch", "udp-blocked", "open") is False
    assert theory.expected("direct", "port-restricted-cone", "open") is False
    assert theory.expected("reverse", "port-restricted-cone", "open") is True
    assert theory.expected("direct", "firewall", "open") is False
    assert theory.expected_race(("direct", "reverse"), "symmetric", "symmetric") is False
    assert theory.expected("no_such_plugin", "open", "open") is None
    # random probing: a cone and a random-port NAT, in either role, and nothing else
    assert theory.expected("random_probe", "symmetric", "port-restricted-cone") is True
    assert theory.expected("random_probe", "port-restricted-cone", "symmetric") is True
    assert theory.expected("random_probe", "symmetric", "symmetric") is False
    assert theory.expected("random_probe", "symmetric-sequential", "port-restricted-cone") is False


def test_rounds_never_share_a_router_and_cover_every_cell():
    cells = [(a, b) for a in "abcd" for b in "wxyz"]
    rs = runner.rounds(cells, seed=3)
    assert sorted(c for r in rs for c in r) == sorted(cells)
    for r in rs:
        assert len({a for a, _ in r}) == len(r) == len({b for _, b in r})


def test_shards_partition_the_cells():
    cells = [(a, b) for a in "abc" for b in "xyz"]
    parts = [runner.shard_cells(cells, (k, 3)) for k in (1, 2, 3)]
    assert sorted(c for p in parts for c in p) == sorted(cells)
    with pytest.raises(Exception, match="shard"):
        runner.shard_cells(cells, (4, 3))


def test_scheduler_runs_every_cell_once_and_never_shares_a_router():
    import threading
    import time

    cells = [(a, b) for a in "abc" for b in "xyz"]
    held: set[str] = set()
    lock = threading.Lock()
    ran = []

    def work(cell):
        routers = {runner.site_a(cell[0]), runner.site_b(cell[1])}
        with lock:
            assert not routers & held, (cell, held)
            held.update(routers)
        time.sleep(0.01)  # hold the routers for a while, so overlaps would show
        with lock:
            held.difference_update(routers)
            ran.append(cell)

    runner.schedule_cells(cells, work, workers=3)
    assert sorted(ran) == sorted(cells)


def test_scheduler_raises_the_first_error():
    def work(cell):
        if cell == ("a", "y"):
            raise ValueError("boom")

    with pytest.raises(Exception, match="boom"):
        runner.schedule_cells([(a, b) for a in "ab" for b in "xy"], work, workers=2)


FAULT = (
    GOOD
    + """
[fault]
what = "flush-conntrack"
when = "mid-pipe"
sites = "b"
trials = [1]

[fault.survives]
"open/full-cone" = true
"""
)


def test_fault_as_data():
    sc = parse(FAULT, "t.toml")
    assert sc.fault is not None and sc.fault.what == "flush-conntrack"
    assert sc.fault.sides() == ("b",) and sc.fault.hits(1) and not sc.fault.hits(0)
    assert sc.fault.survives == {("open", "full-cone"): True}
    # the default "when" is the only moment the fault can happen
    sc = parse(GOOD + '[fault]\nwhat = "stop-brokers"\n', "t.toml")
    assert sc.fault is not None and sc.fault.when == "before-trials" and sc.fault.hits(5)


@pytest.mark.parametrize(
    "change, match",
    [
        (('what = "flush-conntrack"', 'what = "earthquake"'), "t.toml:11: fault.what: must be one of"),
        (('when = "mid-pipe"', 'when = "before-trials"'), "t.toml:12: fault.when: flush-conntrack happens"),
        (('sites = "b"', 'sites = "c"'), "t.toml:13: fault.sites: must be one of"),
        (("trials = [1]", "trials = [2]"), "t.toml:14: fault.trials: must be a list of trial"),
        (('"open/full-cone" = true', '"open/open" = true'), 'fault.survives."open/open": must be "A/B"'),
        (('"open/full-cone" = true', '"open/full-cone" = 1'), "must be true or false"),
        (('sites = "b"', 'sites = "b"\nduration = 2'), "t.toml:14: fault.duration: unknown key"),
    ],
)
def test_bad_faults_name_file_line_and_key(change, match):
    with pytest.raises(ScenarioError, match=match.replace("(", r"\(").replace("[", r"\[")):
        parse(FAULT.replace(*change), "t.toml")


def test_a_stopped_broker_leaves_the_theory_only_plugins_without_signal_messages():
    sc = parse(GOOD.replace('["direct", "reverse"]', '["direct", "reverse", "udp_punch"]'), "t.toml")
    broken = parse(
        GOOD.replace('["direct", "reverse"]', '["direct", "reverse", "udp_punch"]')
        + '[fault]\nwhat = "stop-brokers"\n',
        "t.toml",
    )
    # open callee: direct alone connects; symmetric callee <- full-cone caller: only signalling helps
    assert expect.expected_outcome(broken, sc.plugins, ("open", "full-cone")) is True
    assert expect.expected_outcome(sc, sc.plugins, ("symmetric", "full-cone")) is True
    assert expect.expected_outcome(broken, sc.plugins, ("symmetric", "full-cone")) is False
    assert theory.needs_signal("reverse") and not theory.needs_signal("direct")


def test_a_shipped_scenario_runs_by_name():
    from netsim.errors import ScenarioError
    from netsim.model.scenario import SHIPPED, resolve, shipped

    assert {"quick", "full-matrix", "impaired", "fault-stun"} <= set(shipped())
    assert resolve("quick") == SHIPPED / "quick.toml"
    assert resolve("scenarios/quick.toml").name == "quick.toml"  # a path stays a path
    with pytest.raises(ScenarioError, match="no such file, nor a shipped scenario"):
        resolve("nosuch")


def test_flake_is_a_rate():
    from netsim.errors import ScenarioError
    from netsim.model.scenario import parse

    base = 'name = "f"\nplugins = ["direct"]\n[matrix]\na = ["open"]\nb = ["open"]\n'
    assert parse("flake = 0.02\n" + base).flake == 0.02
    assert parse(base).flake == 0.0
    for bad in ("flake = 1.5", "flake = -0.1", 'flake = "a lot"', "flake = true"):
        with pytest.raises(ScenarioError, match="flake"):
            parse(bad + "\n" + base)


SITES = GOOD.replace(
    "[matrix]",
    """[sites.home]
profile = { mapping = "ADM", filtering = "APDF", allocation = "sequential", delta = 2 }
hairpin = true
port_range = [40000, 40999]

[sites.cgn-home]
profile = "full-cone"
behind = "symmetric"

[matrix]""",
).replace('b = ["full-cone"]', 'b = ["full-cone", "home", "cgn-home"]')


def test_sites_are_named_in_the_matrix_beside_presets():
    sc = parse(SITES, "t.toml")
    assert ("open", "home") in sc.cells and ("symmetric", "cgn-home") in sc.cells
    home = sc.site("home")
    assert home.nat.name == "home" and home.nat.udp.delta == 2 and home.hairpin
    assert home.port_range == (40000, 40999)
    assert sc.site("symmetric").nat.name == "symmetric"  # a preset needs no table
    # behind a carrier: the internet sees both NATs composed; the lab builds the carrier first
    assert sc.site("cgn-home").seen.udp.mapping.name == "ADDRESS_PORT_DEPENDENT"
    topo = runner.topology_for(sc)
    assert topo.site("b-cgn-home").upstream == "b-cgn-home-cgn"
    assert topo.site("b-cgn-home-cgn").hosts == 0
    # the theory reads a site's axes: no branch on names
    assert theory.expected("direct", sc.site("cgn-home").seen, "open") is False
    assert theory.expected("reverse", "open", sc.site("home").seen) is False


@pytest.mark.parametrize(
    "change, match",
    [
        ("delta = 2 }", r"t.toml:\d+: sites.home.profile: delta: port delta"),
        ('mapping = "ADM"', r"t.toml:\d+: sites.home.profile: mapping: 'XDM' is not one of"),
        ("hairpin = true", r"t.toml:\d+: sites.home.hairpin: must be bool"),
        ("port_range = [40000, 40999]", r"t.toml:\d+: sites.home.port_range: must be \[low, high\]"),
        ('behind = "symmetric"', r"t.toml:\d+: sites.cgn-home.behind: a site behind a carrier"),
        ('profile = "full-cone"', r"t.toml:\d+: sites.cgn-home.profile: unknown profile"),
    ],
)
def test_bad_sites_name_file_line_and_key(change, match):
    bad = {
        "delta = 2 }": "delta = 99999 }",
        'mapping = "ADM"': 'mapping = "XDM"',
        "hairpin = true": 'hairpin = "yes"',
        "port_range = [40000, 40999]": "port_range = [40000]",
        'behind = "symmetric"': 'behind = "open"',
        'profile = "full-cone"': 'profile = "fool-cone"',
    }[change]
    with pytest.raises(ScenarioError, match=match):
        parse(SITES.replace(change, bad), "t.toml")


def test_site_keys_are_checked():
    with pytest.raises(ScenarioError, match=r"t.toml:\d+: sites.home.colour: unknown key"):
        parse(SITES.replace("hairpin = true", "colour = 1"), "t.toml")
    with pytest.raises(ScenarioError, match="sites.home.pcp: must be bool"):
        parse(SITES.replace("hairpin = true", 'pcp = "yes"'), "t.toml")
    with pytest.raises(ScenarioError, match="portmap: must be one of start, demand, off"):
        parse(SITES.replace('name = "', 'portmap = "always"\nname = "'), "t.toml")
    with pytest.raises(ScenarioError, match=r"sites\.\w+\.ipv6: must be one of open6"):
        parse(SITES.replace("hairpin = true", 'ipv6 = "open"'), "t.toml")
    with pytest.raises(ScenarioError, match="sites.symmetric: is a preset's name"):
        parse(SITES.replace("[sites.home]", "[sites.symmetric]"), "t.toml")
    with pytest.raises(ScenarioError, match="unknown profile or site 'nowhere'"):
        parse(SITES.replace('"cgn-home"]', '"nowhere"]'), "t.toml")


def test_port_mapping_protocols_are_each_a_switch_and_reach_theory():
    """A site's ``upnp``, ``natpmp`` and ``pcp`` are independent; what the reach rules see depends
    on the scenario's ``portmap``: held from the start (``mapped``) or granted on request
    (``maps``); none through a carrier (a mapping at the inner router opens only the inner NAT)."""
    text = SITES.replace("hairpin = true", "pcp = true").replace(
        'behind = "symmetric"', 'behind = "symmetric"\nnatpmp = true'
    )
    sc = parse(text, "t.toml")
    home, cgn = sc.site("home"), sc.site("cgn-home")
    assert (home.pcp, home.natpmp, home.upnp) == (True, False, False)
    assert home.behaviours("start").mapped and home.behaviours("start").maps
    assert not home.behaviours("demand").mapped and home.behaviours("demand").maps
    assert not home.behaviours("off").maps
    assert not cgn.behaviours("start").mapped and not cgn.behaviours("start").maps
    topo = runner.topology_for(sc)
    assert topo.site(runner.site_b("home")).mapping_protocols == ("pcp",)
    demand = parse(text.replace('name = "', 'portmap = "demand"\nname = "'), "t.toml")
    assert demand.portmap == "demand"


def test_options_and_a_sweep_make_one_variant_per_value():
    text = GOOD.replace(
        'plugins = ["direct", "reverse"]', 'plugins = ["random_probe", "direct"]\nmode = "solo"'
    ) + (
        '\n[options.random_probe]\nsockets = 64\n\n[sweep]\nplugin = "random_probe"\noption = "budget"\n'
        "values = [8, 16]\n"
    )
    sc = parse(text, "t.toml")
    labels = [v.label for v in sc.variants()]
    assert labels == ["random_probe budget=8", "random_probe budget=16", "direct"]
    first = sc.variants()[0]
    assert first.options == {"random_probe": {"sockets": 64, "budget": 8}} and first.value == 8
    with pytest.raises(ScenarioError, match="options.turn: is not one of this scenario's plugins"):
        parse(text.replace("[options.random_probe]", "[options.turn]"), "t.toml")
    with pytest.raises(ScenarioError, match="sweep.values: must list 1..64 distinct values"):
        parse(text.replace("values = [8, 16]", "values = [8, 8]"), "t.toml")
    with pytest.raises(ScenarioError, match="sweep.colour: unknown key"):
        parse(text.replace('option = "budget"', 'option = "budget"\ncolour = 1'), "t.toml")


def test_random_probe_odds_judge_a_cell_only_when_near_certain():
    """Expected to connect at >= 99 %, to fail at <= 1 %, not judged in between."""
    base = {"sockets": 64, "low": 40000, "high": 42047}
    pools = ((1024, 65535), (40000, 42047))  # the caller's (a cone), the callee's (symmetric)
    for budget, want in ((8, 0.224), (128, 0.983), (1024, 1.0)):
        p = theory.odds(
            "random_probe", "symmetric", "port-restricted-cone", {**base, "budget": budget}, pools
        )
        assert p == pytest.approx(want, abs=0.001)
    # the deadline counts: 1024 probes at 1000 a second, of which those due GRACE before it
    opts = {**base, "budget": 1024, "rate": 1000}

    def chance(given, within=None):
        return theory.odds("random_probe", "symmetric", "port-restricted-cone", given, pools, within)

    assert chance(opts, 0.508) == pytest.approx(chance({**opts, "budget": 8}))
    assert chance(opts, 0.4) == 0.0
    assert chance(opts, 5.0) == chance(opts)
    assert theory.odds("random_probe", "symmetric", "symmetric", base, pools) is None
    assert theory.odds("direct", "open", "open", {}, pools) is None
