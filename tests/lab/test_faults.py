"""The shipped impaired and fault scenarios in a short form: each ends with every cell as
expected, and each fault has the effect its scenario promises."""

import json
from pathlib import Path

import pytest

from netsim.testing import assert_scenario

pytestmark = [pytest.mark.root, pytest.mark.lab]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def records(run, kind):
    lines = (run / "records.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def trials(run):
    return records(run, "trial")


def attempts(run):
    return records(run, "attempt")


def test_impaired_short(tmp_path):
    """30 +- 5 ms each way and 2 % loss on every WAN: the routers are validated before the wire
    is impaired, and every cell agrees with the theory."""
    run = tmp_path / "run"
    cells = assert_scenario(SCENARIOS / "impaired.toml", run, trials=1)
    assert len(cells) == 16 and cells["errors"].sum() == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["validated"] == "before impairments" and meta["impairments"]
    # the trials ran on the impaired wire: no connection in under two 30 ms one-way trips
    assert min(t["ttc_ms"] for t in trials(run) if t["ttc_ms"]) > 60


def test_broker_down_direct_still_works_and_signalling_fails_fast(tmp_path):
    run = tmp_path / "run"
    cells = assert_scenario(SCENARIOS / "fault-broker.toml", run, trials=1)
    assert set(cells[cells["success"] == 1]["winner"]) == {"direct"}
    assert (cells["success"] == 0).any()
    for a in attempts(run):
        if a["plugin"] != "direct":
            # known at once (our links tried the brokers the peer lists): not even started
            assert a["outcome"] == "not_applicable" and "no signal broker reachable" in a["reason"], a
            assert a["end_ms"] < 50, a
    assert all(t["total_ms"] < (2.0 + 5.0) * 1000 for t in trials(run))


def test_stun_down_nodes_start_and_public_sites_still_connect(tmp_path):
    """coturn is the lab's STUN and TURN server: the relay fails too, at once and saying why."""
    run = tmp_path / "run"
    assert_scenario(SCENARIOS / "fault-stun.toml", run, trials=1)
    for t in trials(run):
        assert t["b_start_ms"] is not None and t["b_start_ms"] < 3000, t  # start-up never stalls
    relay = [a for a in attempts(run) if a["plugin"] == "turn" and a["outcome"] == "failed"]
    cells = {(a["a"], a["b"]) for a in relay}
    assert {("symmetric", "symmetric"), ("full-cone", "port-restricted-cone")} <= cells
    for a in relay:
        assert "turn: server unreachable" in a["reason"] and a["end_ms"] - a["start_ms"] < 1500, a


def test_conntrack_flush_mid_pipe(tmp_path):
    run = tmp_path / "run"
    cells = assert_scenario(SCENARIOS / "fault-conntrack.toml", run, trials=1)
    survived = {(r.a, r.b): r.survived for r in cells.itertuples()}
    assert survived[("open", "port-restricted-cone")] == 1.0 and survived[("open", "symmetric")] == 0.0


def test_link_flap_mid_pipe_every_pipe_survives(tmp_path):
    run = tmp_path / "run"
    cells = assert_scenario(SCENARIOS / "fault-link-flap.toml", run, trials=1)
    assert (cells["survived"] == 1.0).all()


def test_a_killed_agent_is_an_error_and_the_run_goes_on(tmp_path):
    run = tmp_path / "run"
    cells = assert_scenario(SCENARIOS / "fault-agent-crash.toml", run, trials=2)
    assert (cells["errors"] == 1).all() and (cells["trials"] == 2).all()
    errors = [t for t in trials(run) if t["outcome"] == "error"]
    assert {t["trial"] for t in errors} == {0} and all(t["error_class"] == "AgentDied" for t in errors)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["agent_restarts"] == len(cells)
