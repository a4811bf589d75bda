"""The scenario runner end to end (root): theory, resume after SIGKILL, compare, merge."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netsim import report
from netsim.control.lab import leftovers
from netsim.testing import assert_scenario

pytestmark = [pytest.mark.root, pytest.mark.lab]

NETSIM = [sys.executable, "-m", "netsim.cli"]


def write(tmp_path, name, a, b, plugins=("direct", "reverse"), trials=2):
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ntrials = {trials}\ntimeout = 1.5\nplugins = {json.dumps(list(plugins))}\n'
        f"[matrix]\na = {json.dumps(a)}\nb = {json.dumps(b)}\n"
    )
    return path


def trial_keys(run):
    keys = []
    for line in (run / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "trial":
            keys.append((rec["a"], rec["b"], rec["trial"], rec["run"]))
    return keys


def test_results_agree_with_theory_and_the_report_shows_them(tmp_path):
    sc = write(
        tmp_path,
        "theory",
        ["open", "full-cone", "port-restricted-cone", "symmetric"],
        ["full-cone", "port-restricted-cone", "symmetric"],
        trials=1,
    )
    cells = assert_scenario(sc, tmp_path / "run")
    by = {(r.a, r.b): r for r in cells.itertuples()}
    assert by[("symmetric", "symmetric")].success == 0  # nothing but a relay connects these
    assert by[("open", "symmetric")].winner == "direct"
    assert by[("symmetric", "full-cone")].winner == "reverse"  # only the caller is reachable
    html = (tmp_path / "run" / "report.html").read_text()
    assert "data:image/svg+xml;base64," in html and "winner per cell" in html
    assert (tmp_path / "run" / "trials.parquet").exists() and (tmp_path / "run" / "report.md").exists()


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path):
    sc = write(tmp_path, "resume", ["open", "port-restricted-cone"], ["open", "symmetric"], trials=3)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*NETSIM, "run", str(sc), "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while (not (out / "records.jsonl").exists() or len(trial_keys(out)) < 3) and proc.poll() is None:
        assert time.monotonic() < deadline, "no trial recorded within 60 s"
        time.sleep(0.05)  # polling another process's file: there is no event to wait on
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = trial_keys(out)
    assert 3 <= len(before) < 4 * 3 * 1 + 1
    done = subprocess.run(
        [*NETSIM, "run", str(sc), "--out", str(out), "--resume", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    after = trial_keys(out)
    assert after[: len(before)] == before  # finished trials kept as they were
    assert len(after) == len(set(after)) == 4 * 3  # every trial exactly once
    assert not leftovers()


def test_compare_catches_a_broken_plugin_and_passes_the_same_code(tmp_path):
    sc = write(tmp_path, "cmp", ["open"], ["open", "port-restricted-cone"], plugins=("direct",), trials=2)
    runs = {}
    for name, extra in (("base", []), ("again", []), ("broken", ["--sabotage", "direct"])):
        out = tmp_path / name
        r = subprocess.run(
            [*NETSIM, "run", str(sc), "--out", str(out), "--quiet", *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        runs[name] = out
    same = subprocess.run(
        [*NETSIM, "compare", str(runs["base"]), str(runs["again"])], capture_output=True, text=True
    )
    assert same.returncode == 0, same.stdout
    junit = tmp_path / "compare.xml"
    broken = subprocess.run(
        [*NETSIM, "compare", str(runs["base"]), str(runs["broken"]), "--junit", str(junit)],
        capture_output=True,
        text=True,
    )
    assert broken.returncode == 1 and "[success_drop]" in broken.stdout, broken.stdout
    assert "winner direct -> none" in broken.stdout  # the sabotaged plugin is named
    from junitparser import Failure, JUnitXml

    cases = [c for suite in JUnitXml.fromfile(str(junit)) for c in suite]
    failed = [c for c in cases if any(isinstance(r, Failure) for r in c.result)]
    assert len(cases) == 2 and failed
    merged = report.merge([runs["base"], runs["again"]], tmp_path / "merged")
    assert merged.exists() and len(trial_keys(tmp_path / "merged")) == 4


def test_shards_merge_into_the_whole_run(tmp_path):
    sc = write(tmp_path, "shard", ["open", "full-cone"], ["open", "symmetric"], trials=1)
    outs = []
    for k in (1, 2):
        out = tmp_path / f"s{k}"
        r = subprocess.run(
            [*NETSIM, "run", str(sc), "--out", str(out), "--shard", f"{k}/2", "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        outs.append(out)
    report.merge(outs, tmp_path / "all")
    assert sorted(trial_keys(tmp_path / "all")) == sorted(
        (a, b, 0, "direct,reverse") for a in ("open", "full-cone") for b in ("open", "symmetric")
    )


def test_capture_counts_what_each_trial_put_on_the_wire(tmp_path):
    path = tmp_path / "cap.toml"
    path.write_text(
        'name = "cap"\ntrials = 1\ntimeout = 1.5\nplugins = ["direct", "reverse"]\ncapture = true\n'
        '[matrix]\na = ["open", "symmetric"]\nb = ["full-cone"]\n'
    )
    cells = assert_scenario(path, tmp_path / "run")
    trials = report.load(tmp_path / "run")[0].set_index("a")
    direct = trials.loc["open"]  # B dials A directly: the winning flow is on B's WAN, straight to A
    assert direct["winner"] == "direct" and direct["wire_b_path"] == "direct"
    assert direct["transport"] == "tcp"  # A's LAN is public: the stream wins
    assert direct["wire_b_winner_packets"] > 0 and direct["wire_b_winner_bytes"] >= 1024  # the echoed payload
    assert direct["wire_b_signal_packets"] > 0  # reverse asked over MQTT at the same time
    rev = trials.loc["symmetric"]  # A dials back to B (full cone): reverse wins
    assert rev["winner"] == "reverse" and rev["wire_b_winner_packets"] > 0
    # discovery's STUN over TCP from B's listening port opened a TCP mapping in B's full cone, so
    # the dial-back's stream gets through to B's listener (before, only UDP could)
    assert rev["transport"] == "tcp"
    assert (tmp_path / "run" / "wire.csv").exists()
    assert "Wire cost" in (tmp_path / "run" / "report.md").read_text()
    assert len(cells) == 2


def test_a_quick_run_is_judged_against_the_full_matrix_baseline(tmp_path):
    """The stored baseline (gzipped, 64 cells) judges a quick run (16 of them) with --common: the
    same code passes; with turn broken, the one pair only a relay joins is named."""
    baseline = Path(__file__).resolve().parents[2] / "baselines" / "full-matrix"
    verdicts = {}
    for name, extra in (("quick", []), ("broken", ["--sabotage", "turn"])):
        out = tmp_path / name
        r = subprocess.run(
            [*NETSIM, "run", "quick", "--trials", "1", "--out", str(out), "--quiet", *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        # random_probe's cells take a chance's time: one trial may be far from the base's median
        verdicts[name] = subprocess.run(
            [*NETSIM, "compare", str(baseline), str(out), "--common", "--max-slowdown", "20"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    same = verdicts["quick"]
    assert same.returncode == 0, same.stdout[-3000:]
    assert "48 cell(s) only one run has: not judged (--common)" in same.stdout
    broken = verdicts["broken"]
    assert broken.returncode == 1, broken.stdout[-3000:]
    named = [line for line in broken.stdout.splitlines() if "[success_drop]" in line]
    assert len(named) == 1 and "symmetric/symmetric" in named[0] and "winner turn -> none" in named[0], named
