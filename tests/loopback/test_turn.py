"""The ``turn`` plugin against a real coturn on loopback: relayed pipes over UDP, TCP and TLS to
the server, nothing left allocated after close (coturn's own session count), clear reasons for a
dead server, bad credentials, a full quota and a relay that dies mid-pipe, coturn's REST
credentials, and credentials in no error or log."""

import asyncio
import logging
import re

import pytest

from netsim.control.daemons import coturn_allocations
from tests.daemons import self_signed_cert
from warpgate import ConnectError, Node, Outcome, auto_connect
from warpgate.errors import LocalProtocolError, PipeClosed
from warpgate.identity import Identity
from warpgate.proto.timers import Liveness
from warpgate.turn import TurnError, TurnServer, allocate, release

PASSWORD = "s3cret-pass"
CLI = "cli-pass"


def start_coturn(tmp_path, **kw):
    from netsim.control.daemons import Daemon, coturn

    daemon = Daemon(
        coturn("127.0.0.1", "127.0.0.2", password=PASSWORD, loopback_peers=True, cli_password=CLI, **kw),
        tmp_path / "coturn",
    )
    daemon.start()
    return daemon


@pytest.fixture
def coturn(tmp_path):
    daemon = start_coturn(tmp_path)
    yield daemon
    daemon.stop()
    assert not daemon.running


async def gone() -> bool:
    """coturn holds no live allocation: each one left is deleted, waiting for its sweep (<= 1 s)."""
    return all(left <= 1 for left in await coturn_allocations("127.0.0.1", CLI))


async def relayed_pair(a, b):
    """B connects to A with turn alone: (B's pipe, the pipe A accepted)."""
    accepted = asyncio.ensure_future(a.accept())
    pipe, _ = await auto_connect(b, a.address, plugins=["turn"], timeout=5)
    return pipe, await accepted


def node(broker, turn, **kw):
    return Node(interfaces=["lo"], families=["ipv4"], brokers=[broker.url], turn=turn, **kw)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relayed_pipe_carries_data_and_its_allocations_end_with_it(
    coturn, mosquitto_factory, transport, caplog
):
    caplog.set_level(logging.INFO, logger="aioice.turn")
    broker = mosquitto_factory()
    url = f"turn://wg:{PASSWORD}@127.0.0.1:3478?transport={transport}"
    async with node(broker, [url]) as a, node(broker, [url]) as b:
        accepted = asyncio.ensure_future(a.accept())
        events = []
        pipe, plugin = await auto_connect(b, a.address, plugins=["turn"], timeout=5, on_event=events.append)
        assert plugin.name == "turn" and pipe.path == "relayed" and events[0].path == "relayed"
        theirs = await accepted
        live = await coturn_allocations("127.0.0.1", CLI)
        assert len(live) == 2 and min(live) > 500  # one allocation per side, of 600 s
        await pipe.send(b"through the relay")
        assert await theirs.recv() == b"through the relay"
        await theirs.send(b"x" * 1000)
        assert await pipe.recv() == b"x" * 1000
        await pipe.close()
        await theirs.close()
        # both relays deleted their allocation when their pipe closed (a Refresh with lifetime 0,
        # RFC 8656 §7.3), before the nodes stopped: the server acknowledged each, and holds none
        created = [r for r in caplog.records if r.getMessage().startswith("TURN allocation created")]
        deleted = [r for r in caplog.records if r.getMessage().startswith("TURN allocation deleted")]
        assert len(created) == 2 and len(deleted) == 2
        assert await gone(), "coturn still holds a live allocation"


@pytest.mark.parametrize(
    ("transport", "reason"),
    [
        ("udp", "the relay or the peer was silent for 1 s"),
        ("tcp", "turn: (lost the connection to the server|the allocation ended)"),
    ],
)
async def test_a_relay_that_dies_mid_pipe_closes_the_pipe_with_a_reason(
    tmp_path, mosquitto_factory, transport, reason
):
    """coturn stops under a live relayed pipe: over UDP nothing tells the nodes, so the pipe's
    keepalive finds the silence; over TCP the server's connection ends. Either way ``recv``
    raises with the reason instead of hanging, and the nodes stop without waiting for the dead
    server to acknowledge a deletion."""
    daemon = start_coturn(tmp_path)
    try:
        broker = mosquitto_factory()
        url = f"turn://wg:{PASSWORD}@127.0.0.1:3478?transport={transport}"
        quick = Liveness(idle=0.2, interval=0.1, dead=1.0)
        async with node(broker, [url], keepalive=quick) as a, node(broker, [url], keepalive=quick) as b:
            pipe, theirs = await relayed_pair(a, b)
            await pipe.send(b"before")
            assert await theirs.recv() == b"before"
            daemon.stop()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for end in (pipe, theirs):
                with pytest.raises(PipeClosed, match=reason):
                    await end.recv(timeout=5)  # a TimeoutError here would be the hang
            assert loop.time() - t0 < 3
            assert re.search(reason, pipe.close_reason or "")
            t1 = loop.time()
        assert loop.time() - t1 < 4  # stopping waits at most a second per allocation
    finally:
        daemon.stop()


