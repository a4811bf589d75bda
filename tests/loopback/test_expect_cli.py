"""``netsim expect`` runs without root and without a lab, and prints the runner's expectations."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from netsim.model import expect, scenario


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="drops root with setpriv")
@pytest.mark.parametrize("name", ["quick", "solo"])
def test_expect_as_nobody_prints_what_the_runner_expects(name, tmp_path):
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "netsim"]
        + ["expect", name, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    printed = {
        (run["run"], c["a"], c["b"]): c["expected"] for run in json.loads(out.stdout) for c in run["cells"]
    }
    want = {(m.label, a, b): v for m in expect.matrices(scenario.load(name)) for (a, b), v in m.cells.items()}
    assert printed == want
