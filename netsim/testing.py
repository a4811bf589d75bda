"""For CI suites: run a scenario and assert that every cell behaves as expected.

    from netsim.testing import assert_scenario

    def test_nat_matrix(tmp_path):
        assert_scenario("scenarios/quick.toml", tmp_path / "run")   # AssertionError lists bad cells

Expected outcomes come from the scenario's ``[expect]`` table, or else from ``netsim.theory``.
Needs root, like every lab run (mark such tests ``root``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from netsim import report, runner, scenario


def assert_scenario(path: str | Path, out: Path, *, trials: int | None = None) -> pd.DataFrame:
    """Run the scenario into ``out``, write its report, and fail on any cell that disagrees."""
    runner.run(scenario.load(path), out, trials=trials)
    report.write(out)
    trials, _, meta = report.load(out)
    cells = report.cell_table(trials, report.flake_of(meta))
    bad = cells[cells["agrees"].str.startswith("MISMATCH")]
    if not bad.empty:
        lines = [f"{r.a} <- {r.b}: success {r.success:.0%}, {r.agrees}" for r in bad.itertuples()]
        raise AssertionError(f"{len(bad)} cell(s) disagree with the expected outcome:\n" + "\n".join(lines))
    return cells
