"""The CI-at-scale workflow runs commands that exist, with options netsim has, on a baseline that
is in the repository and readable as a run."""

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "full-matrix.yml"


def netsim_help(*argv):
    out = subprocess.run([sys.executable, "-m", "netsim", *argv, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_netsim_command_and_option_of_the_workflow_exists():
    text = WORKFLOW.read_text()
    commands = re.findall(r"netsim (\w+)((?: [^\n]*)?)", text)
    assert {c for c, _ in commands} >= {"run", "merge", "compare"}
    for command, rest in commands:
        usage = netsim_help(command)
        for option in re.findall(r"(--[a-z-]+)", rest):
            assert option in usage, (command, option)
    shards = re.search(r"shard: \[([\d, ]+)\]", text)
    assert shards and len(shards.group(1).split(",")) == int(re.search(r"SHARDS: (\d+)", text).group(1))


def test_the_baseline_is_a_readable_run():
    base = ROOT / "baselines" / "full-matrix"
    meta = json.loads((base / "meta.json").read_text())
    assert meta["scenario"]["name"] == "full-matrix"
    with gzip.open(base / "records.jsonl.gz", "rt") as fh:
        trials = [r for r in map(json.loads, fh) if r["type"] == "trial"]
    assert len(trials) == 640 and all(t["outcome"] == "connected" for t in trials)
