"""``warpgate node`` in one process and ``warpgate connect`` in another exchange data both ways."""

import signal
import subprocess
import sys

import pytest

from warpgate.proto.timers import LIVENESS

WARPGATE = [sys.executable, "-m", "warpgate.cli"]


@pytest.fixture
def echo_node():
    proc = subprocess.Popen(
        [*WARPGATE, "node", "-i", "lo", "-4", "--echo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("wg1"), proc.stderr.read().decode() if proc.poll() is not None else line
        yield proc, line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_connect_sends_stdin_and_prints_replies(echo_node):
    proc, address = echo_node
    out = subprocess.run(
        [*WARPGATE, "connect", "-i", "lo", "-4", address, "--wait", "2"],
        input=b"hello through warpgate\n",
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello through warpgate\n"
    assert b"connected via direct" in out.stderr


def test_node_prints_what_peers_send():
    proc = subprocess.Popen(
        [*WARPGATE, "node", "-i", "lo", "-4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        address = proc.stdout.readline().decode().strip()
        out = subprocess.run(
            [*WARPGATE, "connect", "-i", "lo", "-4", address, "--wait", "0.2"],
            input=b"ping\n",
            capture_output=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert proc.stdout.readline() == b"ping\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("bad", ["garbage", "wg1aaaa", "wg1" + "b" * 60])
def test_garbage_address_exits_2_with_address_error(bad):
    out = subprocess.run([*WARPGATE, "connect", bad], capture_output=True, timeout=30)
    assert out.returncode == 2
    assert b"AddressError" in out.stderr


def test_plugins_lists_direct():
    out = subprocess.run([*WARPGATE, "plugins"], capture_output=True, timeout=30, check=True)
    assert out.stdout.split()[0] == b"direct"


def _connected(proc: subprocess.Popen) -> str:
    """Read the connecting process's stderr up to its "connected via" line; return that line."""
    for raw in proc.stderr:
        line = raw.decode()
        if "connected via" in line:
            return line
    raise AssertionError(f"connect ended without connecting (exit {proc.wait(timeout=10)})")


def test_ctrl_c_ends_connect_at_once_with_stdin_open(echo_node):
    _, address = echo_node
    proc = subprocess.Popen(
        [*WARPGATE, "connect", "-i", "lo", "-4", address],
        stdin=subprocess.PIPE,  # held open: nothing is ever written, nothing ends it
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _connected(proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=1) == 130
    finally:
        proc.kill()
        proc.wait()
    assert b"Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("how", ["terminated", "killed"])
def test_connect_ends_when_the_peer_goes_away(how):
    node = subprocess.Popen(
        [*WARPGATE, "node", "-i", "lo", "-4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    conn = None
    try:
        address = node.stdout.readline().decode().strip()
        conn = subprocess.Popen(
            [*WARPGATE, "connect", "-i", "lo", "-4", address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _connected(conn)
        node.terminate() if how == "terminated" else node.kill()
        # a TCP pipe hears its peer's end at once; the liveness deadline (15 s) bounds the rest
        code = conn.wait(timeout=LIVENESS.dead + 2)
        said = conn.stderr.read().decode()
        assert code == 0, said
        assert "# pipe closed: " in said and "Traceback" not in said
    finally:
        for proc in (node, conn):
            if proc is not None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(("flag", "family"), [("-4", "127.0.0.1"), ("-6", "::1")])
def test_connect_dials_only_the_family_asked(flag, family):
    """The node runs on both families (its address holds 127.0.0.1 and ::1; direct would lead
    with IPv6, RFC 8305); ``-4`` never dials ::1 and ``-6`` never 127.0.0.1."""
    node = subprocess.Popen(
        [*WARPGATE, "node", "-i", "lo", "--echo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        address = node.stdout.readline().decode().strip()
        out = subprocess.run(
            [*WARPGATE, "connect", "-i", "lo", flag, address, "-v", "--wait", "0.5"],
            input=b"hi\n",
            capture_output=True,
            timeout=30,
        )
        said = out.stderr.decode()
        assert out.returncode == 0, said
        other = "::1" if family == "127.0.0.1" else "127.0.0.1"
        attempts = [line for line in said.splitlines() if line.startswith("#   ")]
        assert any(family in line for line in said.splitlines() if "connected via" in line), said
        assert not any(other in line for line in attempts), said
    finally:
        node.terminate()
        node.wait(timeout=10)