async def test_an_idle_relayed_pipe_stays_open(coturn, mosquitto_factory):
    """Keepalives keep a silent pipe (and its channel bindings) alive well past the dead time."""
    broker = mosquitto_factory()
    url = f"turn://wg:{PASSWORD}@127.0.0.1:3478"
    quick = Liveness(idle=0.1, interval=0.05, dead=0.5)
    async with node(broker, [url], keepalive=quick) as a, node(broker, [url], keepalive=quick) as b:
        pipe, theirs = await relayed_pair(a, b)
        with pytest.raises(TimeoutError):
            await theirs.recv(timeout=2.0)  # the behaviour under test: four dead times of silence
        assert not pipe.closed and not theirs.closed
        await pipe.send(b"still here")
        assert await theirs.recv(timeout=1) == b"still here"


async def test_a_full_quota_is_a_clear_486(tmp_path):
    daemon = start_coturn(tmp_path, user_quota=1)
    try:
        server = TurnServer.parse(f"turn://wg:{PASSWORD}@127.0.0.1:3478")
        first = await allocate(server, Identity.generate())
        try:
            with pytest.raises(TurnError, match="(?i)486 .*allocation quota reached"):
                await allocate(server, Identity.generate())
        finally:
            await release(first)
        assert await gone(), "coturn still holds a live allocation"
    finally:
        daemon.stop()


async def test_turns_relays_over_tls_and_refuses_an_unknown_certificate(tmp_path, mosquitto_factory):
    cert, key = self_signed_cert(tmp_path)
    daemon = start_coturn(tmp_path, tls=(cert, key))
    try:
        broker = mosquitto_factory()
        url = f"turns://wg:{PASSWORD}@127.0.0.1:5349?ca={cert}"
        async with node(broker, [url]) as a, node(broker, [url]) as b:
            pipe, theirs = await relayed_pair(a, b)
            await pipe.send(b"over tls")
            assert await theirs.recv(timeout=2) == b"over tls"
            await pipe.close()
            await theirs.close()
        untrusted = f"turns://wg:{PASSWORD}@127.0.0.1:5349"  # the system's store does not know it
        with pytest.raises(TurnError, match="TLS to turns://127.0.0.1:5349 failed: .*certificate"):
            await allocate(TurnServer.parse(untrusted), Identity.generate())
    finally:
        daemon.stop()


async def test_a_dead_server_is_a_clear_reason_within_a_second(mosquitto_factory):
    from tests.daemons import free_port

    broker = mosquitto_factory()
    dead = f"turn://wg:{PASSWORD}@127.0.0.1:{free_port()}?transport=udp"
    async with node(broker, [dead]) as a, node(broker, [dead]) as b:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ConnectError) as info:
            await auto_connect(b, a.address, plugins=["turn"], timeout=5)
        assert loop.time() - t0 < 1.5
        event = info.value.attempts[0]
        assert event.outcome is Outcome.FAILED and event.reason.startswith("turn: server unreachable")


