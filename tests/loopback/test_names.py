"""A real names server process; nodes register on start and connect to each other by nickname."""

import asyncio
import ipaddress
import sqlite3
import subprocess
import sys

import pytest

from warpgate import Address, AddressError, Identity, Interface, Node, auto_connect
from warpgate.names import NameClient
from warpgate.proto.names import NameServiceError


@pytest.fixture
def names_server(tmp_path):
    """``warpgate names-server`` on 127.0.0.1, a free port; stopped by PID."""
    db = tmp_path / "names.sqlite"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "warpgate.cli",
            "names-server",
            "--db",
            str(db),
            "--port",
            "0",
            "--quota",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            proc.kill()
            raise RuntimeError(f"names server did not start: {line!r} {proc.stderr.read().decode()}")
        yield line.split()[-1], db
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_connect_by_nickname(names_server):
    server, _ = names_server
    async with (
        Node(interfaces=["lo"], nickname="alice", names_server=server) as alice,
        Node(interfaces=["lo"], names_server=server) as bob,
    ):
        pipe, plugin = await auto_connect(bob, "alice")
        assert pipe.peer_id == alice.node_id
        peer = await alice.accept()
        await pipe.send(b"hi alice")
        assert await peer.recv(timeout=5) == b"hi alice"


async def test_hijack_rejected(names_server):
    server, _ = names_server
    async with Node(interfaces=["lo"], nickname="alice", names_server=server) as alice:
        with pytest.raises(NameServiceError, match="taken"):
            async with Node(interfaces=["lo"], nickname="alice", names_server=server):
                pass
        assert (await NameClient(server).lookup("alice")).public_key == alice.identity.public_key


async def test_client_does_not_trust_the_server(names_server):
    """A server that swaps the address inside a record cannot make the client accept it."""
    server, db = names_server
    async with (
        Node(interfaces=["lo"], nickname="alice", names_server=server) as alice,
        Node(interfaces=["lo"]) as mallory,
    ):
        raw = bytearray(sqlite3.connect(db).execute("SELECT record FROM names").fetchone()[0])
        honest, evil = alice.address.to_bytes(), mallory.address.to_bytes()
        assert len(honest) == len(evil)
        tampered = bytes(raw).replace(honest, evil)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE names SET record = ?", (tampered,))
        with pytest.raises(NameServiceError, match="bad_signature"):
            await NameClient(server).lookup("alice")


async def test_unknown_name_and_no_server():
    async with Node(interfaces=["lo"]) as bob:
        with pytest.raises(AddressError, match="names_server"):
            await auto_connect(bob, "alice")


async def test_unknown_name(names_server):
    server, _ = names_server
    async with Node(interfaces=["lo"], names_server=server) as bob:
        with pytest.raises(NameServiceError, match="not_found"):
            await auto_connect(bob, "nobody")


