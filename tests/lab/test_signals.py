"""SIGTERM, SIGHUP and SIGINT on a running ``netsim run`` tear the lab down; a second signal
forces it. Nothing may be left: no process of ours, no namespace, no link in the root namespace
(nft tables live in the router namespaces, which go with their last process)."""

import signal
import subprocess
import sys

import pytest

from netsim.control.lab import leftovers

pytestmark = [pytest.mark.root, pytest.mark.lab]

NETSIM = [sys.executable, "-m", "netsim.cli"]
LONG = """name = "long"
trials = 1000
timeout = 2.0
plugins = ["direct", "reverse"]
[matrix]
a = ["open", "port-restricted-cone"]
b = ["full-cone"]
"""


def start_run(tmp_path):
    sc = tmp_path / "long.toml"
    sc.write_text(LONG)
    proc = subprocess.Popen(
        [*NETSIM, "run", str(sc), "--out", str(tmp_path / "run"), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    # the runner says when the lab is up and trials run: block on that line, no polling
    for line in proc.stderr:
        lines.append(line)
        if "lab up and validated" in line:
            return proc, lines
    proc.wait()
    pytest.fail(f"netsim run ended before its trials (exit {proc.returncode}): {''.join(lines)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_tears_the_lab_down(tmp_path, sig):
    proc, _ = start_run(tmp_path)
    assert leftovers()  # the lab is there to be torn down
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(120) == 128 + sig, rest
    assert f"interrupted by {sig.name}" in rest
    assert not leftovers()
    assert (tmp_path / "run" / "meta.json").exists()  # the run can be resumed


def test_a_second_signal_forces_the_teardown(tmp_path):
    proc, _ = start_run(tmp_path)
    proc.send_signal(signal.SIGTERM)
    for line in proc.stderr:  # the first one is being handled: now the second
        if "tearing the lab down" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(60) == 128 + signal.SIGTERM, rest
    assert not leftovers(), rest
