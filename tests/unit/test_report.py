"""The cell verdicts: agent errors counted apart, payload failures not counted as connections,
and a mid-pipe fault's expected survival checked."""

import pandas as pd

from netsim.report import cell_table


def trial(outcome, *, cell=("open", "open"), expected=True, survived=None, survives=None, winner="direct"):
    return {
        "a": cell[0],
        "b": cell[1],
        "run": "direct,reverse",
        "outcome": outcome,
        "expected": expected,
        "winner": winner if outcome == "connected" else None,
        "ttc_ms": 3.0 if outcome == "connected" else None,
        "overhead_ms": 1.0,
        "survived": survived,
        "survives_expected": survives,
    }


def verdicts(rows):
    cells = cell_table(pd.DataFrame(rows))
    return {(r.a, r.b): r for r in cells.itertuples()}


def test_agent_errors_are_counted_apart_from_failures():
    cell = verdicts([trial("error"), trial("connected"), trial("connected")])[("open", "open")]
    assert (cell.trials, cell.errors, cell.success, cell.agrees) == (3, 1, 1.0, "ok")
    only_errors = verdicts([trial("error")])[("open", "open")]
    assert only_errors.agrees.startswith("no data")


def test_a_payload_failure_is_not_a_connection():
    cell = verdicts([trial("connected"), trial("payload_failed")])[("open", "open")]
    assert cell.success == 0.5 and cell.payload_failed == 1
    assert cell.agrees == "MISMATCH (expected to connect)"


def test_survival_after_a_mid_pipe_fault_is_checked():
    rows = [
        trial("connected", survived=True, survives=True),
        trial("connected", cell=("open", "symmetric"), survived=True, survives=False),
    ]
    cells = verdicts(rows)
    assert cells[("open", "open")].agrees == "ok"
    assert cells[("open", "symmetric")].agrees == "MISMATCH (pipe expected to break under the fault)"
