"""For CI suites: run a scenario and assert that every cell behaves as expected.

    from netsim.testing import assert_scenario

    def test_nat_matrix(tmp_path):
        assert_scenario("scenarios/quick.toml", tmp_path / "run")   # AssertionError lists bad cells

Expected outcomes come from the scenario's ``[expect]`` table, or else from ``netsim.model.theory``.
Needs root, like every lab run (mark such tests ``root``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from netsim import report
from netsim.control import runner
from netsim.model import scenario
from netsim.model.verdict import disagrees


def assert_scenario(path: str | Path, out: Path, *, trials: int | None = None) -> pd.DataFrame:
    """Run the scenario into ``out``, write its report, and fail on any cell that disagrees."""
    runner.run(scenario.load(path), out, trials=trials)
    report.write(out)
    return check(out)


def check(out: Path) -> pd.DataFrame:
    """The cells of a finished run; ``AssertionError`` on a cell that disagrees, or that has no
    trial to judge."""
    trials, _, meta = report.load(out)
    cells = report.cell_table(trials, report.flake_of(meta))
    verdict = report.judge(cells, trials)  # the report's verdict: one place decides
    if verdict.passed:
        return cells
    bad = cells[cells["agrees"].map(disagrees)]
    if not bad.empty:
        lines = [f"{r.a} <- {r.b}: success {r.success:.0%}, {r.agrees}" for r in bad.itertuples()]
        raise AssertionError(f"{len(bad)} cell(s) disagree with the expected outcome:\n" + "\n".join(lines))
    # An agent error is not judged (a crash is the agent's, not the cell's), but a cell none of
    # whose trials could be judged says nothing: that is a failure of the run, never a pass.
    blind = cells[cells["n"] == 0]
    if not blind.empty:
        first = trials[trials["outcome"] == "error"]["error"].iloc[0]
        raise AssertionError(
            f"{len(blind)} cell(s) have no trial that could be judged (every trial an agent error; "
            f"the first: {first})"
        )
    raise AssertionError(verdict.line)  # not reached while judge() and the lines above agree