def test_cli_register_lookup_delete(names_server, tmp_path):
    server, _ = names_server
    cli = [sys.executable, "-m", "warpgate.cli"]
    key = tmp_path / "key.pem"
    node = subprocess.Popen(
        [*cli, "node", "-i", "lo", "-4", "--key", str(key)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        address = node.stdout.readline().decode().strip()
        reg = subprocess.run(
            [*cli, "name", "register", "carol", "--server", server, "--key", str(key), "--address", address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert reg.returncode == 0, reg.stderr
        look = subprocess.run(
            [*cli, "name", "lookup", "carol", "--server", server], capture_output=True, text=True, timeout=30
        )
        assert look.stdout.strip() == address
        out = subprocess.run(
            [*cli, "connect", "carol", "--names-server", server, "-i", "lo", "-4", "--wait", "0.2"],
            input="via nickname\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert node.stdout.readline() == b"via nickname\n"
        dele = subprocess.run(
            [*cli, "name", "delete", "carol", "--server", server, "--key", str(key), "--address", address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert dele.returncode == 0, dele.stderr
        gone = subprocess.run(
            [*cli, "name", "lookup", "carol", "--server", server], capture_output=True, text=True, timeout=30
        )
        assert gone.returncode == 1 and "not_found" in gone.stderr
    finally:
        node.terminate()
        node.wait(timeout=10)


async def test_malformed_requests_are_answered_and_slow_or_many_connections_bounded(monkeypatch, tmp_path):
    import json

    from warpgate import names as names_module
    from warpgate.names import NameServer

    monkeypatch.setattr(names_module, "READ_TIMEOUT", 0.3)
    monkeypatch.setattr(names_module, "PER_SOURCE", 3)
    async with NameServer(tmp_path / "names.db") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for bad in (b"[" * 5000 + b"\n", b'{"op": "put", "record": [1]}\n', b"\xff\xfe\n", b"42\n"):
            writer.write(bad)
            answer = json.loads(await reader.readline())
            assert answer["code"] == "bad_request", (bad[:20], answer)
        others = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        refused = json.loads(await others[-1][0].readline())  # the fourth from this address
        assert refused["code"] == "busy" and server.refused["per_source"] == 1
        assert await reader.readline() == b""  # silent past READ_TIMEOUT: closed by the server
        assert server.refused["timeout"] >= 1
        for _, w in [(reader, writer), *others]:
            w.close()


async def test_the_client_catches_a_server_that_rolls_a_name_back(names_server):
    """A server answers with the newest record, then with an older one it kept: the client,
    which saw the newer sequence, refuses the older one."""
    import itertools
    import time

    server, _ = names_server
    me = Identity.generate()
    address = Address(me.public_key, 4000, 4000, (Interface(private4=ipaddress.IPv4Address("10.0.0.1")),))
    ticks = itertools.count()
    client = NameClient(server, clock=lambda: time.time() + next(ticks) * 0.01)  # distinct sequences
    old = await client.register(me, address, "rolled")
    await client.register(me, address, "rolled")
    await client.lookup("rolled")  # the newer one, seen

    async def lying_call(request):
        return old.to_bytes()

    client._call = lying_call
    with pytest.raises(NameServiceError) as info:
        await client.lookup("rolled")
    assert info.value.code == "rollback"


async def test_held_connections_do_not_lock_a_client_out(tmp_path):
    """16 sources x 16 connections, each kept busy with a lookup now and then, hold every slot;
    a newcomer still gets its answer: it takes the slot of an idle connection of the source that
    holds the most."""
    import json

    from warpgate import names as names_module
    from warpgate.names import NameServer

    alice = Identity.generate()
    address = Address(alice.public_key, 1, 1, (Interface(private4=ipaddress.IPv4Address("127.0.0.1")),))
    async with NameServer(tmp_path / "names.db") as server:
        client = NameClient(f"127.0.0.1:{server.port}")
        await client.register(alice, address, "alice")
        held = []
        for k in range(names_module.MAX_CONNECTIONS // names_module.PER_SOURCE):
            for _ in range(names_module.PER_SOURCE):
                r, w = await asyncio.open_connection(
                    "127.0.0.1", server.port, local_addr=(f"127.0.1.{k + 1}", 0)
                )
                w.write(b'{"op": "get", "name": "alice"}\n')
                assert json.loads(await r.readline())["ok"]  # admitted and served: now idle
                held.append((r, w))
        assert sum(server._connections.values()) == names_module.MAX_CONNECTIONS
        try:
            assert (await client.lookup("alice")) == address  # a newcomer is served
            assert server.refused["reclaimed"] == 1 and server.refused["connections"] == 0
        finally:
            for _, w in held:
                w.close()


async def test_lookups_are_rate_limited_per_source(tmp_path):
    import json

    from warpgate import names as names_module
    from warpgate.names import NameServer

    async with NameServer(tmp_path / "names.db") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.5", 0))
        burst = names_module.LOOKUP_RATE + 100
        writer.write(b'{"op": "get", "name": "nobody"}\n' * burst)
        codes = [json.loads(await reader.readline())["code"] for _ in range(burst)]
        writer.close()
        assert codes.count("not_found") == names_module.LOOKUP_RATE and codes.count("rate_limited") == 100
        other = NameClient(f"127.0.0.1:{server.port}")  # another source is not held back by it
        with pytest.raises(NameServiceError) as caught:
            await other.lookup("nobody")
        assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    "answer", [b"[" * 30_000 + b"\n", b'{"ok": true, "record": "' + b"0" * 2_000_000 + b'"}\n']
)
async def test_a_lying_names_server_is_a_typed_error(answer):
    """A deep answer would raise RecursionError in json.loads, a huge one take memory: both are
    refused before parsing, as ``bad_answer``."""

    async def lie(reader, writer):
        await reader.readline()
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(lie, "127.0.0.1", 0)
    try:
        client = NameClient(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        with pytest.raises(NameServiceError) as caught:
            await client.lookup("alice")
        assert caught.value.code == "bad_answer"
    finally:
        server.close()
        await server.wait_closed()