async def test_wrong_credentials_are_a_401_at_once_and_no_password_is_shown(
    coturn, mosquitto_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    broker = mosquitto_factory()
    wrong = "turn://wg:not-the-password@127.0.0.1:3478"
    async with node(broker, [wrong]) as a, node(broker, [wrong]) as b:
        with pytest.raises(ConnectError) as info:
            await auto_connect(b, a.address, plugins=["turn"], timeout=5)
    reason = info.value.attempts[0].reason
    assert "401" in reason and "wrong credentials" in reason
    for text in (
        reason,
        str(info.value),
        caplog.text,
        repr(TurnServer.parse(wrong)),
        str(TurnServer.parse(wrong)),
    ):
        assert "not-the-password" not in text and PASSWORD not in text


async def test_rest_credentials(tmp_path, mosquitto_factory):
    """coturn's use-auth-secret: the node makes expiry:name and HMAC-SHA1 per allocation."""
    daemon = start_coturn(tmp_path, secret="shared-secret")
    try:
        broker = mosquitto_factory()
        url = "turn://alice@127.0.0.1:3478?secret=shared-secret"
        async with node(broker, [url]) as a, node(broker, [url]) as b:
            pipe, plugin = await auto_connect(b, a.address, plugins=["turn"], timeout=5)
            assert pipe.path == "relayed"
            await pipe.close()
        bad = "turn://alice@127.0.0.1:3478?secret=another-secret"
        async with node(broker, [bad]) as a, node(broker, [bad]) as b:
            with pytest.raises(ConnectError, match="401"):
                await auto_connect(b, a.address, plugins=["turn"], timeout=5)
    finally:
        daemon.stop()


def test_turn_urls_are_checked():
    s = TurnServer.parse("turn://alice:hunter2@203.0.113.10?transport=tcp")
    assert (s.host, s.port, s.transport) == ("203.0.113.10", 3478, "tcp")
    assert s.credentials() == ("alice", "hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    t = TurnServer.parse("turns://alice:hunter2@turn.example?ca=/etc/ca.pem")
    assert (t.port, t.transport, t.tls, t.ca, str(t)) == (
        5349,
        "tcp",
        True,
        "/etc/ca.pem",
        "turns://turn.example:5349",
    )
    for bad in ("http://u:p@h", "turn://h", "turn://u:p@h?transport=sctp", "turns://u:p@h?transport=udp"):
        with pytest.raises(LocalProtocolError):
            TurnServer.parse(bad)


async def test_hostile_relay_offers_are_refused_and_bounded(coturn, mosquitto_factory, monkeypatch):
    """Each offer makes the callee allocate on its server: strangers may hold at most three
    quarters of MAX_SESSIONS allocations at once (then ``busy``; the rest is kept for known
    peers), never two for one offer, and an offer naming several relayed addresses is malformed."""
    from warpgate.plugins import turn as turn_plugin
    from warpgate.proto.messages import Candidate, RelayOffer

    monkeypatch.setattr(turn_plugin, "MAX_SESSIONS", 3)  # two for strangers
    broker = mosquitto_factory()
    url = f"turn://wg:{PASSWORD}@127.0.0.1:3478"
    async with node(broker, [url]) as victim, node(broker, []) as attacker:
        nowhere = Candidate("127.0.0.1", 9)  # nobody answers there: each dial-back keeps going

        async def offer(conn_id, relayed=(nowhere,)):
            body = RelayOffer(conn_id, relayed).to_body()
            return await attacker.signal.request(victim.address, RelayOffer.kind, body)

        two = await offer(bytes(16), (nowhere, Candidate("127.0.0.1", 10)))
        assert "malformed" in two["error"] and victim.signal.stats["request_malformed"] == 1
        assert "reply" in await offer(bytes([1]) * 16)
        again = await offer(bytes([1]) * 16)  # the same offer while it is being answered
        assert "replayed" in again["error"]
        assert "reply" in await offer(bytes([2]) * 16)
        third = await offer(bytes([3]) * 16)
        assert "busy" in third["error"] and victim.signal.stats["request_busy"] == 1


def test_the_command_line_relays_through_turn(coturn, mosquitto_factory):
    """``warpgate node --turn`` and ``warpgate connect --turn --plugin turn``: a relayed echo."""
    import subprocess
    import sys

    broker = mosquitto_factory()
    url = f"turn://wg:{PASSWORD}@127.0.0.1:3478"
    common = ["-i", "lo", "-4", "--broker", broker.url, "--turn", url]
    cli = [sys.executable, "-m", "warpgate"]
    node = subprocess.Popen([*cli, "node", *common, "--echo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        address = node.stdout.readline().decode().strip()
        out = subprocess.run(
            [*cli, "connect", address, *common, "--plugin", "turn", "--wait", "1"],
            input=b"relayed\n",
            capture_output=True,
            timeout=60,
        )
        said = out.stderr.decode()
        assert out.returncode == 0, said
        assert "connected via turn" in said and PASSWORD not in said
        assert out.stdout == b"relayed\n"
    finally:
        node.terminate()
        node.wait(timeout=10)
