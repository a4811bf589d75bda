"""Every shipped scenario, in a short form (one trial per cell): each cell must agree with theory.

The long forms (``netsim run scenarios/full-matrix.toml`` with 10 trials per cell) are benchmarks;
these runs are what CI checks on every change.
"""

from pathlib import Path

import pytest

from netsim.testing import assert_scenario

pytestmark = [pytest.mark.root, pytest.mark.lab]

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def winners(cells):
    return {(r.a, r.b): r.winner for r in cells.itertuples()}


def test_quick_short(tmp_path):
    cells = assert_scenario(SCENARIOS / "quick.toml", tmp_path / "run", trials=1)
    assert len(cells) == 16
    assert winners(cells)[("port-restricted-cone", "port-restricted-cone")] == "udp_punch"
    assert (tmp_path / "run" / "report.html").exists()


def test_full_matrix_short(tmp_path):
    """udp_punch joins what direct and reverse cannot: firewalls, cones, cone <-> sequential
    symmetric by prediction, full and restricted cone <-> symmetric; every cell agrees."""
    cells = assert_scenario(SCENARIOS / "full-matrix.toml", tmp_path / "run", trials=1)
    assert len(cells) == 64
    won = winners(cells)
    for pair in [
        ("firewall", "firewall"),
        ("port-restricted-cone", "port-restricted-cone"),
        ("restricted-cone", "port-restricted-cone"),
        ("port-restricted-cone", "symmetric-sequential"),
        ("symmetric-sequential", "restricted-cone"),
        ("symmetric", "restricted-cone"),
    ]:
        assert won[pair] == "udp_punch", (pair, won[pair])
    ok = {(r.a, r.b) for r in cells.itertuples() if r.success == 1}
    assert ("symmetric", "symmetric") not in ok and ("port-restricted-cone", "symmetric") not in ok
    assert len(ok) >= 45


def test_solo_short(tmp_path):
    """Each plugin alone across the 8 x 8 matrix: its own reach, cell by cell, as its rule says."""
    cells = assert_scenario(SCENARIOS / "solo.toml", tmp_path / "run", trials=1)
    assert set(cells["run"]) == {"direct", "reverse", "udp_punch"}
