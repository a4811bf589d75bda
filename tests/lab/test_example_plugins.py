"""The example plugin that talks to its peer, measured as its author would: installed (here into a
directory on PYTHONPATH, so the rest of the suite does not race it), its own tests pass against
a real broker, ``netsim expect`` prints its rule's matrix without root, and ``netsim run`` of its
solo scenario agrees with that matrix cell by cell."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netsim.testing import check

pytestmark = [pytest.mark.root, pytest.mark.lab]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "warpgate-udp-callback"
SCENARIO = EXAMPLE / "scenario.toml"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """An environment whose Python finds the plugin through its entry point."""
    tmp = tmp_path_factory.mktemp("udp-callback")
    source = tmp / "src"  # built from a copy: a build leaves build/ and egg-info behind
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", ".pytest_cache"))
    target = tmp / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])),
    }


def run(env, *argv, user=None, cwd=ROOT):
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user == "nobody" else []
    out = subprocess.run(
        [*prefix, sys.executable, *argv], capture_output=True, text=True, timeout=900, env=env, cwd=cwd
    )
    assert out.returncode == 0, (argv, out.stdout[-2000:], out.stderr[-2000:])
    return out.stdout


def test_its_own_tests_pass(installed):
    said = run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", EXAMPLE / "tests", cwd=EXAMPLE)
    assert " passed" in said and "skipped" not in said and "failed" not in said, said


def test_its_solo_scenario_agrees_with_its_rule_and_expect_prints_that_rule(installed, tmp_path):
    predicted = json.loads(run(installed, "-m", "netsim", "expect", SCENARIO, "--json"))
    ((only,),) = [[r["run"]] for r in predicted]
    assert only == "udp_callback"
    expected = {(c["a"], c["b"]): c["expected"] for c in predicted[0]["cells"]}
    assert set(expected.values()) == {"yes", "no"}  # the matrix can show a wrong rule either way

    run(installed, "-m", "netsim", "run", SCENARIO, "--out", tmp_path / "run", "--quiet")
    cells = check(tmp_path / "run")  # every cell agrees with the rule (AssertionError otherwise)
    measured = {(r.a, r.b): "yes" if r.success > 0.5 else "no" for r in cells.itertuples()}
    assert measured == expected
