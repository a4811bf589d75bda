"""``netsim compare`` on recorded runs (synthetic records, no lab): identical runs pass; a broken
plugin, a new disagreement with theory and a missing cell fail, naming what; the interval keeps one
lost (or relayed) trial in ten from being a regression; the JUnit output reads back with a JUnit parser."""

import json
import subprocess
import sys

from junitparser import Failure, JUnitXml

from netsim.model.stats import Thresholds, wilson
from netsim.report import compare

CELLS = [("open", "open"), ("open", "port-restricted-cone")]


def write_run(
    path,
    *,
    broken=(),
    lose=0,
    drop_cell=None,
    expected=True,
    n=10,
    relayed=(),
    direct_rule=None,
    relay_trials=None,
    late_direct=False,
):
    path.mkdir()
    lines = []
    for a, b in CELLS:
        if (a, b) == drop_cell:
            continue
        for i in range(n):
            ok = (a, b) not in broken and not (i < lose and (a, b) == CELLS[0])
            lines.append(
                {
                    "type": "trial",
                    "a": a,
                    "b": b,
                    "run": "",
                    "trial": i,
                    "outcome": "connected" if ok else "failed",
                    "expected": expected,
                    "winner": "direct" if ok else None,
                    "ttc_ms": 3.0 if ok else None,
                    "overhead_ms": 1.0,
                    "path": "relayed"
                    if (a, b) in relayed and (relay_trials is None or i < relay_trials)
                    else "direct",
                    "expected_direct": direct_rule,
                }
            )
    if late_direct:  # in each relayed trial a direct plugin connected after the relay had won
        key = ("a", "b", "run", "trial")
        lines += [
            {
                "type": "attempt",
                **{k: t[k] for k in key},
                "plugin": "random_probe",
                "outcome": "connected",
                "won": False,
                "path": "direct",
                "start_ms": 0.1,
                "end_ms": 1100.0,
            }
            for t in list(lines)
            if t["path"] == "relayed"
        ]
    (path / "records.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (path / "meta.json").write_text(json.dumps({"scenario": {"name": "t"}}))
    return path


def kinds(problems):
    return sorted((p.cell, p.kind) for p in problems)


def test_a_pair_newly_relayed_against_a_direct_rule_is_a_regression(tmp_path):
    base = write_run(tmp_path / "base", direct_rule=True)
    _, problems = compare(base, write_run(tmp_path / "relayed", relayed=[CELLS[1]], direct_rule=True))
    assert kinds(problems) == [("open/port-restricted-cone", "relayed_against_rule")]
    # one trial in ten, where the direct plugin wins by odds: inside the base's interval
    _, problems = compare(
        base, write_run(tmp_path / "once", relayed=[CELLS[1]], direct_rule=True, relay_trials=1)
    )
    assert problems == []
    _, problems = compare(
        base, write_run(tmp_path / "thrice", relayed=[CELLS[1]], direct_rule=True, relay_trials=4)
    )
    assert kinds(problems) == [("open/port-restricted-cone", "relayed_against_rule")]
    # the same, but in each relayed trial the direct plugin connected after the relay's head start:
    # its rule held (a chance that came late), no regression
    late = write_run(
        tmp_path / "late", relayed=[CELLS[1]], direct_rule=True, relay_trials=4, late_direct=True
    )
    _, problems = compare(base, late)
    assert problems == []
    # relayed where no direct rule exists: the theoretical minimum, not a regression
    base = write_run(tmp_path / "base-norule", direct_rule=False)
    _, problems = compare(base, write_run(tmp_path / "norule", relayed=[CELLS[1]], direct_rule=False))
    assert problems == []


def test_identical_runs_pass(tmp_path):
    _, problems = compare(write_run(tmp_path / "a"), write_run(tmp_path / "b"))
    assert problems == []


def test_one_lost_trial_in_ten_is_noise_but_a_broken_plugin_is_not(tmp_path):
    base = write_run(tmp_path / "base")
    _, noise = compare(base, write_run(tmp_path / "one-lost", lose=1))
    assert [p.kind for p in noise] == ["new_disagreement"]  # the cell expected 10 of 10; the rate held
    _, broken = compare(base, write_run(tmp_path / "broken", broken=[CELLS[1]]))
    drop = [p for p in broken if p.kind == "success_drop"]
    assert [p.cell for p in drop] == ["open/port-restricted-cone"]
    assert "winner direct -> none" in drop[0].detail and "100%" in drop[0].detail


def test_a_missing_cell_fails(tmp_path):
    _, problems = compare(write_run(tmp_path / "a"), write_run(tmp_path / "b", drop_cell=CELLS[1]))
    assert kinds(problems) == [("open/port-restricted-cone", "missing")]


def test_the_cli_writes_json_and_junit_that_read_back(tmp_path):
    base, broken = write_run(tmp_path / "base"), write_run(tmp_path / "broken", broken=[CELLS[0]])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "netsim",
            "compare",
            str(base),
            str(broken),
            "--json",
            str(tmp_path / "c.json"),
            "--junit",
            str(tmp_path / "c.xml"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "[success_drop]" in out.stdout
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["thresholds"] == vars(Thresholds()) and {r["kind"] for r in doc["regressions"]} == {
        "success_drop",
        "new_disagreement",
    }
    cases = {c.name: c for suite in JUnitXml.fromfile(str(tmp_path / "c.xml")) for c in suite}
    assert set(cases) == {"open/open", "open/port-restricted-cone"}
    assert any(isinstance(r, Failure) for r in cases["open/open"].result)
    assert not cases["open/port-restricted-cone"].result  # passed
    same = subprocess.run(
        [sys.executable, "-m", "netsim", "compare", str(base), str(base)], capture_output=True
    )
    assert same.returncode == 0


def test_wilson_interval():
    lo, hi = wilson(10, 10)
    assert 0.69 < lo < 0.73 and hi == 1.0
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.31
    lo, hi = wilson(50, 100)
    assert 0.40 < lo < 0.41 and 0.59 < hi < 0.60


def test_side_by_side_report_of_two_runs(tmp_path):
    """Two engine versions in one report: each cell's success per run with n and its interval."""
    from netsim.report import side_by_side

    old, new = write_run(tmp_path / "v1"), write_run(tmp_path / "v2", broken=[CELLS[1]])
    page = side_by_side([old, new], tmp_path / "both")
    assert page.exists() and page.read_text().count("data:image/svg+xml") == 2
    import pandas as pd

    table = pd.read_csv(tmp_path / "both" / "side-by-side.csv")
    row = table[table["b"] == "port-restricted-cone"].iloc[0]
    assert row["v1: success"].startswith("100% [") and row["v1: success"].endswith("n=10")
    assert row["v2: success"].startswith("0% [") and row["v1: winner"] == "direct"
    for fmt in ("png", "svg", "pdf"):
        assert (tmp_path / "both" / "figures" / f"success-side-by-side.{fmt}").stat().st_size > 0
    out = subprocess.run(
        [sys.executable, "-m", "netsim", "report", str(old), str(new)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "--out" in out.stderr  # several runs need somewhere to go
