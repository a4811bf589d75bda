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


BENCH = """
import sys, time
from netsim.control.lab import Lab
from netsim.control.signals import torn_down
from netsim.model.topology import two_sites

def main():
    with Lab(two_sites("full-cone", "symmetric")) as lab:
        lab.popen(lab.host("a"), ["sleep", "600"])
        print("up", file=sys.stderr, flush=True)
        time.sleep(600)

raise SystemExit(torn_down(main))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_benchmark_torn_down_by_a_signal_leaves_nothing(sig):
    """The benchmarks run their labs inside ``torn_down``: without it SIGTERM or SIGHUP would kill
    the script where it stands and its lab would outlive it."""
    proc = subprocess.Popen([sys.executable, "-c", BENCH], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.strip() == "up":
            break
    assert leftovers()
    proc.send_signal(sig)
    rest = proc.stderr.read()
    assert proc.wait(60) == 128 + sig, rest
    assert f"interrupted by {sig.name}" in rest
    assert not leftovers()
