"""The reflection bounds, sans-I/O: per request, per destination across requests, per sweep."""

import pytest

from warpgate.plugins import random_probe
from warpgate.proto import reflection
from warpgate.proto.reflection import FACTOR, PER_HOST, PER_PREFIX, PROVEN_TTL, SWEEP, WINDOW, Reflection


def test_a_request_buys_three_times_its_bytes():
    r = Reflection()
    a = r.allowance(500)
    assert r.spend(a, "192.0.2.1", 1000, 0.0) and r.spend(a, "192.0.2.1", 500, 0.0)
    assert not r.spend(a, "192.0.2.1", 1, 0.0)
    assert (a.sent, a.refused, r.refused["sends"]) == (FACTOR * 500, 1, 1)


def test_many_requests_share_one_budget_per_host_and_per_prefix():
    r = Reflection()
    big = [r.allowance(PER_HOST) for _ in range(8)]
    assert r.spend(big[0], "192.0.2.1", PER_HOST, 0.0)
    assert not r.spend(big[1], "192.0.2.1", 1, 0.0)  # that host's minute is spent, whoever asks
    spent = PER_HOST
    for i, a in enumerate(big[1:4], start=2):  # its neighbours share the /24's
        assert r.spend(a, f"192.0.2.{i}", PER_HOST, 0.0)
        spent += PER_HOST
    assert spent == PER_PREFIX and not r.spend(big[4], "192.0.2.9", 1, 0.0)
    assert r.spend(big[4], "198.51.100.1", 1, 0.0)  # another site
    assert r.spend(big[5], "192.0.2.1", PER_HOST, WINDOW)  # a new window


def test_an_ipv6_site_is_its_48():
    assert reflection.prefix("2001:db8:1:2::5") == reflection.prefix("2001:db8:1:ffff::1")
    assert reflection.prefix("2001:db8:1:2::5") != reflection.prefix("2001:db8:2::1")
    assert reflection.prefix("192.0.2.200") == "192.0.2.0/24"


def test_a_proven_host_is_not_bounded_until_its_proof_expires():
    r = Reflection()
    r.prove("192.0.2.1", 0.0)
    a = r.allowance(0)
    assert r.spend(a, "192.0.2.1", 10 * PER_HOST, 1.0)
    assert r.sweep("192.0.2.1", 5000, 1.0).left == 5000 and r.sweep("192.0.2.1", 5000, 2.0).left == 5000
    assert not r.spend(a, "192.0.2.1", 1, PROVEN_TTL + 1)


def test_one_sweep_per_target_a_minute():
    r = Reflection()
    first = r.sweep("192.0.2.1", 65535, 0.0)
    assert first.left == SWEEP
    assert r.sweep("192.0.2.1", 10, WINDOW - 1).left == 0 and r.refused["sweeps"] == 1
    assert r.sweep("192.0.2.2", 10, 1.0).left == 10
    assert r.sweep("192.0.2.1", 10, WINDOW).left == 10
    assert sum(first.take() for _ in range(SWEEP + 5)) == SWEEP


def test_tables_stay_bounded(monkeypatch):
    monkeypatch.setattr(reflection, "MAX_TRACKED", 4)
    r = Reflection()
    for i in range(20):
        r.spend(r.allowance(10), f"10.0.{i}.1", 1, 0.0)
        r.sweep(f"10.0.{i}.1", 1, 0.0)
        r.prove(f"10.0.{i}.1", 0.0)
    assert max(len(r._spent), len(r._sweeps), len(r._proven)) <= 4


@pytest.mark.parametrize(("seconds", "syns"), [(0.5, 1), (1.5, 2), (3.5, 3), (10.0, 4), (127.0, 7)])
def test_a_connects_cost_is_its_syn_retransmissions(seconds, syns):
    assert reflection.syn_cost(seconds) == syns * reflection.SYN_BYTES


def test_a_peers_probe_options_only_lower_ours():
    asked = {"sockets": 1024, "budget": 65535, "rate": 20000, "low": 1, "high": 65535}
    assert random_probe.options(random_probe.ours(asked)) == random_probe.DEFAULTS
    fewer = {"sockets": 8, "budget": 64, "rate": 100, "low": 40000, "high": 40100}
    assert random_probe.options(random_probe.ours(fewer)) == fewer
