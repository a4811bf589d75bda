"""Every shipped scenario, in a short form (one trial per cell): each cell must agree with theory.

The long forms (``netsim run scenarios/full-matrix.toml`` with 10 trials per cell) are benchmarks;
these runs are what CI checks on every change.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from netsim.model import theory
from netsim.testing import assert_scenario
from warpgate.plugins import available
from warpgate.race import NEVER_STARTED

pytestmark = [pytest.mark.root, pytest.mark.lab]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
DIRECT_PATHS = ("direct", "reverse", "udp_punch", "tcp_punch", "random_probe", "portmap")
"""Every built-in plugin but the relay."""


def winners(cells):
    return {(r.a, r.b): r.winner for r in cells.itertuples()}


def test_quick_short(tmp_path):
    cells = assert_scenario(SCENARIOS / "quick.toml", tmp_path / "run", trials=1)
    assert len(cells) == 16 and (cells["success"] == 1).all()
    assert winners(cells)[("port-restricted-cone", "port-restricted-cone")] == "udp_punch"
    assert winners(cells)[("symmetric", "symmetric")] == "turn"
    assert (tmp_path / "run" / "report.html").exists()


def test_full_matrix_short(tmp_path):
    """udp_punch joins what direct and reverse cannot: firewalls, cones, cone <-> sequential
    symmetric by prediction, full and restricted cone <-> symmetric; every cell agrees."""
    cells = assert_scenario(SCENARIOS / "full-matrix.toml", tmp_path / "run", trials=1)
    assert len(cells) == 64
    won = winners(cells)
    # address-and-port-dependent filtering on both sides: only the punched path exists
    for pair in [("firewall", "firewall"), ("port-restricted-cone", "port-restricted-cone")]:
        assert won[pair] == "udp_punch", (pair, won[pair])
    # Elsewhere direct's or reverse's own UDP dial can ride through a hole udp_punch opened (the
    # callee punched towards the caller's address through an address-dependent filter, or towards a
    # predicted port that a sequential NAT also gives a fresh socket): the cell connects either way,
    # and test_solo_short shows that without udp_punch it does not.
    assert (cells["success"] == 1).all()  # 64 of 64: relayed where nothing else can join the pair
    assert cells["errors"].sum() == 0 and cells["payload_failed"].sum() == 0
    relayed = {(r.a, r.b) for r in cells.itertuples() if r.winner == "turn"}
    profiles = sorted({r.a for r in cells.itertuples()})
    only_relay = {
        (a, b) for a in profiles for b in profiles if not any(theory.expected(p, a, b) for p in DIRECT_PATHS)
    }
    # the theoretical minimum: two NATs that both pick a fresh port per destination, and a
    # symmetric NAT against a site whose UDP is blocked (docs/relaying.md says why)
    assert only_relay == {
        ("symmetric", "symmetric"),
        ("symmetric", "symmetric-sequential"),
        ("symmetric-sequential", "symmetric"),
        ("symmetric-sequential", "symmetric-sequential"),
        ("symmetric", "udp-blocked"),
        ("udp-blocked", "symmetric"),
    }
    assert relayed == only_relay
    listed = pd.read_csv(tmp_path / "run" / "relayed.csv")  # the report's "Relayed pairs"
    assert {(r.a, r.b) for r in listed.itertuples()} == only_relay
    assert set(listed["reason"]) == {"no direct rule"}
    trials = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    paths = {(t["a"], t["b"]): t["path"] for t in trials if t["type"] == "trial"}
    assert {cell for cell, path in paths.items() if path == "relayed"} == only_relay
    attempts = [t for t in trials if t["type"] == "attempt"]
    # the race policy: random_probe opens no socket and sends no probe where a cheaper rule
    # joins the pair, and the relay never starts where a likely plugin wins (observed or not)
    cheaper = ("direct", "udp_punch", "reverse", "tcp_punch", "portmap")
    probing = [t for t in attempts if t["plugin"] == "random_probe"]
    assert any(t["sockets"] > 0 for t in probing)  # it does run where it is needed
    for t in probing:
        if any(theory.expected(p, t["a"], t["b"]) for p in cheaper):
            assert t["sockets"] == 0 and t["probes"] == 0, t
    never = {(t["a"], t["b"]) for t in attempts if t["plugin"] == "turn" and t["reason"] == NEVER_STARTED}
    assert never >= {("open", "open"), ("full-cone", "firewall")}
    assert all(
        t["reason"] == "completed after the winner (pipe closed)"
        for t in trials
        if t["type"] == "attempt" and t["outcome"] == "connected" and not t["won"]
    )


def test_solo_short(tmp_path):
    """Each plugin alone across the 8 x 8 matrix: its own reach, cell by cell, as its rule says."""
    cells = assert_scenario(SCENARIOS / "solo.toml", tmp_path / "run", trials=1)
    assert set(cells["run"]) == set(available())
    assert cells["payload_failed"].sum() == 0 and cells["errors"].sum() == 0
    # random_probe joins a cone and a random-port NAT whatever the cone's filtering, both ways
    probed = {(r.a, r.b) for r in cells.itertuples() if r.run == "random_probe" and r.success == 1}
    cones = ("open", "full-cone", "restricted-cone", "port-restricted-cone", "firewall")
    assert probed == {(c, "symmetric") for c in cones} | {("symmetric", c) for c in cones}
    assert (cells[cells["run"] == "turn"]["success"] == 1).all()  # a relay joins every pair
    punch = {(r.a, r.b) for r in cells.itertuples() if r.run == "udp_punch" and r.success == 1}
    direct = {(r.a, r.b) for r in cells.itertuples() if r.run == "direct" and r.success == 1}
    reverse = {(r.a, r.b) for r in cells.itertuples() if r.run == "reverse" and r.success == 1}
    only_punch = punch - direct - reverse
    assert {("port-restricted-cone", "symmetric-sequential"), ("symmetric", "restricted-cone")} <= only_punch
    profiles = sorted({r.a for r in cells.itertuples()})
    gained = {
        (a, b)
        for a in profiles
        for b in profiles
        if theory.expected("udp_punch", a, b)
        and not theory.expected("direct", a, b)
        and not theory.expected("reverse", a, b)
    }
    assert only_punch == gained and len(gained) == 17  # the pairs the race gained from udp_punch


def test_cube(tmp_path):
    """The RFC 4787 cube: 27 routers built from mapping x filtering x allocation each
    validate as declared, and each plugin alone agrees with its reach rule on all 729 pairs (2 trials
    each, within the scenario's declared flake rate)."""
    cells = assert_scenario(SCENARIOS / "cube.toml", tmp_path / "run")
    assert len(cells) == 729 * 3
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    checks = meta["validation"]
    assert len(checks) == 54 * 2 and all(c["ok"] for c in checks)  # both sides' 27 routers, UDP + TCP
    assert {c["expected"] for c in checks if c["what"] == "udp"} >= {
        "ADM APDF sequential+2",
        "APDM EIF preserving",
        "EIM ADF random",
    }
    # every axis matters somewhere: each plugin connects some pairs and not others
    for plugin in ("direct", "reverse", "udp_punch"):
        rates = set(cells[cells["run"] == plugin]["success"])
        assert {0.0, 1.0} <= rates, plugin


def test_portmap_short(tmp_path):
    """symmetric <-> symmetric joins without a relay when the callee's router offers
    any one of PCP, NAT-PMP or UPnP IGD (each alone): the node maps at start and ``direct`` dials
    the mapping; ``reverse`` dials a caller's mapping; ``portmap`` does not apply."""
    cells = assert_scenario(SCENARIOS / "portmap.toml", tmp_path / "run", trials=1)
    ok = {(r.a, r.b, r.run) for r in cells.itertuples() if r.success == 1}
    for site in ("sym-pcp", "sym-natpmp", "sym-upnp"):
        assert (site, "symmetric", "direct") in ok
    assert not any(a == "symmetric" and b == "symmetric" for a, b, _ in ok)
    assert not any(run == "portmap" for _, _, run in ok)


def test_portmap_demand_short(tmp_path):
    """Nodes that map only when asked: ``portmap`` alone joins every pair in which one router
    grants mappings, the callee's (it maps on request) or the caller's (a reverse connect)."""
    cells = assert_scenario(SCENARIOS / "portmap-demand.toml", tmp_path / "run", trials=1)
    won = {(r.a, r.b) for r in cells.itertuples() if r.run == "portmap" and r.success == 1}
    assert won == {
        (a, b) for a in ("sym-pcp", "sym-natpmp", "sym-upnp", "symmetric") for b in ("symmetric", "sym-pcp")
    } - {("symmetric", "symmetric")}
    assert not (cells[cells["run"] != "portmap"]["success"] > 0).any()  # nothing else joins them


def test_tcp_punch_short(tmp_path):
    """tcp_punch joins firewall <-> firewall, the cones, UDP-blocked sites and a cone <->
    sequential symmetric NAT (by prediction); where its rule says no, it says so at once."""
    cells = assert_scenario(SCENARIOS / "tcp-punch.toml", tmp_path / "run", trials=1)
    ok = {(r.a, r.b) for r in cells.itertuples() if r.success == 1}
    for pair in [
        ("firewall", "firewall"),
        ("port-restricted-cone", "port-restricted-cone"),
        ("restricted-cone", "port-restricted-cone"),
        ("udp-blocked", "port-restricted-cone"),
        ("udp-blocked", "udp-blocked"),
        ("symmetric-sequential", "port-restricted-cone"),
        ("port-restricted-cone", "symmetric-sequential"),
    ]:
        assert pair in ok, pair
    assert ("port-restricted-cone", "symmetric") not in ok
    attempts = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    refused = [
        a for a in attempts if a["type"] == "attempt" and (a["a"], a["b"]) == ("symmetric", "symmetric")
    ]
    assert refused and all(a["outcome"] == "not_applicable" and "RFC 4787" in a["reason"] for a in refused)
    assert all(a["end_ms"] < 50 for a in refused)  # at once, not at the deadline


def test_random_probe_short(tmp_path):
    """random_probe joins a port-restricted cone and a symmetric NAT, either side calling."""
    cells = assert_scenario(SCENARIOS / "random-probe.toml", tmp_path / "run", trials=1)
    ok = {(r.a, r.b) for r in cells.itertuples() if r.success == 1}
    assert ok == {("symmetric", "port-restricted-cone"), ("port-restricted-cone", "symmetric")}


def test_birthday_short(tmp_path):
    """The birthday sweep, 12 trials per budget: each point's 99.9 % Wilson interval holds the
    model's 1 - (1 - N/R)^k (the long form, 400 trials a point, is the benchmark: within 5 pp)."""
    from netsim import report
    from netsim.model.stats import wilson

    assert_scenario(SCENARIOS / "birthday.toml", tmp_path / "run", trials=12)
    trials, _, _ = report.load(tmp_path / "run")
    points = report.sweep_table(trials)
    assert list(points["value"]) == [8, 16, 32, 64, 128] and (points["n"] == 12).all()
    for p in points.itertuples():
        lo, hi = wilson(round(p.success * p.n), p.n, z=3.29)
        assert lo <= p.odds <= hi, (p.value, p.success, p.odds)
    assert (tmp_path / "run" / "figures" / "sweep.png").exists()


def test_dual_stack_short(tmp_path):
    """Two firewall6 hosts join over IPv6 by punching, and through a pinhole (PCP) when
    the callee's router opens one; symmetric + firewall6 <->
    symmetric + firewall6 joins over IPv6 without a relay (none races); an IPv4-only peer and a
    dual-stack one still join; a site whose IPv6 goes nowhere (blocked6) joins over IPv4 as fast
    as its IPv4-only twin, never waiting for IPv6."""
    run = tmp_path / "run"
    cells = assert_scenario(SCENARIOS / "dual-stack.toml", run, trials=1)
    trials = {
        (r["a"], r["b"]): r
        for r in map(json.loads, (run / "records.jsonl").read_text().splitlines())
        if r["type"] == "trial"
    }

    def joined(a: str, b: str) -> tuple[str | None, str | None]:
        t = trials[(a, b)]
        assert t["outcome"] == "connected", (a, b, t["error"])
        return t["winner"], t["family"]

    assert joined("home", "home") == ("udp_punch", "ipv6")  # firewall6 <-> firewall6, IPv6 preferred
    assert joined("mobile", "mobile") == ("udp_punch", "ipv6")  # symmetric NAT44 both sides
    assert joined("mobile", "home") == ("udp_punch", "ipv6")
    assert joined("eif", "mobile") == ("direct", "ipv6")  # an endpoint-independent firewall
    for pair in [("port-restricted-cone", "home"), ("home", "port-restricted-cone")]:
        assert joined(*pair)[1] == "ipv4"  # IPv4-only <-> dual stack
    for pair in [("broken", "home"), ("home", "broken"), ("broken", "port-restricted-cone")]:
        assert joined(*pair)[1] == "ipv4"
        # no attempt waited for the blackholed IPv6 path: the race ended well inside its
        # 1 s punch silence, let alone its 3 s timeout; nor did the node's start wait out the
        # 1.5 s discovery deadline for an IPv6 STUN answer that never comes
        assert trials[pair]["ttc_ms"] < 1000, pair
        broken = "a" if pair[0] == "broken" else "b"
        assert trials[pair][f"{broken}_start_ms"] < 1000, pair
    families = {(r.a, r.b): r.rescued_by_ipv6 for r in pd.read_csv(run / "families.csv").itertuples()}
    assert {pair for pair, rescued in families.items() if rescued} == {
        (a, b) for a in ("home", "mobile", "eif") for b in ("home", "mobile", "eif")
    } - {("home", "home")}
    # a pinhole: a firewall6 callee reached by a dial over IPv6, which its firewall drops otherwise
    assert (
        joined("pinhole", "home") == ("direct", "ipv6") and trials[("pinhole", "home")]["a_pinhole"] == "pcp"
    )
    assert len(cells) == 49


def test_dual_stack_solo_short(tmp_path):
    """Each plugin alone: udp_punch and tcp_punch cross two stateful IPv6 firewalls (symmetric
    NAT44 on both sides: IPv4 cannot), direct reaches an endpoint-independent one; nothing joins
    a peer without IPv6 to one behind a symmetric NAT."""
    cells = assert_scenario(SCENARIOS / "dual-stack-solo.toml", tmp_path / "run", trials=1)
    ok = {(r.a, r.b, r.run) for r in cells.itertuples() if r.success == 1}
    for plugin in ("udp_punch", "tcp_punch"):
        assert ("mobile", "mobile", plugin) in ok
    assert ("eif", "mobile", "direct") in ok and ("mobile", "mobile", "direct") not in ok
    assert not any("symmetric" in (a, b) for a, b, _ in ok)
