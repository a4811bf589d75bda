"""The lab's process door: once a forced teardown closes it, no lab process starts."""

import subprocess
import sys

CLOSED = """
import threading
from netsim.control import spawn
spawn.run(["true"], input=None, timeout=5)  # open: starts
holding = threading.Event(); release = threading.Event()
def start_slowly():  # a worker thread in the middle of a start
    with spawn._door:
        holding.set(); release.wait(5)
t = threading.Thread(target=start_slowly); t.start(); holding.wait(5)
closer = threading.Thread(target=spawn.close); closer.start()
closer.join(0.2); assert closer.is_alive(), "close() must wait for a start under way"
release.set(); closer.join(5); t.join(5)
try:
    spawn.popen(["true"])
except spawn.Closed as exc:
    print("refused:", exc)
"""


def test_a_closed_door_refuses_every_start_and_close_waits_for_one_under_way():
    # in its own interpreter: the door is process-wide and stays shut
    out = subprocess.run([sys.executable, "-c", CLOSED], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "refused: the lab is being torn down: true not started" in out.stdout


def test_a_forced_kill_returns_only_once_its_processes_are_dead():
    """The forced teardown's check for leftovers follows it at once: a process it killed but
    that is still dying (an nft in a netlink call) would be reported as left behind."""
    from netsim.control.lab import _kill_and_wait

    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(5)]
    try:
        lines = _kill_and_wait([str(p.pid) for p in procs])
        # dead means reapable now, without blocking: waitpid(WNOHANG) has a status for each
        assert [p.poll() for p in procs] == [-9] * 5
        assert lines == [f"killed process {p.pid}" for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_forced_kill_skips_a_process_already_gone():
    from netsim.control.lab import _kill_and_wait

    gone = subprocess.Popen(["true"])
    gone.wait()
    assert _kill_and_wait([str(gone.pid)]) == []
