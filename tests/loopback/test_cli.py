"""``warpgate node`` in one process and ``warpgate connect`` in another exchange data both ways."""

import subprocess
import sys

import pytest

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
