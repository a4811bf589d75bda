"""The cell verdicts: agent errors counted apart, payload failures not counted as connections,
and a mid-pipe fault's expected survival checked."""

import pandas as pd
import pytest

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


def solo_run(tmp_path):
    """A solo run: direct alone always connects, reverse alone never, 4 trials each."""
    import json

    lines = []
    for plugin, ok in (("direct", True), ("reverse", False)):
        for i in range(4):
            key = {"a": "open", "b": "full-cone", "run": plugin, "trial": i}
            lines.append(
                {
                    "type": "trial",
                    **key,
                    "outcome": "connected" if ok else "failed",
                    "expected": ok,
                    "winner": plugin if ok else None,
                    "ttc_ms": 2.0 + i if ok else None,
                    "overhead_ms": 1.0,
                    "transport": "tcp" if ok else None,
                    "wire_b_signal_bytes": 100 * (i + 1) if ok else 5000,
                    "wire_b_attempts_bytes": 700,
                    "wire_b_path": "direct" if ok else None,
                }
            )
            lines.append(
                {
                    "type": "attempt",
                    **key,
                    "plugin": plugin,
                    "outcome": "connected" if ok else "failed",
                    "start_ms": 0.0,
                    "end_ms": 2.0 + i,
                    "reason": None if ok else "no answer",
                }
            )
    (tmp_path / "records.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (tmp_path / "meta.json").write_text(json.dumps({"scenario": {"name": "solo-test", "mode": "solo"}}))
    return tmp_path


def test_solo_reach_is_the_share_of_the_plugins_own_runs(tmp_path):
    """A plugin that always connects alone shows 100 %, not 1/N of the cell's runs."""
    from netsim.report import load, plugin_table

    trials, attempts, _ = load(solo_run(tmp_path))
    reach = {r.plugin: r.connected for r in plugin_table(attempts, trials).itertuples()}
    assert reach == {"direct": 1.0, "reverse": 0.0}


def test_every_figure_renders_in_three_formats_from_a_recorded_run(tmp_path):
    from netsim.report import write

    run = solo_run(tmp_path)
    write(run)
    figs = run / "figures"
    names = {p.stem for p in figs.glob("*.png")}
    assert {
        "success-direct",
        "winners-direct",
        "plugin-direct",
        "plugin-reverse",
        "time-to-connect-cdf",
        "time-to-connect-cells",
        "wire-cost",
    } <= names
    for name in names:
        assert (figs / f"{name}.svg").read_bytes().lstrip().startswith(b"<?xml")
        assert (figs / f"{name}.pdf").read_bytes().startswith(b"%PDF")
        png = (figs / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    cells = pd.read_csv(run / "cells.csv")
    direct = cells[cells["run"] == "direct"].iloc[0]
    assert direct["n"] == 4 and direct["success"] == 1.0 and 0.5 < direct["success_low"] < 0.52
    html = (run / "report.html").read_text()
    assert html.count("data:image/svg+xml;base64,") == len(names)


def test_a_declared_flake_rate_tolerates_a_loss_but_not_twenty():
    """Under 2 % loss: 1 lost trial of 100 agrees with theory at a declared flake rate of 2 %,
    20 lost do not; with no flake rate declared, 1 is already a disagreement."""
    from netsim.model.stats import within_flake

    one = [trial("connected")] * 99 + [trial("failed")]
    twenty = [trial("connected")] * 80 + [trial("failed")] * 20
    assert cell_table(pd.DataFrame(one), flake=0.02).iloc[0]["agrees"] == "ok"
    assert cell_table(pd.DataFrame(twenty), flake=0.02).iloc[0]["agrees"].startswith("MISMATCH")
    assert cell_table(pd.DataFrame(one)).iloc[0]["agrees"].startswith("MISMATCH")
    assert within_flake(0, 10, 0.0) and not within_flake(1, 10, 0.0)
    assert within_flake(2, 100, 0.02) and not within_flake(8, 100, 0.02)


def test_wire_cost_per_plugin_in_solo_mode(tmp_path):
    from netsim.report import load, wire_per_run

    trials, _, _ = load(solo_run(tmp_path))
    wire = wire_per_run(trials)
    assert wire is not None
    assert wire.loc["direct", "signal"] == 250.0 and wire.loc["reverse", "signal"] == 5000.0
    assert wire.loc["direct", "attempts"] == 700.0


def test_a_run_whose_cells_cannot_be_judged_fails_the_check(tmp_path):
    """CI must not pass a run in which every trial of a cell was an agent error (a broken agent
    made the whole cube "agree" once: errors are not judged, so nothing disagreed)."""
    import json

    import pytest

    from netsim.testing import check

    run = solo_run(tmp_path)
    assert len(check(run)) == 2  # the good run passes
    lines = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    for rec in lines:
        if rec["type"] == "trial" and rec["run"] == "reverse":
            rec |= {"outcome": "error", "error_class": "NameError", "error": "name 'protocol' is not defined"}
    (run / "records.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    with pytest.raises(AssertionError, match="1 cell\\(s\\) have no trial that could be judged.*protocol"):
        check(run)


def test_race_reach_counts_late_completions(tmp_path):
    """In a race that observed its losers, a plugin that completed after the winner connected
    (it would have): its reach map shows it; one cancelled while pending did not."""
    import json

    from netsim.report import figures, load, plugin_table

    lines = []
    for i in range(4):
        key = {"a": "open", "b": "full-cone", "run": "direct,reverse,turn", "trial": i, "mode": "race"}
        lines.append(
            {
                "type": "trial",
                **key,
                "outcome": "connected",
                "expected": True,
                "winner": "direct",
                "ttc_ms": 2.0,
                "overhead_ms": 1.0,
                "transport": "tcp",
                "observe": 0.5,
            }
        )
        late = i < 3  # reverse completed after the winner in 3 trials of 4, pending in the last
        for plugin, outcome, won, reason in (
            ("direct", "connected", True, ""),
            (
                "reverse",
                "connected" if late else "cancelled",
                False,
                "completed after the winner (pipe closed)" if late else "another plugin won",
            ),
            ("turn", "cancelled", False, "another plugin won"),
        ):
            lines.append(
                {
                    "type": "attempt",
                    **key,
                    "plugin": plugin,
                    "outcome": outcome,
                    "won": won,
                    "start_ms": 0.0,
                    "end_ms": 3.0,
                    "reason": reason,
                }
            )
    (tmp_path / "records.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (tmp_path / "meta.json").write_text(json.dumps({"scenario": {"name": "race-test", "mode": "race"}}))
    trials, attempts, _ = load(tmp_path)
    reach = {r.plugin: r.connected for r in plugin_table(attempts, trials).itertuples()}
    assert reach == {"direct": 1.0, "reverse": 0.75, "turn": 0.0}
    from netsim.report import cell_table

    figs = figures(cell_table(trials), plugin_table(attempts, trials), trials)
    assert "plugin-reverse" in figs


def test_a_relay_that_beat_a_late_direct_plugin_is_told_from_a_regression():
    """A race whose relay won a trial in which a direct plugin connected after it (random_probe's
    hit came after the relay's head start) is not a regression; one whose direct plugins all
    failed is."""
    from netsim.report import LATE_DIRECT, relayed_table

    trials, attempts = [], []
    for cell, late in ((("symmetric", "port-restricted-cone"), True), (("symmetric", "firewall"), False)):
        for i, path in enumerate(("direct", "relayed")):
            key = {"a": cell[0], "b": cell[1], "run": "random_probe,turn", "trial": i}
            trials.append({**trial("connected", cell=cell), **key, "path": path, "expected_direct": True})
            late_probe = path == "relayed" and late
            attempts.append(
                {
                    **key,
                    "plugin": "random_probe",
                    "won": path == "direct",
                    "outcome": "connected" if path == "direct" or late_probe else "failed",
                    "path": "direct" if path == "direct" or late_probe else "",
                }
            )
    t, a = pd.DataFrame(trials), pd.DataFrame(attempts)
    table = relayed_table(cell_table(t), t, a)
    reasons = {(r.a, r.b): r.reason for r in table.itertuples()}
    assert reasons == {
        ("symmetric", "port-restricted-cone"): LATE_DIRECT,
        ("symmetric", "firewall"): "against a direct rule",
    }


def _records(run, trials, meta):
    import json

    run.mkdir(parents=True, exist_ok=True)
    (run / "records.jsonl").write_text("".join(json.dumps({"type": "trial", **t}) + "\n" for t in trials))
    (run / "meta.json").write_text(json.dumps(meta))
    return run


def _matrix(a, b, *, fail=(), winner="direct", trials=3):
    """Trials of every cell of A x B; the cells in ``fail`` fail though theory says they connect."""
    rows = []
    for x in a:
        for y in b:
            for i in range(trials):
                ok = (x, y) not in fail
                rows.append(
                    {
                        **trial("connected" if ok else "failed", cell=(x, y), winner=winner),
                        "trial": i,
                        "run": "direct,reverse",
                    }
                )
    return rows


def test_the_report_opens_with_its_verdict_and_the_cells_that_disagree(tmp_path):
    from netsim.report import write

    a, b = ["symmetric", "open"], ["full-cone", "firewall"]
    meta = {"scenario": {"name": "v", "a": a, "b": b}}
    good = _records(tmp_path / "good", _matrix(a, b), meta)
    write(good)
    md = (good / "report.md").read_text().splitlines()
    assert md[2] == "**verdict: PASS: 4/4 cells agree with theory, 0 agent errors**"
    page = (good / "report.html").read_text()
    assert page.index('class="verdict PASS"') < page.index("<h2>")

    bad = _records(tmp_path / "bad", _matrix(a, b, fail={("open", "firewall")}), meta)
    write(bad)
    md = (bad / "report.md").read_text()
    assert md.splitlines()[2] == "**verdict: FAIL: 3/4 cells agree with theory, 0 agent errors**"
    head = md.split("## Summary")[0]  # before anything else: the cell, what was expected, what came
    assert "## Cells that disagree with theory" in head
    row = next(line for line in head.splitlines() if line.startswith("| open | firewall"))
    assert "0/3 · 0 %" in row and "| yes |" in row and "MISMATCH (expected to connect)" in row
    assert 'class="verdict FAIL"' in (bad / "report.html").read_text()


def test_tables_follow_the_scenarios_matrix_order(tmp_path):
    from netsim.report import write

    a, b = ["udp-blocked", "open", "symmetric"], ["symmetric", "full-cone"]  # not the zoo's order
    run = _records(tmp_path / "r", list(reversed(_matrix(a, b))), {"scenario": {"name": "o", "a": a, "b": b}})
    write(run)
    cells = pd.read_csv(run / "cells.csv")
    assert list(zip(cells["a"], cells["b"], strict=True)) == [(x, y) for x in a for y in b]
    assert all(len(str(v).split(".")[-1]) <= 4 for v in cells["success_low"])  # rounded


def test_a_plugin_keeps_its_colour_whatever_else_happened(tmp_path):
    """Two runs with different outcomes (one all direct; one with a failed trial and an unknown
    plugin winning): each plugin is drawn in the same colour in both winner maps."""
    from netsim.report import cell_table as cells_of
    from netsim.report import figures, load, plugin_table, style

    meta = {"scenario": {"name": "c", "a": ["open"], "b": ["full-cone", "firewall"]}}
    one = _records(tmp_path / "one", _matrix(["open"], ["full-cone", "firewall"]), meta)
    rows = _matrix(["open"], ["full-cone"], winner="my_plugin") + _matrix(
        ["open"], ["firewall"], fail={("open", "firewall")}
    )
    two = _records(tmp_path / "two", rows, meta)
    svgs = []
    for run in (one, two):
        trials, attempts, m = load(run)
        figs = figures(cells_of(trials), plugin_table(attempts, trials), trials, attempts, m)
        (name,) = [n for n in figs if n.startswith("winners-")]
        svgs.append(figs[name].svg.decode().lower())
    assert style.colour_of("direct").lower() in svgs[0]
    assert style.colour_of("my_plugin").lower() in svgs[1] and style.NO_WINNER.lower() in svgs[1]
    assert style.colour_of("my_plugin") == style.colour_of("my_plugin")  # a stable hash, not hash()
    assert style.colour_of("direct") == "#0072B2" and style.colour_of(None) == style.NO_WINNER


def test_a_gzipped_baseline_is_read_as_it_is(tmp_path):
    import gzip

    from netsim.report import compare, write

    meta = {"scenario": {"name": "z", "a": ["open"], "b": ["full-cone"]}}
    run = _records(tmp_path / "z", _matrix(["open"], ["full-cone"]), meta)
    raw = (run / "records.jsonl").read_bytes()
    (run / "records.jsonl.gz").write_bytes(gzip.compress(raw))
    (run / "records.jsonl").unlink()
    write(run)
    assert "verdict: PASS" in (run / "report.md").read_text()
    _, problems = compare(run, run)
    assert problems == []


def test_compare_common_judges_only_the_shared_cells(tmp_path):
    from netsim.report import compare, skipped

    full = ["open", "firewall", "symmetric"]
    meta = {"scenario": {"name": "m", "a": full, "b": full}}
    base = _records(tmp_path / "base", _matrix(full, full), meta)
    quick = _records(tmp_path / "quick", _matrix(["open"], ["open", "firewall"]), meta)
    _, problems = compare(base, quick)
    assert {p.kind for p in problems} == {"missing"} and len(problems) == 7
    table, problems = compare(base, quick, common=True)
    assert problems == [] and len(table) == 2 and skipped(base, quick) == 7
    worse = _records(
        tmp_path / "worse", _matrix(["open"], ["open", "firewall"], fail={("open", "firewall")}), meta
    )
    _, problems = compare(base, worse, common=True)
    assert {(p.cell, p.kind) for p in problems} >= {("open/firewall [direct,reverse]", "success_drop")}


def test_wire_classes_of_an_old_run_do_not_count_the_winner_twice():
    from netsim.report import wire_per_run

    old = pd.DataFrame(
        [{"a": "open", "b": "open", "run": "r", "wire_b_pipe_bytes": 1000, "wire_b_winner_bytes": 600}]
    )
    wire = wire_per_run(old)
    assert wire.loc["r", "attempts"] == 400 and wire.loc["r", "winner"] == 600 and "pipe" not in wire.columns


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (bytes.fromhex("4000000c") + b"x" * 12, "relay"),  # ChannelData, channel 0x4000
        (bytes.fromhex("0001000021122442"), "stun"),  # Binding request
        (bytes.fromhex("0101000021122442"), "stun"),  # Binding success
        (bytes.fromhex("0003000021122442"), "relay"),  # Allocate request
        (bytes.fromhex("0016000021122442"), "relay"),  # Send indication
        (bytes.fromhex("0017000021122442"), "relay"),  # Data indication
        (bytes.fromhex("0008000021122442"), "relay"),  # CreatePermission
        (b"", "stun"),
        (b"\x00", "stun"),
        (b"\xff\xff", "stun"),
    ],
)
def test_turn_is_told_from_stun_by_its_first_bytes(payload, kind):
    from netsim.control.capture import stun_or_relay

    assert stun_or_relay(payload) == kind
